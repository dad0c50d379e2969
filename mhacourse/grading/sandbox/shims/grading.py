"""``mhacourse.grading`` while a notebook is being graded: ``check`` computes nothing here.

The grader calls every answer itself, on inputs this process never sees until the
cells have run, and judges outside the sandbox.
"""

__all__ = ["check", "exercise_ids", "get_exercise", "CheckResult", "CaseResult", "Exercise", "ModuleExercise",
           "Case", "Mistake"]


class _GradedOutside:
    def __init__(self, exercise_id):
        self.exercise_id = exercise_id
        self.passed = False
        self.points = 0.0

    def __repr__(self):
        return f"check({self.exercise_id!r}, ...): checked by the grader, outside this notebook"


def check(exercise_id, answer=None, *args, **kwargs):
    """A placeholder result: the grader checks the answer itself."""
    return _GradedOutside(exercise_id)


def exercise_ids():
    """No ids inside the sandbox."""
    return []


def get_exercise(exercise_id):
    """No exercise, reference or case exists inside the sandbox."""
    raise LookupError(f"exercise {exercise_id!r}: the checks are not available while a notebook is graded")


class CheckResult:
    """A name only: results are made by the grader, outside."""


class CaseResult(CheckResult):
    pass


class Exercise:
    """A name only: exercises are declared outside the sandbox."""


class ModuleExercise(Exercise):
    pass


class Case:
    pass


class Mistake:
    pass


def __getattr__(name):
    raise AttributeError(f"mhacourse.grading.{name} is not available while a notebook is graded")
