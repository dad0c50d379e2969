"""Property checks: what any correct answer must satisfy, beyond matching the reference.

A :class:`Property` is judged only from the outputs of its calls, never by
calling the answer itself: the grader runs the answer (in-process for
``check()``, in a sandbox for ``grade``) on every input ``calls(rng)`` returns
and hands the outputs, as plain data, to ``holds``.

The standard properties of attention, each built by a function below:

- :func:`rows_sum_to_one` (a softmax's rows) and :func:`weights_sum_to_one`
  (attention with all-ones values returns ones);
- :func:`causal`: changing future tokens leaves earlier outputs unchanged;
- :func:`permutation_equivariant`: without positions, permuting the tokens
  permutes the outputs (and permuting the keys with their values changes nothing);
- :func:`heads_independent`: changing head h's inputs changes only head h's output;
- :func:`batch_order_invariant`: permuting the batch permutes the outputs.

The inputs of a property are a dict of named arrays made by ``make(rng)``;
``to_call(arrays)`` turns it into the exercise's ``(args, kwargs)``.
"""

from dataclasses import dataclass

import mlx.core as mx
import numpy as np

__all__ = [
    "Property",
    "normal",
    "function_call",
    "module_call",
    "rows_sum_to_one",
    "weights_sum_to_one",
    "causal",
    "permutation_equivariant",
    "heads_independent",
    "batch_order_invariant",
]

ATOL = 1e-4  # float32 outputs of a few small matrix products


@dataclass
class Property:
    """A property the answer's outputs must have.

    Attributes:
        name (str): Reported by name, e.g. ``"rows of weights sum to 1"``.
        calls (callable): ``calls(rng)`` with a ``numpy.random.Generator``
            returns a list of inputs, each ``(args, kwargs)`` as ``Case.inputs()``
            returns them for the exercise.
        holds (callable): ``holds(outputs)`` with one output per call returns
            ``None`` when the property holds, else a message.
        hint_id (str): The mistake a failure reveals.
        hint (str): The fix (tier 2).
        nudge (str, optional): Where to look (tier 1).
    """

    name: str
    calls: object
    holds: object
    hint_id: str
    hint: str
    nudge: str = None


def normal(rng, *shape):
    """Standard-normal float32 inputs of ``shape`` drawn from ``rng``."""
    return mx.array(rng.standard_normal(shape).astype(np.float32))


def function_call(names, **kwargs):
    """``to_call`` for a function taking the named arrays positionally, then ``kwargs``."""

    def to_call(arrays):
        return tuple(arrays[n] for n in names), dict(kwargs)

    return to_call


def module_call(constructor, names, **kwargs):
    """``to_call`` for a layer built with ``constructor`` and called on the named arrays."""

    def to_call(arrays):
        return (dict(constructor), tuple(arrays[n] for n in names)), dict(kwargs)

    return to_call


def _numpy(x):
    """The output as a float64 NumPy array, or ``None`` when it is not an array."""
    if isinstance(x, (tuple, list)) and x:  # (output, ...) answers: judge the output
        x = x[0]
    try:
        if isinstance(x, mx.array):
            x = x.astype(mx.float32) if x.dtype == mx.bfloat16 else x
        array = np.asarray(x, dtype=np.float64)
    except Exception:  # noqa: BLE001 - anything else cannot be judged
        return None
    return array if array.ndim > 0 else None


def _judged(outputs, count):
    """The outputs as arrays of one shape, or ``None`` when they cannot be judged.

    Outputs of the wrong kind or shape already fail the comparison with the
    reference; a property is then not judged.
    """
    arrays = [_numpy(o) for o in outputs]
    if len(arrays) != count or any(a is None for a in arrays):
        return None
    if any(a.shape != arrays[0].shape for a in arrays):
        return None
    return arrays


def _redraw(rng, x, axis, which):
    """``x`` with the positions ``which(length)`` (booleans) along ``axis`` drawn anew."""
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    selected = mx.array(which(x.shape[axis]).reshape(shape))
    return mx.where(selected, normal(rng, *x.shape), x)


def _shuffle(length, salt):
    """A fixed permutation of ``range(length)`` that moves every position (for length > 1)."""
    order = np.random.default_rng(1000 * length + salt).permutation(length)
    return np.roll(order, 1) if length > 1 and (order == np.arange(length)).any() else order


