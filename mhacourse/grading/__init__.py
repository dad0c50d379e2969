"""Autograded exercises: ``check(exercise_id, answer)`` and the exercise registry.

In a notebook::

    from mhacourse.grading import check
    check("split_heads", split_heads)   # a report: each case, exact/close/max diff, hints

``check`` never raises; ``result.passed`` and ``result.points`` are for grading.
"""

from .checker import check
from .exercise import Case, Exercise, Mistake, ModuleExercise
from .registry import exercise_ids, get_exercise
from .result import CaseResult, CheckResult

__all__ = [
    "check",
    "exercise_ids",
    "get_exercise",
    "CheckResult",
    "CaseResult",
    "Exercise",
    "ModuleExercise",
    "Case",
    "Mistake",
]
