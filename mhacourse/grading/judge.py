"""The judge half of checking, in the trusted process only: references, comparison, mistakes, policy.

Nothing in an outcome can make a call pass except an output equal (within
tolerance) to the reference's output on the same inputs.
"""

import mlx.core as mx

from . import hints
from .compare import compare, describe, matches
from .compute import DEFAULT_TIME_LIMIT
from .result import ERROR, FAILED, INVALID, NOT_IMPLEMENTED, PASSED, TIMEOUT, CaseResult, CheckResult
from .runner import evaluate
from .sandbox.harness import safe_text, type_name

__all__ = ["judge"]


def judge(exercise, calls, outcomes, *, problem=None, violations=(), time_limit=None):
    """The judge half: compare each outcome with the trusted reference and score.

    Runs in the trusted process only. Nothing in ``outcomes`` can make a call
    pass except an output equal (within tolerance) to the reference's output
    on the same inputs.

    Args:
        exercise (Exercise): The exercise.
        calls (list[Call]): What the answer was called on (see :func:`calls_for`).
        outcomes (list[Outcome or None]): Per call; missing trailing entries
            count as skipped.
        problem (dict, optional): Why the answer is not an answer at all
            (a descriptor, see :class:`Outcome`); then nothing else counts.
        violations (list[str]): Policy rules the answer broke (see
            :func:`mhacourse.grading.policy.violations`); any makes it fail.
        time_limit (float, optional): Only for the timeout message.

    Returns:
        CheckResult: per visible and hidden case, with the hint.
    """
    time_limit = DEFAULT_TIME_LIMIT if time_limit is None else time_limit
    result = CheckResult(exercise.id, exercise.title, False, FAILED, max_points=exercise.points)
    if problem is not None:
        result.status, result.message = INVALID, safe_text(problem.get("message"))
        result.hint_id, result.hint = problem.get("hint_id"), problem.get("hint")
        return result

    outputs = {}  # call index -> the learner's output, for matching mistakes and properties
    case_calls = [(i, c) for i, c in enumerate(calls) if c.group == "case"]
    for index, call in case_calls:
        outcome = outcomes[index] if index < len(outcomes) else None
        if outcome is None:
            continue
        case_result = _judge_case(exercise, call, outcome, time_limit)
        case_result.index = index
        result.cases.append(case_result)
        if outcome.error is None and case_result.status in (PASSED, FAILED) \
                and case_result.hint_id != "full_score_matrix":  # right values, too much memory: no mistake
            outputs[index] = outcome.value
        if case_result.status in (TIMEOUT, NOT_IMPLEMENTED):
            break

    _explain(exercise, result, outputs, calls)
    _judge_properties(exercise, result, calls, outcomes)
    statuses = [c.status for c in result.cases]
    n_expected = len(case_calls) + sum(1 for prop in exercise.properties or [] if any(
        c.group == prop.name for c in calls))
    result.passed = bool(statuses) and all(s == PASSED for s in statuses) and len(statuses) == n_expected
    if result.passed:
        result.status = PASSED
        result.message = f"All {len(statuses)} cases passed."
    else:
        for status in (NOT_IMPLEMENTED, TIMEOUT, ERROR, FAILED):
            if status in statuses:
                result.status = status
                break
        if result.status == NOT_IMPLEMENTED:
            result.message = f"{exercise.answer_name} is not implemented yet: replace `raise NotImplementedError()`."
        else:
            bad = sum(s != PASSED for s in statuses)
            result.message = f"{bad} of {len(statuses)} cases failed."
        if result.hint is None:
            first = next((c for c in result.cases if c.hint), None)
            if first is not None:
                result.hint_id, result.hint = first.hint_id, first.hint
    hints.add_nudges(exercise, result)
    for case_result in result.cases:
        case_result.__dict__.pop("index", None)
    violations = list(violations or [])
    if violations:
        result.passed, result.status = False, INVALID
        result.message = "Against the rules: " + "; ".join(violations) + "."
        result.hint_id = "policy"
        result.hint = ("Write this exercise with your own code: the course's implementation of this "
                       "lesson's exercises (called, wrapped or copied) and the functions the exercise "
                       "names as forbidden do not count.")
    return result


