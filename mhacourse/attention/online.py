"""Stage 5a: attention over key tiles with an online softmax.

The idea behind fused ("flash") attention kernels, written with ordinary MLX
operations. The keys and values are visited one tile of ``tile_size``
positions at a time. For every query row the loop keeps three running
quantities: the largest score seen so far ``m``, the sum of
``exp(score - m)`` so far ``l``, and the output so far ``acc`` (the same
weighted sum of values, not yet divided by ``l``). When a new tile raises the
maximum, the old sum and output are rescaled by ``exp(m_old - m_new)``; at the
end ``acc / l`` is exactly ``softmax(scores) @ values``.

Only one ``(B, H, L_q, tile_size)`` block of scores exists at a time, so the
memory the loop needs grows with the sequence length ``L``, not with ``L²``.
The numbers match ``mx.fast.scaled_dot_product_attention`` on its unfused path:
the queries are scaled in their dtype, the scores are accumulated in float32,
a boolean mask (True = attend) or ``"causal"`` fills blocked scores with the
most negative float32 (so a row with no allowed key gives the mean of the
values), and an additive row that is all ``-inf`` gives NaN.
"""

from __future__ import annotations

__lesson__ = "05"  # the lesson that teaches this module: the grader binds it only for later lessons

import mlx.core as mx

from .scaled_dot_product import _repeat_kv_heads, apply_mask, causal_keep, check_attention_inputs, result_dtype

__all__ = ["online_attention", "fused_kernel_available"]


def fused_kernel_available(queries: mx.array, keys: mx.array, values: mx.array,
                           mask: mx.array | str | None = None) -> bool:
    """Whether ``mx.fast.scaled_dot_product_attention`` runs a fused kernel here.

    Asks MLX rather than a list of rules: ``force_fused=True`` raises
    ``ValueError`` where no fused kernel applies to these shapes, dtypes and
    mask on the default device (always, on a CPU).

    Args:
        queries (array): ``(B, H_q, L_q, D_h)``.
        keys (array): ``(B, H_kv, L_k, D_h)``.
        values (array): ``(B, H_kv, L_k, D_v)``.
        mask (array or str, optional): The mask the call would use. Default: ``None``.

    Returns:
        bool: True when a fused kernel computes the call.
    """
    check_attention_inputs(queries, keys, values, mask)
    try:
        mx.eval(mx.fast.scaled_dot_product_attention(queries, keys, values, scale=1.0, mask=mask,
                                                     force_fused=True))
    except ValueError:
        return False
    return True


def _mask_tile(mask, start, stop, n_queries, n_keys):
    # The part of the mask that covers keys start..stop-1, or None.
    if mask is None:
        return None
    if isinstance(mask, str):  # "causal", lower-right aligned
        return causal_keep(n_queries, n_keys)[:, start:stop]  # (L_q, tile)
    if mask.shape[-1] == 1:  # broadcast along the keys
        return mask
    return mask[..., start:stop]  # (..., L_q, tile)


def _tile_scores(queries, keys, mask):
    # Float32 scores of the scaled queries against one tile of keys, masked as stage 1 masks.
    scores = (queries @ keys.swapaxes(-1, -2)).astype(mx.float32)  # (B, H, L_q, tile)
    return apply_mask(scores, mask)


def online_attention(queries: mx.array, keys: mx.array, values: mx.array, *, scale: float,
                     mask: mx.array | str | None = None, tile_size: int = 64) -> mx.array:
    """Scaled dot-product attention computed tile by tile over the keys.

    Equal (within rounding) to ``mx.fast.scaled_dot_product_attention`` with
    the same arguments, but never builds the ``(B, H, L_q, L_k)`` scores.

    Args:
        queries (array): ``(B, H_q, L_q, D_h)``.
        keys (array): ``(B, H_kv, L_k, D_h)``; ``H_q`` a multiple of ``H_kv``.
        values (array): ``(B, H_kv, L_k, D_v)``.
        scale (float): Multiplies the queries, usually ``1 / sqrt(D_h)``.
        mask (array or str, optional): An additive mask, a boolean mask
            (True = attend) or ``"causal"``, broadcastable to
            ``(B, H_q, L_q, L_k)``. Default: ``None``.
        tile_size (int, optional): Keys per tile. Default: ``64``.

    Returns:
        array: ``(B, H_q, L_q, D_v)`` in the inputs' dtype.
    """
    check_attention_inputs(queries, keys, values, mask)
    if isinstance(tile_size, bool) or not isinstance(tile_size, int) or tile_size <= 0:
        raise ValueError(f"tile_size must be a positive integer, got {tile_size!r}.")
    B, H_q, L_q, _ = queries.shape
    keys = _repeat_kv_heads(keys, H_q)  # (B, H_q, L_k, D_h)
    values = _repeat_kv_heads(values, H_q)  # (B, H_q, L_k, D_v)
    L_k, D_v = keys.shape[2], values.shape[-1]
    dtype = result_dtype(queries.dtype, keys.dtype, values.dtype)
    queries = queries * scale  # scaled in the queries' dtype, as mx.fast does

    running_max = mx.full((B, H_q, L_q, 1), -mx.inf)  # m: largest score so far
    running_sum = mx.zeros((B, H_q, L_q, 1))  # l: sum of exp(score - m)
    output = mx.zeros((B, H_q, L_q, D_v))  # acc: sum of exp(score - m) * value
    for start in range(0, L_k, tile_size):
        stop = min(start + tile_size, L_k)
        tile_mask = _mask_tile(mask, start, stop, L_q, L_k)
        scores = _tile_scores(queries, keys[:, :, start:stop], tile_mask)  # (B, H_q, L_q, tile)
        new_max = mx.maximum(running_max, scores.max(axis=-1, keepdims=True))  # (B, H_q, L_q, 1)
        # A row with only -inf so far has no finite maximum: shift by 0 instead of -inf - -inf.
        shift = mx.where(new_max == -mx.inf, 0.0, new_max)
        correction = mx.exp(running_max - shift)  # rescales what was summed under the old max
        weights = mx.exp(scores - shift)  # (B, H_q, L_q, tile), unnormalised
        running_sum = running_sum * correction + weights.sum(axis=-1, keepdims=True)
        output = output * correction + weights @ values[:, :, start:stop]  # (B, H_q, L_q, D_v)
        running_max = new_max
    return (output / running_sum).astype(dtype)
