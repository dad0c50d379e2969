"""Stage 2: many heads in parallel.

The projected features are split into ``num_heads`` slices, each slice
attends on its own (stage 1), and the heads are merged back and projected.
"""

import math

import mlx.core as mx
import mlx.nn as nn

from .scaled_dot_product import attention_with_weights
from .validation import check_divisible, check_features, check_size


def split_heads(x, num_heads):
    """Split the features of ``x`` into heads.

    Args:
        x (array): ``(B, L, D)`` with ``D`` divisible by ``num_heads``.
        num_heads (int): The number of heads.

    Returns:
        array: ``(B, num_heads, L, D // num_heads)``.
    """
    if x.ndim != 3:
        raise ValueError(f"x must have shape (batch, length, features); got {tuple(x.shape)}.")
    B, L, D = x.shape
    check_divisible("the last dimension of x", D, num_heads)
    x = x.reshape(B, L, num_heads, D // num_heads)  # (B, L, H, D/H)
    return x.transpose(0, 2, 1, 3)  # (B, H, L, D/H)


def merge_heads(x):
    """Concatenate the heads of ``x`` back into one feature dimension.

    Args:
        x (array): ``(B, H, L, D_h)``.

    Returns:
        array: ``(B, L, H * D_h)``.
    """
    if x.ndim != 4:
        raise ValueError(f"x must have shape (batch, heads, length, head_dims); got {tuple(x.shape)}.")
    B, H, L, D_h = x.shape
    x = x.transpose(0, 2, 1, 3)  # (B, L, H, D_h)
    return x.reshape(B, L, H * D_h)  # (B, L, H * D_h)


class MultiHeadAttention(nn.Module):
    """Multi-head attention where every size equals ``dims``.

    Args:
        dims (int): The model dimensions: inputs, projections and output.
        num_heads (int): The number of attention heads; must divide ``dims``.
    """

    def __init__(self, dims: int, num_heads: int):
        super().__init__()
        check_size("dims", dims)
        check_size("num_heads", num_heads)
        check_divisible("dims", dims, num_heads)
        self.num_heads = num_heads
        self.query_proj = nn.Linear(dims, dims, bias=False)
        self.key_proj = nn.Linear(dims, dims, bias=False)
        self.value_proj = nn.Linear(dims, dims, bias=False)
        self.out_proj = nn.Linear(dims, dims, bias=False)

    @property
    def scale(self):
        """``1 / sqrt(head_dims)``, where ``head_dims`` is the per-head query size."""
        head_dims = self.query_proj.weight.shape[0] // self.num_heads
        return math.sqrt(1 / head_dims)

    def project(self, queries, keys, values):
        """Project the inputs and split them into heads.

        Returns:
            tuple(array, array, array): queries ``(B, H, L_q, D_h)``, keys
            ``(B, H, L_k, D_h)`` and values ``(B, H, L_k, D_v/H)``.
        """
        check_features("queries", queries, self.query_proj.weight.shape[1], "query_input_dims")
        check_features("keys", keys, self.key_proj.weight.shape[1], "key_input_dims")
        check_features("values", values, self.value_proj.weight.shape[1], "value_input_dims")
        if keys.shape[:2] != values.shape[:2]:
            raise ValueError(
                f"keys and values must have the same batch size and length; "
                f"got keys {tuple(keys.shape)} and values {tuple(values.shape)}."
            )
        if queries.shape[0] != keys.shape[0]:
            raise ValueError(
                f"queries and keys must have the same batch size; "
                f"got queries {tuple(queries.shape)} and keys {tuple(keys.shape)}."
            )
        queries = split_heads(self.query_proj(queries), self.num_heads)  # (B, H, L_q, D_h)
        keys = split_heads(self.key_proj(keys), self.num_heads)  # (B, H, L_k, D_h)
        values = split_heads(self.value_proj(values), self.num_heads)  # (B, H, L_k, D_v/H)
        return queries, keys, values

    def attend(self, queries, keys, values, mask, return_weights):
        """Attention over the heads: ``(output (B, H, L_q, D_v/H), weights or None)``."""
        return attention_with_weights(queries, keys, values, scale=self.scale, mask=mask)

    def __call__(self, queries, keys, values, mask=None, *, return_weights=False):
        """Attend from ``queries`` to ``keys`` and ``values``.

        Args:
            queries (array): ``(B, L_q, query_input_dims)``.
            keys (array): ``(B, L_k, key_input_dims)``.
            values (array): ``(B, L_k, value_input_dims)``.
            mask (array or str, optional): An additive or boolean (True =
                attend) mask broadcastable to ``(B, num_heads, L_q, L_k)``, or
                ``"causal"``. Default: ``None``.
            return_weights (bool, optional): Also return the attention weights
                ``(B, num_heads, L_q, L_k)``. Default: ``False``.

        Returns:
            array: ``(B, L_q, value_output_dims)``, or ``(output, weights)``.
        """
        queries, keys, values = self.project(queries, keys, values)
        output, weights = self.attend(queries, keys, values, mask, return_weights)
        output = self.out_proj(merge_heads(output))  # (B, L_q, value_output_dims)
        return (output, weights) if return_weights else output
