"""Stage 1b: one attention head with its own query, key and value projections."""

from __future__ import annotations

__lesson__ = "01"  # the lesson that teaches this module: the grader binds it only for later lessons

import mlx.core as mx
import mlx.nn as nn

from .scaled_dot_product import attention_with_weights, head_scale
from .validation import check_features, check_size


class SingleHeadAttention(nn.Module):
    """A single head of attention.

    Projects the queries, keys and values with three ``Linear`` layers and
    attends with scale ``1 / sqrt(dims)``. It equals
    :class:`mhacourse.MultiHeadAttention` with ``num_heads=1`` and an identity
    ``out_proj``.

    Args:
        dims (int): The feature size of the inputs and of the head.
    """

    def __init__(self, dims: int) -> None:
        super().__init__()
        self.dims = check_size("dims", dims)
        self.query_proj = nn.Linear(dims, dims, bias=False)
        self.key_proj = nn.Linear(dims, dims, bias=False)
        self.value_proj = nn.Linear(dims, dims, bias=False)

    def __call__(self, queries: mx.array, keys: mx.array, values: mx.array, mask: mx.array | str | None = None, *,
                 return_weights: bool = False) -> mx.array | tuple[mx.array, mx.array]:
        """Attend from ``queries`` ``(B, L_q, dims)`` to ``keys``/``values`` ``(B, L_k, dims)``.

        Returns:
            array: ``(B, L_q, dims)``, or ``(output, weights)`` with weights of
            shape ``(B, L_q, L_k)`` when ``return_weights`` is True.
        """
        for name, x in (("queries", queries), ("keys", keys), ("values", values)):
            check_features(name, x, self.dims, "dims")
        queries = self.query_proj(queries)[:, None]  # (B, 1, L_q, dims)
        keys = self.key_proj(keys)[:, None]  # (B, 1, L_k, dims)
        values = self.value_proj(values)[:, None]  # (B, 1, L_k, dims)
        output, weights = attention_with_weights(
            queries, keys, values, scale=head_scale(queries), mask=mask
        )
        output, weights = output[:, 0], weights[:, 0]  # (B, L_q, dims), (B, L_q, L_k)
        return (output, weights) if return_weights else output