def _judge_case(exercise, call, outcome, time_limit):
    case_result = CaseResult(call.name, PASSED, seconds=outcome.seconds)
    error = outcome.error
    if error is not None and error.get("kind") == "timeout":
        case_result.status = TIMEOUT
        case_result.message = (f"still running after {time_limit:g} s (it is left to finish in "
                               "the background); the remaining cases were skipped.")
        case_result.hint_id, case_result.hint = "timeout", (
            "Look for an endless loop, or a Python loop over elements where one array "
            "operation would do; the cases are small.")
        return case_result
    if error is not None and error.get("kind") == "not_implemented":
        case_result.status, case_result.message = NOT_IMPLEMENTED, "not implemented yet"
        return case_result
    expected = trusted_output(exercise, exercise.reference, call.case)
    case_result.expected = "" if call.hidden else describe(expected)
    if error is not None:
        kind = error.get("kind")
        if kind == "problem":
            case_result.status = FAILED
            case_result.message = safe_text(error.get("message"))
            case_result.hint_id, case_result.hint = error.get("hint_id"), error.get("hint")
        else:
            case_result.status = ERROR
            if kind == "killed":
                case_result.message = "the answer stopped the Python process running it"
            elif kind == "missing":
                case_result.message = "no result came back for this case"
            else:
                where = error.get("line")
                case_result.message = f"{error.get('type')}: {error.get('message')}" + (
                    f"\n  at {where}" if where else "")
                found = hints.match_error(error.get("type"), error.get("message"), code=where,
                                          exercise_id=exercise.id)
                if found is not None:
                    case_result.hint_id, case_result.hint = found.hint_id, found.hint
                    case_result.nudge = found.nudge
        if call.hidden:  # no message that could show the hidden inputs
            case_result.message = {"exception": f"raised {error.get('type')}",
                                   "problem": "the answer could not be used on this input"}.get(
                kind, case_result.message)
        return case_result
    try:
        comparisons, mismatch = compare(outcome.value, expected, check_dtype=call.case.check_dtype)
        case_result.got = "" if call.hidden else describe(outcome.value)
    except BaseException:  # noqa: BLE001 - an output whose methods raise
        case_result.status = FAILED
        case_result.message = "the output could not be compared with the expected one"
        return case_result
    case_result.comparisons = [] if call.hidden else comparisons
    cap = call.case.memory_cap
    if mismatch is None and cap is not None and (outcome.peak is None or outcome.peak > cap):
        case_result.status = FAILED
        held = "an unknown amount" if outcome.peak is None else f"{outcome.peak / 2**20:.1f} MiB"
        case_result.message = (f"the answer held {held} at once; this case allows {cap / 2**20:.1f} MiB, "
                               "well under the full (L_q, L_k) score matrix")
        case_result.hint_id, case_result.hint = "full_score_matrix", (
            "Work through the keys one tile at a time: never build queries @ keys.swapaxes(-1, -2) for all "
            "keys at once. Each tile's scores are (L_q, tile_size); keep only the running max, sum and output.")
        return case_result
    if mismatch is not None:
        case_result.status = FAILED
        if call.hidden:
            case_result.message = f"wrong {mismatch.kind}"
        else:
            case_result.message = "" if mismatch.kind == "values" else mismatch.message
        case_result.hint_id, case_result.hint = _generic_hint(mismatch, outcome.value, expected)
    return case_result