def _where(diff):
    index = tuple(int(i) for i in np.unravel_index(int(np.nanargmax(diff)), diff.shape))
    return index, float(np.nanmax(diff))


def _different(a, b):
    """Where ``a`` and ``b`` differ most, or ``None`` when they are close (NaN = NaN)."""
    with np.errstate(invalid="ignore"):
        diff = np.abs(a - b)
    diff = np.where(np.isnan(a) & np.isnan(b), 0.0, diff)
    diff = np.where(np.isnan(diff), np.inf, diff)
    if diff.size == 0 or float(diff.max()) <= ATOL + ATOL * float(np.nanmax(np.abs(b), initial=0.0)):
        return None
    return _where(diff)


def _compared(count, pair, message):
    """A ``holds`` that compares two arrays derived from ``count`` outputs.

    Args:
        count (int): The number of outputs (one per call).
        pair (callable): ``pair(judged)`` with the outputs as NumPy arrays
            returns ``(actual, expected)``.
        message (callable): ``message(judged, index)`` says what went wrong,
            ``index`` being where ``actual`` and ``expected`` differ most.
    """

    def holds(outputs):
        judged = _judged(outputs, count)
        if judged is None:
            return None
        found = _different(*pair(judged))
        return message(judged, found[0]) if found else None

    return holds


def _at(judged, axis, selection):
    """The second and the first of two outputs at ``selection`` (an index) along ``axis``."""
    before, after = (np.moveaxis(a, axis, 0)[selection] for a in judged)
    return after, before


# ---------------------------------------------------------------------------
# The standard properties


def rows_sum_to_one(make, to_call, *, hint_id="softmax_not_normalised", hint=None, nudge=None):
    """A softmax's rows (its last axis) sum to 1.

    Args:
        make (callable): ``make(rng)`` returns the named input arrays.
        to_call (callable): Turns them into the exercise's ``(args, kwargs)``.
    """

    def calls(rng):
        return [to_call(make(rng))]

    def sums(judged):
        return judged[0].sum(axis=-1)

    holds = _compared(1, lambda judged: (sums(judged), np.ones_like(sums(judged))),
                      lambda judged, index: f"row {index} sums to {sums(judged)[index]:.4g}, not 1.")

    return Property("rows of weights sum to 1", calls, holds, hint_id,
                    hint or "Divide each row of exp(x - max) by its own sum, x.sum(axis=-1, keepdims=True), "
                            "so that every row of weights sums to 1.", nudge)


def weights_sum_to_one(make, to_call, *, values="values", hint_id="weights_not_normalised", hint=None,
                       nudge=None):
    """Attention whose values are all ones returns ones: each query's weights sum to 1.

    ``make(rng)`` must give a ``values`` array; it is replaced by ones with a
    last axis of 1.
    """

    def calls(rng):
        arrays = make(rng)
        arrays[values] = mx.ones(arrays[values].shape[:-1] + (1,), dtype=arrays[values].dtype)
        return [to_call(arrays)]

    holds = _compared(
        1, lambda judged: (judged[0], np.ones_like(judged[0])),
        lambda judged, index: (f"with every value equal to 1 the output should be 1 everywhere (each query's "
                               f"weights sum to 1), but at index {index} it is {judged[0][index]:.4g}."))

    return Property("rows of weights sum to 1", calls, holds, hint_id,
                    hint or "Normalise the weights over the keys: softmax(scores, axis=-1), so that each "
                            "query's weights sum to 1 and the output is a weighted *average* of the values.",
                    nudge)


