"""How an answer is called: the same code calls the learner's answer in the sandbox and the
reference in the trusted judge, so both are called alike.

A driver takes the answer and one call's inputs (as built by the grader) and
returns what the answer gave. It knows nothing about the exercise's reference,
mistakes or hints: when the answer cannot be used it raises :class:`Problem`
with a code and plain data, and the trusted side turns that into a message
and a hint.

Drivers:

* ``"function"``: ``answer(*args, **kwargs)``.
* ``"class"``: build ``answer(**constructor)``, check its parameter names and
  shapes against the trusted layer's, load the trusted weights with
  ``update`` and call ``layer(*call_args, **kwargs)``.
* ``"decode"``: one decoding step per new token, feeding back the cache.
* ``"timing"``: ``answer(fn, inputs, repeats)`` where ``fn`` is a workload
  named in the inputs; the output is what the answer did (calls, evaluated
  results, whether the number returned is a mean per call measured by a clock).
"""

import inspect
import time

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

__all__ = ["Problem", "validate", "call", "DRIVERS", "WORKLOADS", "parameter_shapes", "FixedLogits"]

_perf_counter = time.perf_counter  # taken before any learner code can replace time.perf_counter
_sleep = time.sleep
_eval = mx.eval


class Problem(Exception):
    """The answer cannot be used (not the learner's exception: the driver's finding).

    Attributes:
        code (str): What is wrong, e.g. ``"signature"``, ``"not_a_module"``,
            ``"parameters"``, ``"decode_return"``, ``"wrong_answer_type"``,
            ``"instance_not_class"``.
        data (dict): Plain data for the message (``str``/``int`` values, shapes as lists).
    """

    def __init__(self, code, **data):
        super().__init__(code)
        self.code = code
        self.data = data


def _describe(value):
    if isinstance(value, type):
        return f"the class {value.__name__}"
    return f"a {type(value).__name__}"


def validate(kind, answer):
    """Raise :class:`Problem` unless ``answer`` is the kind of object the exercise wants.

    Args:
        kind (str): ``"function"`` or ``"class"``.
    """
    if kind == "class":
        if isinstance(answer, nn.Module):
            raise Problem("instance_not_class", got=type(answer).__name__)
        if not isinstance(answer, type):
            raise Problem("wrong_answer_type", got=_describe(answer))
    elif isinstance(answer, type) or not callable(answer):
        raise Problem("wrong_answer_type", got=_describe(answer))


def _check_signature(answer, args, kwargs):
    try:
        params = inspect.signature(answer)
    except (TypeError, ValueError):  # builtins without a signature
        return
    try:
        params.bind(*args, **kwargs)
    except TypeError as error:
        raise Problem("signature", error=str(error)) from None


def parameter_shapes(module):
    """``{name: shape}`` of a module's parameters (shapes as tuples)."""
    return {name: tuple(value.shape) for name, value in tree_flatten(module.parameters())}


def _function(answer, inputs, extra):
    args, kwargs = inputs
    _check_signature(answer, args, kwargs)
    return answer(*args, **kwargs)


def _class(answer, inputs, extra):
    """``extra`` is the trusted layer's flat parameters ``{name: array}``."""
    (constructor, call_args), call_kwargs = inputs
    _check_signature(answer, (), constructor)
    layer = answer(**constructor)
    if not isinstance(layer, nn.Module):
        raise Problem("not_a_module", got=type(layer).__name__)
    expected = {name: tuple(value.shape) for name, value in extra.items()}
    actual = parameter_shapes(layer)
    if actual != expected:
        raise Problem("parameters", expected={k: list(v) for k, v in expected.items()},
                      actual={k: list(v) for k, v in actual.items()})
    layer.update(tree_unflatten(list(extra.items())))
    _check_signature(layer, call_args, call_kwargs)
    return layer(*call_args, **call_kwargs)


def _decode(answer, inputs, extra):
    """Call the step once per new token, each time on the cache the previous step returned."""
    (queries, keys, values, cached_keys, cached_values), kwargs = inputs
    outputs = []
    for t in range(queries.shape[2]):
        args = (queries[:, :, t:t + 1], keys[:, :, t:t + 1], values[:, :, t:t + 1], cached_keys, cached_values)
        _check_signature(answer, args, kwargs)
        returned = answer(*args, **kwargs)
        if not isinstance(returned, (tuple, list)) or len(returned) != 3:
            raise Problem("decode_return", got=_describe(returned))
        output, cached_keys, cached_values = returned
        outputs.append(output)
    return mx.concatenate(outputs, axis=2), cached_keys, cached_values  # (B, H_q, T, D_h), cache


