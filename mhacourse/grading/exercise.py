"""The exercise data model: what a lesson file declares, and what a call of an answer gives.

An exercise is one object, declared whole in its lesson file
(:mod:`mhacourse.grading.lessons`): its reference, visible cases, hidden-case
builder, known mistakes with their hints, properties, policy and points. The
registry (:mod:`.registry`) only collects them; nothing changes an exercise
after it is declared.

The answer is called through a driver of :mod:`.sandbox.drivers`, the same
code that calls it inside the grader's sandbox; a driver's
:class:`~.sandbox.drivers.Problem` becomes an :class:`AnswerProblem` with its
message and hint here.
"""

from dataclasses import dataclass, field

import mlx.core as mx
from mlx.utils import tree_flatten

from .runner import AnswerProblem, learner_line
from .sandbox import drivers
from .sandbox.harness import safe_text, type_name

__all__ = ["Case", "Mistake", "Exercise", "ModuleExercise", "Call", "Outcome", "parameter_problem",
           "error_descriptor"]


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

    ``inputs`` must give the same values on every call (seeded): the answer
    runs on one call's values in the sandbox and the reference on another's
    outside. So the judge computes the reference's and each mistake's output
    on a case once and keeps it with the case (never sent to the sandbox).
    """

    name: str
    inputs: object
    check_dtype: bool = True
    memory_cap: int = None
    trusted_outputs: dict = field(default_factory=dict, init=False, repr=False, compare=False)


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
            return AnswerProblem(
                f"check({self.id!r}, ...) expects {what} {self.signature}, got {got}.",
                "wrong_answer_type",
                f"Pass the {what[2:]} itself: check({self.id!r}, {self.answer_name}).",
            )
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
    return error_descriptor(kind, type_name(error), safe_text(error, 500), line)
