"""Exercises, their cases and known mistakes, and ``check()``.

Checking has two halves:

* **compute** (:func:`compute`): call the learner's answer on each case's
  inputs and keep what came back, an output or an error descriptor
  (:class:`Outcome`). Nothing else is decided here.
* **judge** (:func:`judge`): run the trusted reference on the same inputs,
  compare, match the known mistakes, apply the policy and build the
  :class:`CheckResult`.

``check()`` does both in the notebook's process. ``mhacourse grade`` computes
inside a sandbox (the answer's outputs come back as plain data) and judges in
its own process, with the same :func:`judge` and the same policy code
(:mod:`mhacourse.grading.policy`).

Each known mistake is a deliberately wrong implementation: when the learner's
output matches one of them, the report names the mistake and how to fix it.
"""

import importlib
import inspect
import os
import time
from dataclasses import dataclass, field

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from . import hints
from .sandbox import drivers
from .compare import compare, describe, matches
from .result import ERROR, FAILED, INVALID, NOT_IMPLEMENTED, PASSED, TIMEOUT, CaseResult, CheckResult
from .runner import AnswerProblem, evaluate, learner_line, run_with_time_limit

__all__ = [
    "Case",
    "Mistake",
    "Exercise",
    "ModuleExercise",
    "register",
    "exercise_ids",
    "get_exercise",
    "check",
    "Call",
    "Outcome",
    "calls_for",
    "compute",
    "compute_call",
    "judge",
    "safe_text",
    "DEFAULT_TIME_LIMIT",
]

PROPERTY_SEED = 0
"""Seed of the properties' inputs in ``check()`` (the grader draws its own)."""

DEFAULT_TIME_LIMIT = float(os.environ.get("MHACOURSE_CHECK_TIME_LIMIT", 10.0))
"""Seconds each case may run before it fails as too slow."""

_REGISTRY = {}
_LOADED = False


@dataclass
class Case:
    """One input the answer is tried on.

    Attributes:
        name (str): What the case tries (shown in the report).
        inputs (callable): Returns ``(args, kwargs)``, fresh arrays on every call.
            For a :class:`ModuleExercise`, ``args`` is ``(constructor_kwargs,
            call_args)`` and ``kwargs`` are the call's keyword arguments.
        check_dtype (bool): Whether the output's dtype must match too.
        memory_cap (int, optional): Most bytes MLX may hold at once during the
            call, above what it held at its start (e.g. half a full score
            matrix, for an answer that must work in tiles).
    """

    name: str
    inputs: object
    check_dtype: bool = True
    memory_cap: int = None


@dataclass
class Mistake:
    """A recognised mistake: a wrong implementation and what to tell the learner.

    Attributes:
        hint_id (str): A stable name, e.g. ``"missing_scale"``.
        hint (str): What went wrong and how to fix it (tier 2).
        answer: The wrong implementation, the same kind of object as an answer.
        nudge (str, optional): Where to look, without the fix (tier 1); by
            default the catalogue's (:data:`mhacourse.grading.hints.NUDGES`).
    """

    hint_id: str
    hint: str
    answer: object
    nudge: str = None


