"""Stage 1: scaled dot-product attention, written out step by step.

``softmax(Q Kᵀ · scale + mask) V`` with exactly the semantics of
``mx.fast.scaled_dot_product_attention``: the same inputs, the same masks
(additive, boolean, ``"causal"``), grouped-query attention, and the same
errors. Unlike the fused kernel it can also hand back the attention weights.
"""

from __future__ import annotations

__lesson__ = "01"  # the lesson that teaches this module: the grader binds it only for later lessons

import functools
import math

import mlx.core as mx

__all__ = [
    "scaled_dot_product_attention",
    "attention_weights",
    "attention_scores",
    "attention_with_weights",
    "apply_mask",
    "causal_keep",
    "check_attention_inputs",
    "check_mask",
    "head_scale",
]


def _shape(x):
    return "(" + ", ".join(str(s) for s in x.shape) + ")"


@functools.lru_cache(maxsize=128)
def result_dtype(*dtypes: mx.Dtype) -> mx.Dtype:
    """The dtype MLX's type promotion gives to arrays of ``dtypes`` combined."""
    # Adding empty arrays evaluates nothing: only the dtype is read (and remembered).
    return sum((mx.zeros((0,), dtype) for dtype in dtypes[1:]), mx.zeros((0,), dtypes[0])).dtype


def check_attention_inputs(queries: mx.array, keys: mx.array, values: mx.array | None = None,
                           mask: mx.array | str | None = None) -> None:
    """Validate inputs the way ``mx.fast.scaled_dot_product_attention`` does.

    Raises ``ValueError`` (``TypeError`` for non-arrays) naming the argument,
    the expected shape and the shape that was given.
    """
    named = [("queries", queries), ("keys", keys)]
    if values is not None:
        named.append(("values", values))
    for name, x in named:
        if not isinstance(x, mx.array):
            raise TypeError(f"{name} must be an mx.array, got {type(x).__name__}.")
        if x.ndim != 4:
            raise ValueError(
                f"{name} must have rank 4, (batch, heads, length, head_dims); "
                f"got shape {_shape(x)}."
            )

    out_dtype = result_dtype(*(x.dtype for _, x in named))
    if not mx.issubdtype(out_dtype, mx.floating):
        raise ValueError(
            f"{', '.join(name for name, _ in named)} must be floating point "
            f"arrays; together they promote to {out_dtype}."
        )

    B, n_q_heads, _, D = queries.shape
    _, n_kv_heads, n_keys, _ = keys.shape
    for name, x in named[1:]:
        if x.shape[0] != B:
            raise ValueError(
                f"{name} has batch size {x.shape[0]} but queries have {B} "
                f"({name} {_shape(x)}, queries {_shape(queries)})."
            )
    if keys.shape[-1] != D:
        raise ValueError(
            f"keys must have the same last dimension as queries ({D}); "
            f"got keys {_shape(keys)}, queries {_shape(queries)}."
        )
    if n_q_heads % n_kv_heads != 0:
        raise ValueError(
            f"the number of query heads ({n_q_heads}) must be a multiple of "
            f"the number of key/value heads ({n_kv_heads})."
        )
    if values is not None and values.shape[1:3] != keys.shape[1:3]:
        raise ValueError(
            f"values must have as many heads and positions as keys "
            f"(keys {_shape(keys)}, values {_shape(values)})."
        )

    target = (B, n_q_heads, queries.shape[2], n_keys)
    check_mask(mask, target, out_dtype)


def check_mask(mask: mx.array | str | None, target: tuple[int, ...], dtype: mx.Dtype) -> None:
    """Check that ``mask`` is usable for scores of shape ``target`` and ``dtype``.

    Args:
        mask (array or str or None): The mask to check.
        target (tuple(int)): ``(B, H_q, L_q, L_k)``, the shape of the scores.
        dtype (Dtype): The dtype of the scores; an additive mask must not promote it.
    """
    if mask is None:
        return
    if isinstance(mask, str):
        if mask != "causal":
            raise ValueError(f"mask must be 'causal', an mx.array or None; got {mask!r}.")
        return
    if not isinstance(mask, mx.array):
        raise TypeError(f"mask must be 'causal', an mx.array or None; got {type(mask).__name__}.")
    if mask.ndim > 4:
        raise ValueError(f"mask must have at most 4 dimensions, got shape {_shape(mask)}.")
    try:
        fits = mx.broadcast_shapes(mask.shape, target) == target
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"mask of shape {_shape(mask)} cannot broadcast to "
            f"(batch, heads, n_queries, n_keys) = {target}."
        )
    if mask.dtype != mx.bool_ and result_dtype(mask.dtype, dtype) != dtype:
        raise ValueError(
            f"an additive mask of dtype {mask.dtype} would promote the "
            f"{dtype} inputs; build it in {dtype} (e.g. mask.astype({dtype}))."
        )


def head_scale(queries: mx.array) -> float:
    """``1 / sqrt(D_h)``, read from the projected queries ``(B, H, L_q, D_h)``.

    MLX's layer takes the scale from the queries after the projection, so it
    holds for any ``query_proj``: a ``Linear``, a quantized one or a wrapper.
    """
    return math.sqrt(1 / queries.shape[-1])


