"""Lesson 02: many heads."""

import mlx.nn as nn
from mlx.utils import tree_flatten

from mhacourse.attention.multi_head import merge_heads, split_heads

from ..registry import Exercise, Mistake, ModuleExercise, register
from ._common import HINTS, LAYER_BUGS, additive_mask, buggy_layer, case, rand

# ---------------------------------------------------------------------------
# split_heads(x, num_heads): (B, L, D) -> (B, H, L, D // H)


def _split_no_transpose(x, num_heads):
    B, L, D = x.shape
    return x.reshape(B, num_heads, L, D // num_heads)


def _split_forgot_transpose(x, num_heads):
    B, L, D = x.shape
    return x.reshape(B, L, num_heads, D // num_heads)


def _split_interleaved(x, num_heads):
    B, L, D = x.shape
    return x.reshape(B, L, D // num_heads, num_heads).transpose(0, 3, 1, 2)  # (B, H, L, Dh)


def _split_wrong_transpose(x, num_heads):
    B, L, D = x.shape
    return x.reshape(B, L, num_heads, D // num_heads).transpose(0, 2, 3, 1)  # (B, H, Dh, L)


register(Exercise(
    id="split_heads",
    lesson="02",
    title="Split the features into heads",
    answer_name="split_heads",
    signature="split_heads(x, num_heads)",
    reference=split_heads,
    cases=[
        case("(1, 4, 8) into 2 heads", lambda: rand(30, 1, 4, 8), 2),
        case("(2, 5, 12) into 3 heads", lambda: rand(31, 2, 5, 12), 3),
        case("(3, 2, 6) into 6 heads of size 1", lambda: rand(32, 3, 2, 6), 6),
        case("(2, 3, 8) into 1 head", lambda: rand(33, 2, 3, 8), 1),
    ],
    mistakes=[
        Mistake("split_no_transpose", HINTS["split_no_transpose"], _split_no_transpose),
        Mistake("split_forgot_transpose",
                "After reshape(B, L, num_heads, head_dims), transpose(0, 2, 1, 3) to move the heads "
                "in front of the positions: (B, num_heads, L, head_dims).",
                _split_forgot_transpose),
        Mistake("split_interleaved", HINTS["split_interleaved"], _split_interleaved),
        Mistake("split_wrong_transpose",
                "Use transpose(0, 2, 1, 3): (B, L, H, Dh) -> (B, H, L, Dh); your transpose moved the "
                "features in front of the positions.",
                _split_wrong_transpose),
    ],
))

# ---------------------------------------------------------------------------
# merge_heads(x): (B, H, L, Dh) -> (B, L, H * Dh)


def _merge_no_transpose(x):
    B, H, L, Dh = x.shape
    return x.reshape(B, L, H * Dh)


def _merge_interleaved(x):
    B, H, L, Dh = x.shape
    return x.transpose(0, 2, 3, 1).reshape(B, L, H * Dh)  # (B, L, Dh, H) flattened


def _merge_forgot_reshape(x):
    return x.transpose(0, 2, 1, 3)  # (B, L, H, Dh)


register(Exercise(
    id="merge_heads",
    lesson="02",
    title="Merge the heads back",
    answer_name="merge_heads",
    signature="merge_heads(x)",
    reference=merge_heads,
    cases=[
        case("(1, 2, 4, 3): 2 heads of 3", lambda: rand(35, 1, 2, 4, 3)),
        case("(2, 3, 5, 4): 3 heads of 4", lambda: rand(36, 2, 3, 5, 4)),
        case("(2, 4, 1, 2): 4 heads, 1 position", lambda: rand(37, 2, 4, 1, 2)),
    ],
    mistakes=[
        Mistake("merge_no_transpose", HINTS["merge_no_transpose"], _merge_no_transpose),
        Mistake("merge_interleaved", HINTS["merge_interleaved"], _merge_interleaved),
        Mistake("merge_forgot_reshape",
                "After the transpose to (B, L, H, Dh), reshape to (B, L, H * Dh).",
                _merge_forgot_reshape),
    ],
))

# ---------------------------------------------------------------------------
# parameter_count(dims, num_heads, bias=False)


def _parameter_count(dims, num_heads, bias=False):
    layer = nn.MultiHeadAttention(dims, num_heads, bias=bias)
    return sum(v.size for _, v in tree_flatten(layer.parameters()))


register(Exercise(
    id="parameter_count",
    lesson="02",
    title="Count the parameters of the layer",
    answer_name="parameter_count",
    signature="parameter_count(dims, num_heads, bias=False)",
    reference=_parameter_count,
    cases=[
        case("dims 64, 8 heads, no bias", 64, 8),
        case("dims 48, 4 heads, bias", 48, 4, bias=True),
        case("dims 30, 5 heads, bias", 30, 5, bias=True),
    ],
    mistakes=[
        Mistake("count_forgot_out_proj", "There are four projections: query, key, value *and* out_proj.",
                lambda dims, num_heads, bias=False: 3 * (dims * dims + (dims if bias else 0))),
        Mistake("count_forgot_bias", "With bias=True each of the four projections adds `dims` biases.",
                lambda dims, num_heads, bias=False: 4 * dims * dims),
        Mistake("count_per_head",
                "The heads share the projections (each head is a slice of them): the count does not "
                "grow with num_heads.",
                lambda dims, num_heads, bias=False: num_heads * 4 * (dims * dims + (dims if bias else 0))),
    ],
))

# ---------------------------------------------------------------------------
# BasicMultiHeadAttention(dims, num_heads)


register(ModuleExercise(
    id="multi_head_attention_basic",
    lesson="02",
    title="Multi-head attention, every size = dims",
    answer_name="BasicMultiHeadAttention",
    signature="BasicMultiHeadAttention(dims, num_heads)(queries, keys, values, mask=None)",
    reference=nn.MultiHeadAttention,
    cases=[
        case("dims 8, 2 heads, self-attention over 4 positions", {"dims": 8, "num_heads": 2},
             lambda: (lambda x: (x, x, x))(rand(40, 1, 4, 8))),
        case("dims 12, 3 heads, batch 2, 3 queries, 5 keys", {"dims": 12, "num_heads": 3},
             lambda: (rand(41, 2, 3, 12), rand(42, 2, 5, 12), rand(43, 2, 5, 12))),
        case("dims 16, 4 heads, batch 2, additive mask (3, 6)", {"dims": 16, "num_heads": 4},
             lambda: (rand(44, 2, 3, 16), rand(45, 2, 6, 16), rand(46, 2, 6, 16)),
             mask=lambda: additive_mask(47, 3, 6)),
    ],
    mistakes=[
        Mistake(bug, HINTS[bug], buggy_layer(bug))
        for bug in LAYER_BUGS
    ],
))
