"""Stage 5: the final layer, on the fused kernel.

``mx.fast.scaled_dot_product_attention`` computes the same numbers as stage 1
without keeping the ``(B, H, L_q, L_k)`` weights around (on a GPU it never
builds them at all). When the learner asks for the weights, the layer takes
the explicit path instead, since the fused kernel cannot return them.

The final layer is an ``mlx.nn.MultiHeadAttention`` (``isinstance`` holds), so
code that finds attention layers by type finds it, but it overrides all that
MLX's class computes (``__init__``, ``__call__``, ``create_additive_causal_mask``):
every step still runs the course's stages.
"""

from __future__ import annotations

__lesson__ = "05"  # the lesson that teaches this module: the grader binds it only for later lessons

import mlx.core as mx
import mlx.nn as nn

from . import custom_dims, multi_head
from .masks import causal_mask
from .scaled_dot_product import check_mask, head_scale, result_dtype


def attend(queries: mx.array, keys: mx.array, values: mx.array, mask: mx.array | str | None = None,
           return_weights: bool = False) -> tuple[mx.array, mx.array | None]:
    """Attention over the heads on ``mx.fast.scaled_dot_product_attention``.

    Args:
        queries (array): ``(B, H, L_q, D_h)``.
        keys (array): ``(B, H, L_k, D_h)``.
        values (array): ``(B, H, L_k, D_v/H)``.
        mask (array or str, optional): As for the layer. Default: ``None``.
        return_weights (bool, optional): Take stage 2's explicit path, which
            has the weights. Default: ``False``.

    Returns:
        tuple(array, array or None): the output ``(B, H, L_q, D_v/H)`` and
        the weights ``(B, H, L_q, L_k)`` (None on the fused path).
    """
    if return_weights:
        return multi_head.attend(queries, keys, values, mask)
    # The layer projected queries, keys and values itself: only the mask is the caller's.
    target = (*queries.shape[:3], keys.shape[2])  # (B, H, L_q, L_k)
    check_mask(mask, target, result_dtype(queries.dtype, keys.dtype, values.dtype))
    output = mx.fast.scaled_dot_product_attention(
        queries, keys, values, scale=head_scale(queries), mask=mask
    )  # (B, H, L_q, D_v/H)
    return output, None


class MultiHeadAttention(custom_dims.MultiHeadAttention, nn.MultiHeadAttention):
    """A drop-in twin of ``mlx.nn.MultiHeadAttention`` that can return its weights.

    It has the same constructor, the same parameter names (``query_proj``,
    ``key_proj``, ``value_proj``, ``out_proj``), stores nothing else but
    ``num_heads``, defines no method MLX's class lacks and computes the same
    numbers, so weights can be swapped with ``update(other.parameters())``
    both ways and a subclass written for MLX's layer works on it. Sizes are
    validated up front and inputs and masks are checked with messages that
    name the argument.

    Args:
        The constructor of stage 4, :class:`mhacourse.attention.custom_dims.MultiHeadAttention`
        (``dims, num_heads, query_input_dims, key_input_dims, value_input_dims,
        value_dims, value_output_dims, bias``), with MLX's defaults.
    """

    def __call__(self, queries: mx.array, keys: mx.array, values: mx.array, mask: mx.array | str | None = None, *,
                 return_weights: bool = False) -> mx.array | tuple[mx.array, mx.array]:
        """Attend from ``queries`` to ``keys`` and ``values`` (stage 2's steps, fused attention).

        Args:
            queries (array): ``(B, L_q, query_input_dims)``.
            keys (array): ``(B, L_k, key_input_dims)``.
            values (array): ``(B, L_k, value_input_dims)``.
            mask (array or str, optional): An additive or boolean (True =
                attend) mask broadcastable to ``(B, num_heads, L_q, L_k)``, or
                ``"causal"``. Default: ``None``.
            return_weights (bool, optional): Also return the attention weights
                ``(B, num_heads, L_q, L_k)``, computed on the explicit path.
                Default: ``False``.

        Returns:
            array: ``(B, L_q, value_output_dims)``, or ``(output, weights)``.
        """
        return multi_head.forward(self, queries, keys, values, mask, return_weights, attend=attend)

    @staticmethod
    def create_additive_causal_mask(N: int, dtype: mx.Dtype = mx.float32):
        """The additive causal mask ``(N, N)``, as in ``mlx.nn.MultiHeadAttention``."""
        return causal_mask(N, dtype)