def causal_keep(n_queries: int, n_keys: int) -> mx.array:
    """The boolean causal pattern, aligned to the lower right.

    Query ``i`` may attend to key ``j`` when ``j <= i + n_keys - n_queries``,
    so the last query sees every key (as when the queries are the newest
    tokens of a longer sequence). True means *attend*.

    Args:
        n_queries (int): Number of queries.
        n_keys (int): Number of keys.

    Returns:
        array: Boolean array of shape ``(n_queries, n_keys)``.
    """
    offset = n_keys - n_queries
    rows = mx.arange(n_queries)[:, None] + offset  # (Lq, 1)
    cols = mx.arange(n_keys)[None]  # (1, Lk)
    return cols <= rows


def apply_mask(scores: mx.array, mask: mx.array | str | None) -> mx.array:
    """Apply an attention mask to the scores ``(B, H, Lq, Lk)``.

    An additive mask is added. A boolean mask (True = attend) and
    ``"causal"`` replace the blocked scores by the most negative finite
    number of the scores' dtype, so that a row with no allowed key gives
    uniform weights rather than NaN, as in the fused kernel.
    """
    if mask is None:
        return scores
    if isinstance(mask, str):
        mask = causal_keep(scores.shape[-2], scores.shape[-1])
    if mask.dtype == mx.bool_:
        return mx.where(mask, scores, mx.finfo(scores.dtype).min)
    return scores + mask


def _repeat_kv_heads(x, n_q_heads):
    # Grouped-query attention: query head h reads key/value head h // group.
    group = n_q_heads // x.shape[1]
    if group == 1:
        return x
    return mx.repeat(x, group, axis=1)  # (B, H_q, L, D)


def _scores(queries, keys, scale):
    keys = _repeat_kv_heads(keys, queries.shape[1])  # (B, H_q, L_k, D)
    queries = queries * scale  # scaled in the queries' dtype, as mx.fast does
    return queries @ keys.swapaxes(-1, -2)  # (B, H_q, L_q, L_k)


def _weights(queries, keys, scale, mask):
    scores = apply_mask(_scores(queries, keys, scale), mask)  # (B, H_q, L_q, L_k)
    return mx.softmax(scores, axis=-1, precise=True)


def attention_scores(queries: mx.array, keys: mx.array, *, scale: float) -> mx.array:
    """The scaled dot products ``(queries · scale) @ keysᵀ``, before any mask.

    Args:
        queries (array): ``(B, H_q, L_q, D)``.
        keys (array): ``(B, H_kv, L_k, D)``; ``H_q`` a multiple of ``H_kv``.
        scale (float): Multiplies the queries, usually ``1 / sqrt(D)``.

    Returns:
        array: The scores, ``(B, H_q, L_q, L_k)``.
    """
    check_attention_inputs(queries, keys)
    return _scores(queries, keys, scale)


def attention_weights(queries: mx.array, keys: mx.array, *, scale: float,
                      mask: mx.array | str | None = None) -> mx.array:
    """The attention weights ``softmax(scores + mask)`` over the keys.

    Args:
        queries (array): ``(B, H_q, L_q, D)``.
        keys (array): ``(B, H_kv, L_k, D)``; ``H_q`` a multiple of ``H_kv``.
        scale (float): Multiplies the queries, usually ``1 / sqrt(D)``.
        mask (array or str, optional): An additive mask, a boolean mask
            (True = attend) or ``"causal"``, broadcastable to
            ``(B, H_q, L_q, L_k)``. Default: ``None``.

    Returns:
        array: ``(B, H_q, L_q, L_k)``; every row sums to 1.
    """
    check_attention_inputs(queries, keys, mask=mask)
    return _weights(queries, keys, scale, mask)


def attention_with_weights(queries: mx.array, keys: mx.array, values: mx.array, *, scale: float,
                           mask: mx.array | str | None = None) -> tuple[mx.array, mx.array]:
    """Explicit attention that also returns its weights.

    Takes the same arguments as :func:`scaled_dot_product_attention`.

    Returns:
        tuple(array, array): The output ``(B, H_q, L_q, D_v)`` and the
        weights ``(B, H_q, L_q, L_k)``.
    """
    check_attention_inputs(queries, keys, values, mask)
    weights = _weights(queries, keys, scale, mask)  # (B, H_q, L_q, L_k)
    values = _repeat_kv_heads(values, queries.shape[1])  # (B, H_q, L_k, D_v)
    return weights @ values, weights  # (B, H_q, L_q, D_v)


def scaled_dot_product_attention(queries: mx.array, keys: mx.array, values: mx.array, *, scale: float,
                                 mask: mx.array | str | None = None) -> mx.array:
    """Explicit attention with the semantics of ``mx.fast.scaled_dot_product_attention``.

    Args:
        queries (array): ``(B, H_q, L_q, D)``.
        keys (array): ``(B, H_kv, L_k, D)``; ``H_q`` a multiple of ``H_kv``.
        values (array): ``(B, H_kv, L_k, D_v)``.
        scale (float): Multiplies the queries, usually ``1 / sqrt(D)``.
        mask (array or str, optional): An additive mask, a boolean mask
            (True = attend) or ``"causal"``, broadcastable to
            ``(B, H_q, L_q, L_k)``. Default: ``None``.

    Returns:
        array: ``(B, H_q, L_q, D_v)``.
    """
    return attention_with_weights(queries, keys, values, scale=scale, mask=mask)[0]