def _explicit_attention(queries, keys, values):
    """The timing exercise's workload: softmax(Q·Kᵀ/√D_h)·V, lazily."""
    scores = queries @ keys.swapaxes(-1, -2) / queries.shape[-1] ** 0.5  # (B, H, L_q, L_k)
    return mx.softmax(scores, axis=-1) @ values  # (B, H, L_q, D_h)


def _slow_attention(queries, keys, values):
    """The same, 20 ms slower per call (the sleep happens when called, not when evaluated)."""
    _sleep(0.02)
    return _explicit_attention(queries, keys, values)


WORKLOADS = {"explicit attention": _explicit_attention, "slow attention": _slow_attention}


def _arrays_in(values):
    found = []
    for value in values:
        if isinstance(value, mx.array):
            found.append(value)
        elif isinstance(value, (tuple, list)):
            found.extend(_arrays_in(value))
        elif isinstance(value, dict):
            found.extend(_arrays_in(value.values()))
    return found


def _timing(answer, inputs, extra):
    """``answer(fn, arrays, repeats)`` must time ``fn(*arrays)`` with every timed result evaluated.

    The output is what the answer did, not the (machine-dependent) seconds:
    how many calls, how many of the timed results went through ``mx.eval``, and
    whether the number returned is measured (at least 0.3 of the timed loop per
    call: a constant such as ``1e-12`` is not) and a mean (at most 0.6 of the
    whole timed loop, which runs at least 3 calls: a total is not). The timed
    loop runs from the first of the last ``repeats`` calls to the answer's return.
    """
    (workload, arrays, repeats), kwargs = inputs
    fn = WORKLOADS[workload]
    results, evaluated, started = [], [], []

    def counted(*args):
        started.append(_perf_counter())
        result = fn(*args)
        results.append(result)
        return result

    def recording(*args):
        evaluated.extend(_arrays_in(args))  # kept alive: compared by identity below
        return _eval(*args)

    _check_signature(answer, (counted, arrays, repeats), kwargs)
    mx.eval = recording
    start = _perf_counter()
    try:
        seconds = answer(counted, arrays, repeats, **kwargs)
    finally:
        mx.eval = _eval
    timed_loop = _perf_counter() - (started[-repeats] if len(started) >= repeats else start)
    timed = results[-repeats:]
    is_number = isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and seconds > 0
    per_call = timed_loop / max(repeats, 1)
    return {"calls of fn": len(results),
            "timed results evaluated": sum(any(r is e for e in evaluated) for r in timed),
            "a positive number of seconds": is_number,
            "measured with a clock": bool(is_number and seconds >= 0.3 * per_call),
            "a mean per call": bool(is_number and seconds <= 0.6 * timed_loop)}


class FixedLogits:
    """A model that answers one batch: what the capstone's model gave on it, computed by the grader.

    ``answer_loss(model, inputs, targets)`` only reads ``model.seq_len`` and calls
    ``model(inputs)``; this stand-in lets it run where the capstone's model is not
    importable (in the sandbox of lesson 08, whose exercises implement it).

    Args:
        seq_len (int): The model's ``seq_len``.
        inputs (mx.array): The batch it knows, ``(N, T)``.
        logits (mx.array): Its logits on that batch, ``(N, T, vocab)``.
    """

    def __init__(self, seq_len, inputs, logits):
        self.seq_len, self._inputs, self._logits = seq_len, inputs, logits

    def __call__(self, tokens):
        if not (isinstance(tokens, mx.array) and tokens.shape == self._inputs.shape
                and mx.array_equal(tokens, self._inputs).item()):
            raise ValueError("call the model on the inputs you were given: model(inputs)")
        return self._logits


DRIVERS = {"function": _function, "class": _class, "decode": _decode, "timing": _timing}


def call(driver, answer, inputs, extra=None):
    """Call ``answer`` on one call's ``inputs`` the way ``driver`` says; return its (lazy) output.

    Raises:
        Problem: when the answer cannot be used (signature, not a module, parameters, ...).
        Exception: whatever the answer raised.
    """
    return DRIVERS[driver](answer, inputs, extra)
