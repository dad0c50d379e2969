"""Stage 4: the full constructor of ``mlx.nn.MultiHeadAttention``.

Queries, keys and values may arrive with different feature sizes, the
values may be projected to their own size, and the output to yet another.
Only the constructor changes; projecting, attending and merging are stage 2's.
"""

from __future__ import annotations

__lesson__ = "04"  # the lesson that teaches this module: the grader binds it only for later lessons

import mlx.nn as nn

from . import multi_head
from .validation import check_bias, check_divisible, check_size


class MultiHeadAttention(multi_head.MultiHeadAttention):
    """Multi-head attention with every size configurable, as in MLX.

    Args:
        dims (int): The model dimensions. This is also the default
            for the queries, keys, values, and the output.
        num_heads (int): The number of attention heads; must divide ``dims``
            and ``value_dims``.
        query_input_dims (int, optional): The input dimensions of the queries.
            Default: ``dims``.
        key_input_dims (int, optional): The input dimensions of the keys.
            Default: ``dims``.
        value_input_dims (int, optional): The input dimensions of the values.
            Default: ``key_input_dims``.
        value_dims (int, optional): The dimensions of the values after the
            projection. Default: ``dims``.
        value_output_dims (int, optional): The dimensions the new values will
            be projected to. Default: ``dims``.
        bias (bool, optional): Whether or not to use a bias in the projections
            (a ``bool`` or ``numpy.bool_``). Default: ``False``.
    """

    def __init__(
        self,
        dims: int,
        num_heads: int,
        query_input_dims: int | None = None,
        key_input_dims: int | None = None,
        value_input_dims: int | None = None,
        value_dims: int | None = None,
        value_output_dims: int | None = None,
        bias: bool = False,
    ) -> None:
        # This stage replaces stage 2's constructor, so it starts from Module's.
        nn.Module.__init__(self)
        check_size("dims", dims)
        check_size("num_heads", num_heads)
        query_input_dims = check_size("query_input_dims", query_input_dims, dims)
        key_input_dims = check_size("key_input_dims", key_input_dims, dims)
        value_input_dims = check_size("value_input_dims", value_input_dims, key_input_dims)
        value_dims = check_size("value_dims", value_dims, dims)
        value_output_dims = check_size("value_output_dims", value_output_dims, dims)
        check_divisible("dims", dims, num_heads)
        check_divisible("value_dims", value_dims, num_heads)
        bias = check_bias(bias)

        self.num_heads = num_heads
        self.query_proj = nn.Linear(query_input_dims, dims, bias=bias)
        self.key_proj = nn.Linear(key_input_dims, dims, bias=bias)
        self.value_proj = nn.Linear(value_input_dims, value_dims, bias=bias)
        self.out_proj = nn.Linear(value_dims, value_output_dims, bias=bias)
