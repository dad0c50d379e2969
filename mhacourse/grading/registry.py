"""Exercises, their cases and known mistakes, and ``check()``.

An exercise is checked by running the learner's answer and a trusted
reference on the same cases and comparing the outputs. Each known mistake is
a deliberately wrong implementation: when the learner's output matches one of
them, the report names the mistake and how to fix it.
"""

import importlib
import inspect
import os
from dataclasses import dataclass, field

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

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
    "DEFAULT_TIME_LIMIT",
]

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
    """

    name: str
    inputs: object
    check_dtype: bool = True


@dataclass
class Mistake:
    """A recognised mistake: a wrong implementation and what to tell the learner.

    Attributes:
        hint_id (str): A stable name, e.g. ``"missing_scale"``.
        hint (str): What went wrong and how to fix it.
        answer: The wrong implementation, the same kind of object as an answer.
    """

    hint_id: str
    hint: str
    answer: object


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

    kind = "function"

    def validate(self, answer):
        """Raise :class:`AnswerProblem` unless ``answer`` is the right kind of object."""
        if isinstance(answer, type) or not callable(answer):
            raise AnswerProblem(
                f"check({self.id!r}, ...) expects a function {self.signature}, "
                f"got {describe(answer)}.",
                "wrong_answer_type",
                f"Pass the function itself: check({self.id!r}, {self.answer_name}).",
            )

    def run_case(self, answer, case):
        """Run ``answer`` on ``case`` and return its output (not yet evaluated)."""
        args, kwargs = case.inputs()
        _check_signature(answer, args, kwargs, self.signature)
        return answer(*args, **kwargs)


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

    def __init__(self, *args, source_class=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.source_class = source_class or self.reference

    def validate(self, answer):
        if isinstance(answer, nn.Module):
            raise AnswerProblem(
                f"check({self.id!r}, ...) expects the class, got an instance of "
                f"{type(answer).__name__}.",
                "instance_not_class",
                f"Pass the class itself, not a layer built from it: check({self.id!r}, {self.answer_name}).",
            )
        if not isinstance(answer, type):
            raise AnswerProblem(
                f"check({self.id!r}, ...) expects a class {self.signature}, got {describe(answer)}.",
                "wrong_answer_type",
                f"Pass the class itself: check({self.id!r}, {self.answer_name}).",
            )

    def run_case(self, answer, case):
        (constructor, call_args), call_kwargs = case.inputs()
        mx.random.seed(1234)
        source = self.source_class(**constructor)
        mx.eval(source.parameters())
        _check_signature(answer, (), constructor, self.signature)
        layer = answer(**constructor)
        if not isinstance(layer, nn.Module):
            raise AnswerProblem(
                f"{self.answer_name}(...) built a {type(layer).__name__}, not an nn.Module.",
                "not_a_module",
                f"Make {self.answer_name} a subclass of mlx.nn.Module and call super().__init__().",
            )
        compare_parameters(layer, source, constructor)
        layer.update(source.parameters())
        _check_signature(layer, call_args, call_kwargs, self.signature)
        return layer(*call_args, **call_kwargs)


def _check_signature(answer, args, kwargs, signature):
    try:
        params = inspect.signature(answer)
    except (TypeError, ValueError):  # builtins without a signature
        return
    try:
        params.bind(*args, **kwargs)
    except TypeError as error:
        raise AnswerProblem(
            f"the answer cannot be called as {signature}: {error}.",
            "signature",
            f"Keep the signature given in the exercise: {signature}.",
        ) from None


def _parameter_shapes(module):
    return {name: tuple(value.shape) for name, value in tree_flatten(module.parameters())}


def compare_parameters(layer, source, constructor):
    """Raise :class:`AnswerProblem` unless ``layer`` has ``source``'s parameter names and shapes.

    ``Module.update`` does not check shapes, so a wrongly sized projection
    would be silently overwritten: this check comes first.
    """
    expected, actual = _parameter_shapes(source), _parameter_shapes(layer)
    if expected == actual:
        return
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    listing = f"missing {missing}" if missing else ""
    if extra:
        listing += ("; " if listing else "") + f"unexpected {extra}"
    if missing and all(name.endswith(".bias") for name in missing) and not extra:
        raise AnswerProblem(
            f"the layer has no biases: {listing}.",
            "forgot_bias",
            "With bias=True every projection needs a bias: pass bias=bias to each nn.Linear.",
        )
    if extra and all(name.endswith(".bias") for name in extra) and not missing:
        raise AnswerProblem(
            f"the layer has biases although bias={constructor.get('bias', False)}: {listing}.",
            "bias_always",
            "nn.Linear has a bias by default: pass bias=bias (False unless asked) to each nn.Linear.",
        )
    if missing or extra:
        raise AnswerProblem(
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
        raise AnswerProblem(
            message,
            "value_input_default",
            "value_input_dims defaults to key_input_dims, not dims (as in mlx.nn.MultiHeadAttention).",
        )
    if len(got) == 2 and got == want[::-1]:
        raise AnswerProblem(
            message,
            "linear_transposed",
            "nn.Linear(input_dims, output_dims) stores its weight as (output_dims, input_dims): "
            "you swapped the input and output sizes.",
        )
    raise AnswerProblem(
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
# check()


def check(exercise_id, answer, *, time_limit=None):
    """Check ``answer`` for the exercise ``exercise_id``.

    Never raises: a missing implementation, an exception, a wrong type, NaNs
    or a case that runs too long all become a failed result with a message.

    Args:
        exercise_id (str): e.g. ``"split_heads"`` (see ``exercise_ids()``).
        answer: The learner's function or class.
        time_limit (float, optional): Seconds per case. Default:
            ``DEFAULT_TIME_LIMIT`` (env ``MHACOURSE_CHECK_TIME_LIMIT``).

    Returns:
        CheckResult: Displays as a report; ``.passed`` and ``.points`` for grading.
    """
    try:
        if not isinstance(exercise_id, str):
            raise KeyError(f"the exercise id must be a string such as 'split_heads', got "
                           f"{describe(exercise_id)}; known ids: {', '.join(exercise_ids())}")
        exercise = get_exercise(exercise_id)
    except KeyError as error:
        return CheckResult(describe(exercise_id) if not isinstance(exercise_id, str) else exercise_id,
                           "", False, INVALID, message=str(error.args[0]), max_points=0)
    except Exception as error:  # noqa: BLE001
        return CheckResult(str(exercise_id), "", False, ERROR, max_points=0,
                           message=f"the checker failed to load: {type(error).__name__}: {error}")
    try:
        return _check(exercise, answer, DEFAULT_TIME_LIMIT if time_limit is None else time_limit)
    except Exception as error:  # noqa: BLE001 - a bug in a check must not crash the notebook
        return CheckResult(exercise.id, exercise.title, False, ERROR, max_points=exercise.points,
                           message=f"the checker itself failed ({type(error).__name__}: {error}); "
                                   "please report this to the course authors.")


def _check(exercise, answer, time_limit):
    result = CheckResult(exercise.id, exercise.title, False, FAILED, max_points=exercise.points)
    try:
        exercise.validate(answer)
    except AnswerProblem as problem:
        result.status, result.message = INVALID, problem.message
        result.hint_id, result.hint = problem.hint_id, problem.hint
        return result

    outputs = {}  # case index -> the learner's output, for matching mistakes
    for index, case in enumerate(exercise.cases):
        expected = evaluate(exercise.run_case(exercise.reference, case))
        run = run_with_time_limit(lambda: exercise.run_case(answer, case), time_limit)
        case_result = CaseResult(case.name, PASSED, expected=describe(expected), seconds=run.seconds)
        result.cases.append(case_result)
        if run.timed_out:
            case_result.status = TIMEOUT
            case_result.message = (f"still running after {time_limit:g} s (it is left to finish in "
                                   "the background); the remaining cases were skipped.")
            case_result.hint_id, case_result.hint = "timeout", (
                "Look for an endless loop, or a Python loop over elements where one array "
                "operation would do; the cases are small.")
            break
        if isinstance(run.error, NotImplementedError):
            case_result.status = NOT_IMPLEMENTED
            case_result.message = "not implemented yet"
            break
        if isinstance(run.error, AnswerProblem):
            case_result.status = FAILED
            case_result.message = run.error.message
            case_result.hint_id, case_result.hint = run.error.hint_id, run.error.hint
            continue
        if run.error is not None:
            case_result.status = ERROR
            where = learner_line(run.error)
            case_result.message = f"{type(run.error).__name__}: {run.error}" + (f"\n  at {where}" if where else "")
            continue
        case_result.got = describe(run.value)
        comparisons, mismatch = compare(run.value, expected, check_dtype=case.check_dtype)
        case_result.comparisons = comparisons
        outputs[index] = run.value
        if mismatch is not None:
            case_result.status = FAILED
            case_result.message = "" if mismatch.kind == "values" else mismatch.message
            case_result.hint_id, case_result.hint = _generic_hint(mismatch, run.value, expected)

    _explain(exercise, result, outputs)
    statuses = [c.status for c in result.cases]
    result.passed = bool(statuses) and all(s == PASSED for s in statuses) and len(statuses) == len(exercise.cases)
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
    return result


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


def _explain(exercise, result, outputs):
    """Match the learner's outputs against every known mistake.

    The mistake that reproduces the learner's output on the most failing
    cases (then on the most cases overall, then the first listed) becomes the
    result's hint; each failing case shows the best mistake that matches it.
    """
    failing = {i for i, c in enumerate(result.cases) if i in outputs and c.status == FAILED}
    if not failing or not exercise.mistakes:
        return
    ranked = []  # (sort key, mistake, cases it matches)
    for order, mistake in enumerate(exercise.mistakes):
        matched = set()
        for index, actual in outputs.items():
            try:
                wrong = evaluate(exercise.run_case(mistake.answer, exercise.cases[index]))
            except Exception:  # noqa: BLE001 - a variant may fail on some shapes
                continue
            if matches(actual, wrong, check_dtype=exercise.cases[index].check_dtype):
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
                result.cases[index].hint_id, result.cases[index].hint = mistake.hint_id, mistake.hint
                break