def causal(make, to_call, *, token_axis=-2, output_axis=-2, hint_id="not_causal", hint=None, nudge=None):
    """Changing the tokens from position t on leaves the outputs before t unchanged.

    Every array ``make(rng)`` returns is a sequence along ``token_axis``, of
    one length L (self-attention); positions ``L // 2 ...`` are redrawn.
    """

    def calls(rng):
        arrays = make(rng)
        changed = {name: _redraw(rng, x, token_axis, lambda length: np.arange(length) >= length // 2)
                   for name, x in arrays.items()}
        return [to_call(arrays), to_call(changed)]

    def half(judged):
        return judged[0].shape[output_axis] // 2

    holds = _compared(
        2, lambda judged: _at(judged, output_axis, slice(half(judged))),
        lambda judged, index: (f"changing the tokens from position {half(judged)} on changed the output at "
                               f"position {index[0]}, which must not see them."))

    return Property("causality: changing future tokens leaves earlier outputs unchanged", calls, holds, hint_id,
                    hint or "Each query may attend only to keys at its position or before: apply the causal "
                            "mask (mask=\"causal\", or key j <= query i) before the softmax.", nudge)


def permutation_equivariant(make, to_call, *, queries=("queries",), keys=("keys", "values"), token_axis=-2,
                            output_axis=-2, hint_id="not_permutation_equivariant", hint=None, nudge=None):
    """Without positions, permuting the queries permutes the outputs, and permuting
    the keys together with their values changes nothing.

    The permutations are fixed by the length (``holds`` sees only the outputs).

    Args:
        queries (tuple[str]): The arrays permuted like the queries (for
            self-attention, the one input).
        keys (tuple[str]): The arrays permuted like the keys (keys and values).
    """

    def calls(rng):
        arrays = make(rng)
        permuted = dict(arrays)
        for names, salt in ((queries, 0), (keys, 1)):
            for name in names:
                order = _shuffle(arrays[name].shape[token_axis], salt)
                permuted[name] = mx.take(arrays[name], mx.array(order), axis=token_axis)
        return [to_call(arrays), to_call(permuted)]

    def pair(judged):
        order = _shuffle(judged[0].shape[output_axis], 0)
        return judged[1], np.take(judged[0], order, axis=output_axis)

    holds = _compared(
        2, pair,
        lambda judged, index: (f"shuffling the tokens did not just shuffle the outputs (first difference at "
                               f"index {index}): the output depends on the positions, which attention without "
                               "positions cannot see."))

    return Property("permutation equivariance (no positions)", calls, holds, hint_id,
                    hint or "Attention without positional information treats the tokens as a set: every "
                            "operation must act on all positions alike (no bias or mask that depends on "
                            "the position, no mixing along the token axis outside the weights).", nudge)


def heads_independent(make, to_call, *, names=("queries", "keys", "values"), head_axis=1, output_axis=1,
                      head=1, hint_id="heads_not_independent", hint=None, nudge=None):
    """Changing head ``head``'s inputs changes only head ``head``'s output."""

    def calls(rng):
        arrays = make(rng)
        changed = dict(arrays)
        for name in names:
            changed[name] = _redraw(rng, arrays[name], head_axis, lambda length: np.arange(length) == head)
        return [to_call(arrays), to_call(changed)]

    def others(judged):
        return [h for h in range(judged[0].shape[output_axis]) if h != head]

    holds = _compared(
        2, lambda judged: _at(judged, output_axis, others(judged)),
        lambda judged, index: (f"changing head {head}'s queries, keys and values changed the output of head "
                               f"{others(judged)[index[0]]}."))

    return Property("heads are independent", calls, holds, hint_id,
                    hint or "Each head attends on its own: nothing may mix the heads axis (axis 1 of "
                            "(B, H, L_q, L_k)) — take the softmax over the keys, axis=-1.", nudge)


def batch_order_invariant(make, to_call, *, names=None, hint_id="batch_order_matters", hint=None, nudge=None):
    """Reversing the batch (axis 0 of the arrays ``names``, default all) reverses the outputs."""

    def calls(rng):
        arrays = make(rng)
        permuted = dict(arrays)
        for name in names or tuple(arrays):
            permuted[name] = arrays[name][::-1]
        return [to_call(arrays), to_call(permuted)]

    holds = _compared(
        2, lambda judged: (judged[1], judged[0][::-1]),
        lambda judged, index: (f"reversing the batch changed the output of example "
                               f"{len(judged[0]) - 1 - index[0]}, not just its place: the examples of a batch "
                               "must not affect each other."))

    return Property("invariance to the batch order", calls, holds, hint_id,
                    hint or "The examples of a batch are independent: reduce (max, sum, mean) only over "
                            "one example's axes, never over axis 0.", nudge)
