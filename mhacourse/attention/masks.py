"""Stage 3: attention masks.

A mask says which keys each query may attend to. MLX accepts three kinds,
each broadcastable to ``(batch, num_heads, n_queries, n_keys)``:

- **additive** (float): added to the scores; ``-inf`` or a very negative
  number blocks a key;
- **boolean**: ``True`` means *attend* (the opposite of PyTorch's
  ``nn.MultiheadAttention``, where ``True`` means *blocked*);
- the string ``"causal"``: each query sees the keys up to its own position,
  aligned to the lower right when ``n_queries != n_keys``.

**A query row with no allowed key** gets the behaviour of the fused kernel's
reference path: with a boolean mask (and ``"causal"``), blocked scores become
``finfo(dtype).min``, so the row's weights are uniform and its output is the
mean of the values; with an additive ``-inf`` row the softmax divides 0 by 0
and the output is NaN. (``"causal"`` with more queries than keys leaves the
first rows with no key; MLX promises nothing for them and GPU kernels have
differed, so do not rely on those rows.) The helpers here build boolean masks, or additive ones
from ``finfo(dtype).min``, so they never produce NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

__lesson__ = "03"  # the lesson that teaches this module: the grader binds it only for later lessons

import mlx.core as mx
import numpy as np

from .scaled_dot_product import causal_keep, result_dtype

__all__ = [
    "causal_mask",
    "causal",
    "padding_mask",
    "to_additive",
    "to_boolean",
    "combine",
]


def causal_mask(n: int, dtype: mx.Dtype = mx.float32) -> mx.array:
    """The additive causal mask of ``mlx.nn.MultiHeadAttention``.

    Args:
        n (int): The sequence length.
        dtype (Dtype, optional): The mask's dtype. Default: ``mx.float32``.

    Returns:
        array: ``(n, n)``: 0 on and below the diagonal, ``finfo(dtype).min`` above.
    """
    blocked = ~causal_keep(n, n)  # (n, n)
    return blocked.astype(dtype) * mx.finfo(dtype).min


def causal(n_queries: int, n_keys: int | None = None) -> mx.array:
    """The boolean causal mask (True = attend), aligned like ``mask="causal"``.

    Args:
        n_queries (int): Number of queries.
        n_keys (int, optional): Number of keys. Default: ``n_queries``.

    Returns:
        array: ``(n_queries, n_keys)`` booleans.
    """
    return causal_keep(n_queries, n_queries if n_keys is None else n_keys)


def _as_array(x, name):
    if isinstance(x, mx.array):
        return x
    try:
        return mx.array(np.asarray(x))
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be an array-like, got {type(x).__name__}.") from error


def padding_mask(lengths: mx.array | Sequence[int], n_keys: int) -> mx.array:
    """A boolean key-padding mask from the number of valid keys per example.

    Args:
        lengths (array or list[int]): ``(B,)`` valid lengths, each in
            ``[0, n_keys]``; the first ``lengths[b]`` keys of example ``b``
            are real, the rest are padding.
        n_keys (int): The padded number of keys.

    Returns:
        array: ``(B, 1, 1, n_keys)`` booleans, True = attend, ready to
        broadcast over heads and queries.
    """
    lengths = _as_array(lengths, "lengths")
    if lengths.ndim != 1 or not mx.issubdtype(lengths.dtype, mx.integer):
        raise ValueError(
            f"lengths must be a 1-D list of integers, got {lengths.dtype} of shape {tuple(lengths.shape)}.")
    low, high = mx.min(lengths).item(), mx.max(lengths).item()
    if low < 0 or high > n_keys:
        raise ValueError(f"lengths must lie in [0, n_keys={n_keys}], got values from {low} to {high}.")
    keep = mx.arange(n_keys)[None] < lengths[:, None]  # (B, n_keys)
    return keep[:, None, None, :]  # (B, 1, 1, n_keys)


def to_additive(mask: mx.array, dtype: mx.Dtype = mx.float32) -> mx.array:
    """Convert a boolean mask (True = attend) to an additive one.

    Blocked entries become ``finfo(dtype).min`` rather than ``-inf`` so that
    a fully blocked row behaves as it does with the boolean mask. An additive
    mask is only cast to ``dtype``.
    """
    if mask.dtype != mx.bool_:
        return mask.astype(dtype)
    return mx.where(mask, mx.array(0, dtype), mx.array(mx.finfo(dtype).min, dtype))


def to_boolean(mask: mx.array, threshold: float = -1e4) -> mx.array:
    """Convert an additive mask to a boolean one (True = attend).

    Entries at or below ``threshold`` (``-inf``, ``finfo.min``, ``-1e9``...)
    are blocked and entries equal to 0 are allowed. Any other value is a bias
    that a boolean mask cannot express, so it raises ``ValueError`` instead of
    being silently dropped.
    """
    if mask.dtype == mx.bool_:
        return mask
    blocked = mask <= threshold
    if not mx.all(blocked | (mask == 0)).item():
        raise ValueError(
            "mask holds values other than 0 and blocked entries (<= threshold "
            f"{threshold}); it is a bias, not a mask, and has no boolean form."
        )
    return ~blocked


def combine(*masks: mx.array | None) -> mx.array | None:
    """Combine masks so that a key is attended only if every mask allows it.

    ``None`` entries are skipped. Boolean masks are combined with AND; if any
    mask is additive, the booleans are converted to its dtype and the masks are
    summed. A sum of finite blocked entries that overflows is kept at
    ``finfo.min`` (an explicit ``-inf`` stays ``-inf``).

    Returns:
        array or None: The broadcast combination, or ``None`` if no mask was given.
    """
    masks = [m for m in masks if m is not None]
    for m in masks:
        if isinstance(m, str):
            raise ValueError(
                f"combine takes arrays, not {m!r}: build the causal mask with "
                "masks.causal(n_queries, n_keys) first."
            )
    if not masks:
        return None
    if all(m.dtype == mx.bool_ for m in masks):
        keep = masks[0]
        for m in masks[1:]:
            keep = keep & m
        return keep

    dtype = result_dtype(*(m.dtype for m in masks if m.dtype != mx.bool_))
    additive = [to_additive(m, dtype) for m in masks]
    total = additive[0]
    explicit_inf = mx.isneginf(additive[0])
    for m in additive[1:]:
        total = total + m
        explicit_inf = explicit_inf | mx.isneginf(m)
    overflow = mx.isneginf(total) & ~explicit_inf
    return mx.where(overflow, mx.array(mx.finfo(dtype).min, dtype), total)
