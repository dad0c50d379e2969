"""``check(exercise_id, answer)``: compute and judge in the learner's own process (self-study).

The policy applies as in the grader (:mod:`.policy` watches the live answer;
the grader reads the submitted source instead); only the course's own
reference and mistake objects are exempt, so that the course can check itself.
"""

from . import hints
from .compare import describe
from .compute import DEFAULT_TIME_LIMIT, calls_for, compute, validation_problem
from .judge import judge
from .registry import exercise_ids, get_exercise
from .result import ERROR, INVALID, CheckResult
from .sandbox.harness import safe_text, type_name

__all__ = ["check"]


def check(exercise_id, answer, *, time_limit=None, hint=1):
    """Check ``answer`` for the exercise ``exercise_id``.

    Never raises (not even for a ``SystemExit`` from the answer or from its
    output's ``__repr__``): a missing implementation, an exception, a wrong
    type, NaNs or a case that runs too long all become a failed result with a
    message. The policy (:mod:`.policy`) applies as in the grader; only the
    course's own reference and mistake objects are exempt, so that the course
    can check itself.

    Args:
        exercise_id (str): e.g. ``"split_heads"`` (see ``exercise_ids()``).
        answer: The learner's function or class.
        time_limit (float, optional): Seconds per case. Default:
            ``DEFAULT_TIME_LIMIT`` (env ``MHACOURSE_CHECK_TIME_LIMIT``).
        hint (int, optional): 1 (default) shows where to look for a
            recognised mistake; 2 shows the specific fix.

    Returns:
        CheckResult: Displays as a report; ``.passed`` and ``.points`` for grading.
    """
    try:
        try:
            if not isinstance(exercise_id, str):
                raise KeyError(f"the exercise id must be a string such as 'split_heads', got "
                               f"{describe(exercise_id)}; known ids: {', '.join(exercise_ids())}")
            exercise = get_exercise(exercise_id)
        except KeyError as error:
            return CheckResult(exercise_id if isinstance(exercise_id, str) else describe(exercise_id),
                               "", False, INVALID, message=safe_text(error.args[0]), max_points=0)
        except Exception as error:  # noqa: BLE001
            return CheckResult(safe_text(exercise_id), "", False, ERROR, max_points=0,
                               message=f"the checker failed to load: {type_name(error)}: {safe_text(error)}")
        try:
            result = _check(exercise, answer, DEFAULT_TIME_LIMIT if time_limit is None else time_limit)
            return hints.at_tier(result, exercise, hint)
        except BaseException as error:  # noqa: BLE001 - a bug in a check must not crash the notebook
            return CheckResult(exercise.id, exercise.title, False, ERROR, max_points=exercise.points,
                               message=f"the checker itself failed ({type_name(error)}: {safe_text(error)}); "
                                       "please report this to the course authors.")
    except BaseException:  # noqa: BLE001 - even building the message failed
        return CheckResult("?", "", False, ERROR, max_points=0, message="the checker itself failed.")


def _check(exercise, answer, time_limit):
    from . import policy

    problem = validation_problem(exercise, answer)
    calls = calls_for(exercise)
    if problem is not None:
        return judge(exercise, calls, [], problem=problem)
    if answer is exercise.reference or any(answer is m.answer for m in exercise.mistakes):  # exempt
        return judge(exercise, calls, compute(exercise, answer, calls, time_limit), time_limit=time_limit)
    with policy.Recorder(exercise) as recorder:
        outcomes = compute(exercise, answer, calls, time_limit)
    violations = policy.violations(exercise, policy.inspect_answer(answer, policy.known_objects(exercise)),
                                   recorder.calls)
    return judge(exercise, calls, outcomes, violations=violations, time_limit=time_limit)