def _judge_properties(exercise, result, calls, outcomes):
    """One line per property: it holds on the answer's outputs, or why not."""
    for prop in exercise.properties or []:
        indices = [i for i, c in enumerate(calls) if c.group == prop.name]
        if not indices:
            continue
        got = [outcomes[i] if i < len(outcomes) else None for i in indices]
        case_result = CaseResult(f"property: {prop.name}", PASSED)
        if any(o is None or o.error is not None for o in got):
            bad = next((o for o in got if o is not None and o.error is not None), None)
            kind = bad.error.get("kind") if bad is not None else "missing"
            case_result.status = {"timeout": TIMEOUT, "not_implemented": NOT_IMPLEMENTED}.get(kind, ERROR)
            case_result.message = "the answer failed on the property's inputs"
        else:
            try:
                failure = prop.holds([o.value for o in got])
            except BaseException as error:  # noqa: BLE001
                failure = f"the outputs could not be checked ({type_name(error)})"
            if failure:
                case_result.status, case_result.message = FAILED, safe_text(failure)
                case_result.hint_id = getattr(prop, "hint_id", None)
                case_result.hint = getattr(prop, "hint", None)
        result.cases.append(case_result)


def _generic_hint(mismatch, actual, expected):
    if mismatch.kind == "shape" and isinstance(actual, mx.array) and isinstance(expected, mx.array):
        if sorted(actual.shape) == sorted(expected.shape):
            return "axis_order", ("The output has the right sizes in the wrong order: check which "
                                  "axes you transpose or swap.")
    if mismatch.kind == "dtype":
        return "wrong_dtype", ("Keep the dtype the exercise asks for (build constants with "
                               "dtype=..., or .astype(dtype) at the end).")
    if mismatch.kind == "nan":
        return "nan", ("NaN usually comes from a softmax over a row with only -inf, or from an "
                       "overflow (exp of a large number, or -inf/inf in float16).")
    return None, None


_FAILS = object()  # a trusted answer that raises on a case


def trusted_output(exercise, answer, case, default=None):
    """``answer``'s evaluated output on ``case``, computed once per case and kept with it.

    Cases give the same inputs on every call (see :class:`~mhacourse.grading.exercise.Case`),
    so the reference's and each mistake's outputs are the same for every
    learner: a class of 200 computes them once, not 200 times.

    Args:
        exercise (Exercise): The case's exercise.
        answer: The reference or a mistake's answer (the key, with the exercise).
        case (Case): Builds the inputs.
        default: Returned (and kept) when ``answer`` raises; without it, the error propagates.
    """
    slot = (exercise.id, answer)
    try:
        known = slot in case.trusted_outputs
    except TypeError:  # an unhashable answer: computed every time
        slot, known = None, False
    if known:
        return case.trusted_outputs[slot]
    try:
        output = evaluate(exercise.run_given(answer, case.inputs()))
    except Exception:  # noqa: BLE001 - a mistake may fail on some shapes: the caller decides
        if default is None:
            raise
        output = default
    if slot is not None:
        case.trusted_outputs[slot] = output
    return output


def _explain(exercise, result, outputs, calls):
    """Match the learner's outputs against every known mistake (in the trusted process).

    The mistake that reproduces the learner's output on the most failing
    cases (then on the most cases overall, then the first listed) becomes the
    result's hint; each failing case shows the best mistake that matches it.
    """
    by_index = {c.index: c for c in result.cases if hasattr(c, "index")}
    failing = {i for i, c in by_index.items() if i in outputs and c.status == FAILED}
    if not failing or not exercise.mistakes:
        return
    ranked = []  # (sort key, mistake, cases it matches)
    for order, mistake in enumerate(exercise.mistakes):
        matched = set()
        for index, actual in outputs.items():
            wrong = trusted_output(exercise, mistake.answer, calls[index].case, default=_FAILS)
            if wrong is _FAILS:  # a variant may fail on some shapes
                continue
            if matches(actual, wrong, check_dtype=calls[index].case.check_dtype):
                matched.add(index)
        if matched & failing:
            ranked.append(((-len(matched & failing), -len(matched), order), mistake, matched))
    if not ranked:
        return
    ranked.sort(key=lambda item: item[0])
    best = ranked[0][1]
    result.hint_id, result.hint = best.hint_id, best.hint
    for index in failing:
        for _, mistake, matched in ranked:
            if index in matched:
                by_index[index].hint_id, by_index[index].hint = mistake.hint_id, mistake.hint
                break
