"""Stage 5: the final layer, on the fused kernel.

``mx.fast.scaled_dot_product_attention`` computes the same numbers as stage 1
without keeping the ``(B, H, L_q, L_k)`` weights around (on a GPU it never
builds them at all). When the learner asks for the weights, the layer takes
the explicit path instead, since the fused kernel cannot return them.
"""

__lesson__ = "05"  # the lesson that teaches this module: the grader binds it only for later lessons

import mlx.core as mx

from . import custom_dims
from .masks import causal_mask
from .scaled_dot_product import check_mask, head_scale, result_dtype


class MultiHeadAttention(custom_dims.MultiHeadAttention):
    """A drop-in twin of ``mlx.nn.MultiHeadAttention`` that can return its weights.

    It has the same constructor, the same parameter names (``query_proj``,
    ``key_proj``, ``value_proj``, ``out_proj``) and computes the same numbers,
    so weights can be swapped with ``update(other.parameters())`` both ways.
    Sizes are validated up front and inputs and masks are checked with
    messages that name the argument.

    Args:
        The constructor of stage 4, :class:`mhacourse.attention.custom_dims.MultiHeadAttention`
        (``dims, num_heads, query_input_dims, key_input_dims, value_input_dims,
        value_dims, value_output_dims, bias``), with MLX's defaults.
    """

    def attend(self, queries, keys, values, mask, return_weights):
        if return_weights:
            return super().attend(queries, keys, values, mask, return_weights)
        # The layer projected queries, keys and values itself: only the mask is the caller's.
        target = (*queries.shape[:3], keys.shape[2])  # (B, H, L_q, L_k)
        check_mask(mask, target, result_dtype(queries.dtype, keys.dtype, values.dtype))
        output = mx.fast.scaled_dot_product_attention(
            queries, keys, values, scale=head_scale(queries), mask=mask
        )  # (B, H, L_q, D_v/H)
        return output, None

    @staticmethod
    def create_additive_causal_mask(N: int, dtype: mx.Dtype = mx.float32):
        """The additive causal mask ``(N, N)``, as in ``mlx.nn.MultiHeadAttention``."""
        return causal_mask(N, dtype)