@dataclass
class Exercise:
    """A graded exercise whose answer is a function.

    Attributes:
        id (str): The id passed to ``check``.
        lesson (str): Two digits, e.g. ``"02"``.
        title (str): A short title.
        answer_name (str): The name the learner defines in the notebook.
        signature (str): How the answer is called, shown in messages.
        reference: A correct answer; it defines the expected outputs.
        cases (list[Case]): The inputs tried, in order.
        mistakes (list[Mistake]): Known wrong implementations, most specific first.
        points (int): Points for passing.
        hidden_cases (callable, optional): ``(rng: numpy.random.Generator) ->
            list[Case]``, cases of other sizes than ``cases``; only the grader
            runs them, and its report never shows their inputs.
        forbidden (tuple[str]): Dotted names the answer must not use, e.g.
            ``("mx.softmax", "nn.softmax")`` or ``("mx.fast.*",)`` (see :mod:`.policy`).
        properties (list): Property checks (objects with ``name``, ``calls(rng)``
            and ``holds(outputs)``), run on inputs of their own.
    """

    id: str
    lesson: str
    title: str
    answer_name: str
    signature: str
    reference: object
    cases: list
    mistakes: list = field(default_factory=list)
    points: int = 1
    hidden_cases: object = None
    forbidden: tuple = ()
    properties: list = field(default_factory=list)

    kind = "function"  # what the answer is: "function" or "class" (see drivers.validate)
    driver = "function"  # how it is called (see mhacourse.grading.sandbox.drivers)

    def validate(self, answer):
        """Raise :class:`AnswerProblem` unless ``answer`` is the right kind of object."""
        try:
            drivers.validate(self.kind, answer)
        except drivers.Problem as problem:
            raise self.problem(problem) from None

    def prepare(self, inputs):
        """What the trusted side adds to a call's inputs (``None`` here).

        A :class:`ModuleExercise` returns the source layer's parameters, so
        that the layer the learner's class builds gets trusted weights.
        """
        return None

    def run_given(self, answer, inputs, extra=None):
        """Run ``answer`` on ready-made ``inputs`` (as returned by ``Case.inputs()``) through the
        exercise's driver, the same code that calls answers in the sandbox.

        ``inputs`` must be fresh (it may be changed).
        """
        if extra is None:
            extra = self.prepare(inputs)
        try:
            return drivers.call(self.driver, answer, inputs, extra)
        except drivers.Problem as problem:
            raise self.problem(problem, inputs) from None

    def run_case(self, answer, case):
        """Run ``answer`` on ``case`` and return its output (not yet evaluated)."""
        return self.run_given(answer, case.inputs())

    def problem(self, problem, inputs=None):
        """The :class:`AnswerProblem` (message and hint) for a driver's :class:`~.sandbox.drivers.Problem`."""
        code, data = problem.code, problem.data
        got = str(data.get("got", ""))[:200]
        if code == "signature":
            return AnswerProblem(f"the answer cannot be called as {self.signature}: {str(data.get('error'))[:300]}.",
                                 "signature", f"Keep the signature given in the exercise: {self.signature}.")
        if code == "instance_not_class":
            return AnswerProblem(
                f"check({self.id!r}, ...) expects the class, got an instance of {got}.", "instance_not_class",
                f"Pass the class itself, not a layer built from it: check({self.id!r}, {self.answer_name}).")
        if code == "wrong_answer_type":
            what = "a class" if self.kind == "class" else "a function"
            return AnswerProblem(f"check({self.id!r}, ...) expects {what} {self.signature}, got {got}.",
                                 "wrong_answer_type", f"Pass the {what[2:]} itself: check({self.id!r}, {self.answer_name}).")
        if code == "not_a_module":
            return AnswerProblem(
                f"{self.answer_name}(...) built a {got}, not an nn.Module.", "not_a_module",
                f"Make {self.answer_name} a subclass of mlx.nn.Module and call super().__init__().")
        if code == "parameters":
            constructor = inputs[0][0] if inputs is not None else {}
            return parameter_problem(_shapes(data.get("expected")), _shapes(data.get("actual")), constructor)
        if code == "decode_return":
            return AnswerProblem(f"{self.answer_name} returned {got}, not (output, keys, values).", "decode_return",
                                 "Return the output and the grown cache: return output, keys, values.")
        return AnswerProblem(f"the answer cannot be used ({str(code)[:80]}).")


