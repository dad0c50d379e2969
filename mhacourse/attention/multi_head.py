"""Stage 2: many heads in parallel.

The projected features are split into ``num_heads`` slices, each slice
attends on its own (stage 1), and the heads are merged back and projected.

The reshapes name only the number of heads and let MLX infer the rest
(``mx.unflatten(x, -1, (H, -1))``, ``x.flatten(-2, -1)``), as
``mlx.nn.MultiHeadAttention`` does. No Python size is baked into the graph, so
a function compiled or exported with ``shapeless=True`` runs at any length.
"""

__lesson__ = "02"  # the lesson that teaches this module: the grader binds it only for later lessons

import math

import mlx.core as mx
import mlx.nn as nn

from .scaled_dot_product import attention_with_weights, head_scale
from .validation import check_divisible, check_features, check_size, projection_input_dims


def split_heads(x, num_heads):
    """Split the features of ``x`` into heads.

    Args:
        x (array): ``(B, L, dims)`` with ``dims`` divisible by ``num_heads``.
        num_heads (int): The number of heads ``H``.

    Returns:
        array: ``(B, H, L, D_h)`` with ``D_h = dims // H``.
    """
    if x.ndim != 3:
        raise ValueError(f"x must have shape (batch, length, features); got {tuple(x.shape)}.")
    check_divisible("the last dimension of x", x.shape[-1], num_heads)
    x = mx.unflatten(x, -1, (num_heads, -1))  # (B, L, H, D_h)
    return x.transpose(0, 2, 1, 3)  # (B, H, L, D_h)


def merge_heads(x):
    """Concatenate the heads of ``x`` back into one feature dimension.

    Args:
        x (array): ``(B, H, L, D_h)``.

    Returns:
        array: ``(B, L, H * D_h)``.
    """
    if x.ndim != 4:
        raise ValueError(f"x must have shape (batch, heads, length, head_dims); got {tuple(x.shape)}.")
    x = x.transpose(0, 2, 1, 3)  # (B, L, H, D_h)
    return x.flatten(-2, -1)  # (B, L, H * D_h)


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
        self.head_dims = dims // num_heads
        self.query_proj = nn.Linear(dims, dims, bias=False)
        self.key_proj = nn.Linear(dims, dims, bias=False)
        self.value_proj = nn.Linear(dims, dims, bias=False)
        self.out_proj = nn.Linear(dims, dims, bias=False)

    @property
    def scale(self):
        """``1 / sqrt(head_dims)`` with ``head_dims = dims // num_heads`` from the constructor.

        A call takes its scale from the projected queries (:func:`head_scale`);
        the two agree as long as ``query_proj`` projects to ``dims`` features.
        """
        return math.sqrt(1 / self.head_dims)

    def _heads(self, name, proj, x):
        # Project x with proj and split the result into heads. The input size was
        # checked up front where it could be read off proj; otherwise proj tells.
        try:
            x = proj(x)  # (B, L, features)
        except ValueError as error:
            raise ValueError(f"{name} of shape {tuple(x.shape)} do not fit the layer's projection: {error}") from error
        check_divisible(f"the number of projected {name} features", x.shape[-1], self.num_heads)
        return split_heads(x, self.num_heads)  # (B, H, L, features / H)

    def project(self, queries, keys, values):
        """Project the inputs and split them into heads.

        Returns:
            tuple(array, array, array): queries ``(B, H, L_q, D_h)``, keys
            ``(B, H, L_k, D_h)`` and values ``(B, H, L_k, D_v/H)``.
        """
        check_features("queries", queries, projection_input_dims(self.query_proj), "query_input_dims")
        check_features("keys", keys, projection_input_dims(self.key_proj), "key_input_dims")
        check_features("values", values, projection_input_dims(self.value_proj), "value_input_dims")
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
        queries = self._heads("queries", self.query_proj, queries)  # (B, H, L_q, D_h)
        keys = self._heads("keys", self.key_proj, keys)  # (B, H, L_k, D_h)
        values = self._heads("values", self.value_proj, values)  # (B, H, L_k, D_v/H)
        if keys.shape[-1] != queries.shape[-1]:
            raise ValueError(
                f"queries and keys must be projected to the same size per head; got "
                f"{queries.shape[-1]} (query_proj) and {keys.shape[-1]} (key_proj)."
            )
        return queries, keys, values

    def attend(self, queries, keys, values, mask, return_weights):
        """Attention over the heads: ``(output (B, H, L_q, D_v/H), weights or None)``."""
        return attention_with_weights(queries, keys, values, scale=head_scale(queries), mask=mask)

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