class ModuleExercise(Exercise):
    """A graded exercise whose answer is an ``nn.Module`` class.

    Each case builds ``source = source_class(**constructor_kwargs)`` with a
    fixed seed and the learner's ``answer(**constructor_kwargs)``, compares
    their parameter names and shapes, copies the source's parameters into the
    learner's layer with ``update`` and compares the outputs of
    ``layer(*call_args, **kwargs)``.

    Attributes:
        source_class: Builds the layer whose weights are copied (e.g.
            ``mlx.nn.MultiHeadAttention``); defaults to ``reference``.
    """

    kind = "class"
    driver = "class"

    def __init__(self, *args, source_class=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.source_class = source_class or self.reference

    def prepare(self, inputs):
        (constructor, _), _ = inputs
        mx.random.seed(1234)
        source = self.source_class(**constructor)
        mx.eval(source.parameters())
        return dict(tree_flatten(source.parameters()))


def _shapes(mapping):
    if not isinstance(mapping, dict):
        return {}
    return {str(k): tuple(int(n) for n in v) for k, v in mapping.items() if isinstance(v, (list, tuple))}


def parameter_problem(expected, actual, constructor):
    """The :class:`AnswerProblem` for a layer whose parameter names or shapes (``{name: shape}``) are
    not the source layer's.

    ``Module.update`` does not check shapes, so a wrongly sized projection
    would be silently overwritten: the drivers check this first.
    """
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    listing = f"missing {missing}" if missing else ""
    if extra:
        listing += ("; " if listing else "") + f"unexpected {extra}"
    if missing and all(name.endswith(".bias") for name in missing) and not extra:
        return AnswerProblem(
            f"the layer has no biases: {listing}.",
            "forgot_bias",
            "With bias=True every projection needs a bias: pass bias=bias to each nn.Linear.",
        )
    if extra and all(name.endswith(".bias") for name in extra) and not missing:
        return AnswerProblem(
            f"the layer has biases although bias={constructor.get('bias', False)}: {listing}.",
            "bias_always",
            "nn.Linear has a bias by default: pass bias=bias (False unless asked) to each nn.Linear.",
        )
    if missing or extra:
        return AnswerProblem(
            f"the layer's parameters have the wrong names: {listing}.",
            "parameter_names",
            "Name the submodules exactly as in the exercise (e.g. query_proj, key_proj, "
            "value_proj, out_proj) so that update(other.parameters()) can copy weights.",
        )
    wrong = [(n, actual[n], expected[n]) for n in expected if actual[n] != expected[n]]
    lines = [f"{n} is {a} but should be {e}" for n, a, e in wrong]
    message = "wrong parameter shapes: " + "; ".join(lines) + "."
    name, got, want = wrong[0]
    value_input = constructor.get("value_input_dims")
    key_input = constructor.get("key_input_dims") or constructor.get("dims")
    if (name.startswith("value_proj.weight") and value_input is None and len(got) == 2
            and got[1] == constructor.get("dims") and want[1] == key_input):
        return AnswerProblem(
            message,
            "value_input_default",
            "value_input_dims defaults to key_input_dims, not dims (as in mlx.nn.MultiHeadAttention).",
        )
    if len(got) == 2 and got == want[::-1]:
        return AnswerProblem(
            message,
            "linear_transposed",
            "nn.Linear(input_dims, output_dims) stores its weight as (output_dims, input_dims): "
            "you swapped the input and output sizes.",
        )
    return AnswerProblem(
        message,
        "wrong_projection_size",
        "Check each projection's sizes: query_proj: query_input_dims -> dims, key_proj: "
        "key_input_dims -> dims, value_proj: value_input_dims -> value_dims, "
        "out_proj: value_dims -> value_output_dims. A weight is stored as (output, input).",
    )


def register(exercise):
    """Add ``exercise`` to the registry (ids are unique)."""
    if exercise.id in _REGISTRY:
        raise ValueError(f"exercise id {exercise.id!r} is registered twice.")
    _REGISTRY[exercise.id] = exercise
    return exercise


def _load():
    global _LOADED
    if not _LOADED:
        _LOADED = True
        importlib.import_module(".checks", __package__)


def exercise_ids():
    """Every exercise id, in lesson order."""
    _load()
    return [e.id for e in sorted(_REGISTRY.values(), key=lambda e: e.lesson)]


def get_exercise(exercise_id):
    """The :class:`Exercise` registered as ``exercise_id`` (``KeyError`` if none)."""
    _load()
    if exercise_id not in _REGISTRY:
        raise KeyError(f"unknown exercise id {exercise_id!r}; known ids: {', '.join(exercise_ids())}")
    return _REGISTRY[exercise_id]


# ---------------------------------------------------------------------------
# check() = compute + judge


def safe_text(value, limit=2000):
    """``str(value)``, or a placeholder when its ``__str__`` fails or raises anything at all."""
    try:
        text = str(value)
        if not isinstance(text, str):
            raise TypeError
    except BaseException:  # noqa: BLE001 - a learner's __str__ may raise SystemExit
        text = f"<a {_type_name(value)} that cannot be printed>"
    return text[:limit]


def _type_name(value):
    try:
        name = type(value).__name__
        return name if isinstance(name, str) else "object"
    except BaseException:  # noqa: BLE001
        return "object"


@dataclass
class Call:
    """One call of the answer: a case, a hidden case or a property's input.

    Attributes:
        name (str): Shown in the report ("hidden case 2" for hidden ones).
        case (Case): Builds the inputs (fresh on every call).
        hidden (bool): Its inputs and outputs never appear in a report.
        group (str): ``"case"`` or the name of the property it belongs to.
    """

    name: str
    case: Case
    hidden: bool = False
    group: str = "case"


@dataclass
class Outcome:
    """What one call of the answer gave: an output, or an error descriptor.

    Attributes:
        value: The output (arrays, tuples, scalars), when it returned.
        error (dict or None): ``{"kind", "type", "message", "line", "hint_id",
            "hint"}`` with kind ``"exception"``, ``"problem"`` (the check found
            the answer unusable), ``"not_implemented"``, ``"timeout"``,
            ``"killed"`` (the answer stopped its process) or ``"missing"``.
        seconds (float): How long the call took.
        peak (int or None): Most bytes MLX held at once during the call, above its start.
    """

    value: object = None
    error: dict = None
    seconds: float = 0.0
    peak: int = None


def calls_for(exercise, rng=None):
    """The calls the answer gets: the visible cases, then (given ``rng``) hidden ones and properties.

    Args:
        exercise (Exercise): The exercise.
        rng (numpy.random.Generator, optional): The grader's secret-seeded
            generator; ``None`` (``check()``) gives the visible cases and the
            properties on inputs of a fixed seed.
    """
    calls = [Call(case.name, case) for case in exercise.cases]
    if rng is not None and exercise.hidden_cases is not None:
        for number, case in enumerate(exercise.hidden_cases(rng), 1):
            calls.append(Call(f"hidden case {number}", case, hidden=True))
    for prop in exercise.properties or []:
        prop_rng = rng if rng is not None else np.random.default_rng(PROPERTY_SEED)
        for number, inputs in enumerate(prop.calls(prop_rng), 1):
            calls.append(Call(f"{prop.name} {number}", Case(f"{prop.name} {number}", _frozen(inputs)),
                              hidden=True, group=prop.name))
    return calls


def _frozen(inputs):
    """A ``Case.inputs`` that rebuilds ``inputs`` (a fresh copy each time)."""
    import copy

    return lambda: copy.deepcopy(inputs) if not callable(inputs) else inputs()


def error_descriptor(kind, type_name="", message="", line="", hint_id=None, hint=None):
    """An :class:`Outcome`'s ``error``: ``{"kind", "type", "message", "line", "hint_id", "hint"}``."""
    return {"kind": kind, "type": type_name, "message": message, "line": line, "hint_id": hint_id, "hint": hint}


def _descriptor(error, kind="exception"):
    if isinstance(error, AnswerProblem):
        return error_descriptor("problem", "AnswerProblem", safe_text(error.message), hint_id=error.hint_id,
                                hint=error.hint)
    if isinstance(error, NotImplementedError):
        kind = "not_implemented"
    try:
        line = learner_line(error)
    except BaseException:  # noqa: BLE001
        line = ""
    return error_descriptor(kind, _type_name(error), safe_text(error, 500), line)


def compute_call(exercise, answer, make_inputs, time_limit, prepare=None):
    """Call ``answer`` once on fresh inputs; never raises.

    Args:
        make_inputs (callable): Returns the inputs (as ``Case.inputs()``); it is
            called in the thread that runs the answer (MLX streams are per thread).
        prepare (callable, optional): ``inputs -> extra``; default ``exercise.prepare``.

    Returns:
        Outcome: the evaluated output, or an error descriptor.
    """
    prepare = prepare or exercise.prepare

    def call():
        inputs = make_inputs()
        return exercise.run_given(answer, inputs, prepare(inputs))

    mx.reset_peak_memory()
    base = mx.get_active_memory()
    run = run_with_time_limit(call, time_limit)
    if run.timed_out:
        return Outcome(error=error_descriptor("timeout"), seconds=run.seconds)
    if run.error is not None:
        return Outcome(error=_descriptor(run.error), seconds=run.seconds)
    return Outcome(value=run.value, seconds=run.seconds, peak=max(0, int(mx.get_peak_memory() - base)))


def validation_problem(exercise, answer):
    """The descriptor of why ``answer`` is not an answer at all, or ``None``."""
    try:
        exercise.validate(answer)
    except AnswerProblem as problem:
        return _descriptor(problem)
    return None


def compute(exercise, answer, calls, time_limit, prepare=None):
    """The compute half: call ``answer`` on every call's inputs.

    Stops a group's remaining calls after a timeout or ``NotImplementedError``
    (a timed-out call may still be running in the background).

    Args:
        prepare (callable, optional): ``inputs -> extra``; default
            ``exercise.prepare``.

    Returns:
        list[Outcome or None]: per call (``None`` where it was skipped).
    """
    outcomes, stopped = [], set()
    for call in calls:
        if call.group in stopped or "*" in stopped:
            outcomes.append(None)
            continue
        outcome = compute_call(exercise, answer, call.case.inputs, time_limit, prepare)
        outcomes.append(outcome)
        if outcome.error and outcome.error["kind"] in ("timeout", "killed"):
            stopped.add("*")
        elif outcome.error and outcome.error["kind"] == "not_implemented":
            stopped.add(call.group)
    return outcomes


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
                               message=f"the checker failed to load: {_type_name(error)}: {safe_text(error)}")
        try:
            result = _check(exercise, answer, DEFAULT_TIME_LIMIT if time_limit is None else time_limit)
            return hints.at_tier(result, exercise, hint)
        except BaseException as error:  # noqa: BLE001 - a bug in a check must not crash the notebook
            return CheckResult(exercise.id, exercise.title, False, ERROR, max_points=exercise.points,
                               message=f"the checker itself failed ({_type_name(error)}: {safe_text(error)}); "
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
    expected = evaluate(exercise.run_given(exercise.reference, call.case.inputs()))
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
                failure = f"the outputs could not be checked ({_type_name(error)})"
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
            try:
                wrong = evaluate(exercise.run_given(mistake.answer, calls[index].case.inputs()))
            except Exception:  # noqa: BLE001 - a variant may fail on some shapes
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
