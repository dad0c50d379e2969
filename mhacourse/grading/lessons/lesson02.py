"""Lesson 02: many heads."""

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from mhacourse.attention.multi_head import merge_heads, split_heads

from ..exercise import Exercise, Mistake, ModuleExercise
from . import _hidden
from ._common import HINTS, LAYER_BUGS, additive_mask, buggy_layer, case, layer_properties, predicted_wrong, rand

EXERCISES = []  # this lesson's exercises, declared whole, in notebook order; the registry collects them

# ---------------------------------------------------------------------------
# split_heads(x, num_heads): (B, L, dims) -> (B, H, L, dims // H)


def _split_no_transpose(x, num_heads):
    B, L, dims = x.shape
    return x.reshape(B, num_heads, L, dims // num_heads)


def _split_forgot_transpose(x, num_heads):
    B, L, dims = x.shape
    return x.reshape(B, L, num_heads, dims // num_heads)


def _split_interleaved(x, num_heads):
    B, L, dims = x.shape
    return x.reshape(B, L, dims // num_heads, num_heads).transpose(0, 3, 1, 2)  # (B, H, L, D_h)


def _split_wrong_transpose(x, num_heads):
    B, L, dims = x.shape
    return x.reshape(B, L, num_heads, dims // num_heads).transpose(0, 2, 3, 1)  # (B, H, D_h, L)



def _hidden_split_heads(rng):
    B, H, L_q, _, D, _ = _hidden.sizes(rng)
    return [_hidden.fixed_case((_hidden.normal(rng, B, L_q, H * D), H))]



def _hidden_merge_heads(rng):
    B, H, L_q, _, D, _ = _hidden.sizes(rng)
    return [_hidden.fixed_case((_hidden.normal(rng, B, H, L_q, D),))]



def _hidden_parameter_count(rng):
    dims, H, sizes = _hidden.other_dims(rng)
    return [
        _hidden.fixed_case((dims, H), {"bias": True}),
        _hidden.fixed_case((dims, H), {**sizes, "bias": True}),
        _hidden.fixed_case((dims, H), sizes),
        _hidden.fixed_case((dims, H), {"key_input_dims": sizes["key_input_dims"]}),
    ]



def _hidden_head_shapes(rng):
    B, H, L_q, L_k, D, _ = _hidden.sizes(rng)
    return [_hidden.fixed_case((B, L_q, L_k, H * D, H)), _hidden.fixed_case((B, L_k, L_k, 2 * H * D, 2 * H))]


EXERCISES.append(Exercise(
    id="split_heads",
    hidden_cases=_hidden_split_heads,
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
                "Use transpose(0, 2, 1, 3): (B, L, H, D_h) -> (B, H, L, D_h); your transpose moved the "
                "features in front of the positions.",
                _split_wrong_transpose),
    ],
))

# ---------------------------------------------------------------------------
# merge_heads(x): (B, H, L, D_h) -> (B, L, H * D_h)


def _merge_no_transpose(x):
    B, H, L, D_h = x.shape
    return x.reshape(B, L, H * D_h)


def _merge_interleaved(x):
    B, H, L, D_h = x.shape
    return x.transpose(0, 2, 3, 1).reshape(B, L, H * D_h)  # (B, L, D_h, H) flattened


def _merge_forgot_reshape(x):
    return x.transpose(0, 2, 1, 3)  # (B, L, H, D_h)


EXERCISES.append(Exercise(
    id="merge_heads",
    hidden_cases=_hidden_merge_heads,
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
                "After the transpose to (B, L, H, D_h), reshape to (B, L, H * D_h).",
                _merge_forgot_reshape),
    ],
))

# ---------------------------------------------------------------------------
# parameter_count(dims, num_heads, ..., bias=False): every constructor argument

_COUNT_SIGNATURE = ("parameter_count(dims, num_heads, query_input_dims=None, key_input_dims=None, "
                    "value_input_dims=None, value_dims=None, value_output_dims=None, bias=False)")


def _parameter_count(dims, num_heads, query_input_dims=None, key_input_dims=None, value_input_dims=None,
                     value_dims=None, value_output_dims=None, bias=False):
    layer = nn.MultiHeadAttention(dims, num_heads, query_input_dims, key_input_dims, value_input_dims,
                                  value_dims, value_output_dims, bias=bias)
    return sum(v.size for _, v in tree_flatten(layer.parameters()))


def _count_bug(bug):
    def wrong(dims, num_heads, query_input_dims=None, key_input_dims=None, value_input_dims=None,
              value_dims=None, value_output_dims=None, bias=False):
        query_input_dims = query_input_dims or dims
        key_input_dims = key_input_dims or dims
        value_input_dims = value_input_dims or (dims if bug == "count_value_input_default" else key_input_dims)
        value_dims = dims if bug == "count_value_dims_ignored" else (value_dims or dims)
        value_output_dims = value_output_dims or dims
        shapes = [(query_input_dims, dims), (key_input_dims, dims), (value_input_dims, value_dims),
                  (value_dims, value_output_dims)]  # (input, output) of each projection
        if bug == "count_forgot_out_proj":
            shapes = shapes[:3]
        weights = sum(i * o for i, o in shapes)
        biases = sum((i if bug == "count_bias_sizes" else o) for i, o in shapes)
        if bug == "count_bias_4dims":
            biases = 4 * dims
        if bug == "count_forgot_bias":
            biases = 0
        total = weights + (biases if bias else 0)
        return num_heads * total if bug == "count_per_head" else total

    return wrong


EXERCISES.append(Exercise(
    id="parameter_count",
    hidden_cases=_hidden_parameter_count,
    lesson="02",
    title="Count the parameters of the layer, every argument",
    answer_name="parameter_count",
    signature=_COUNT_SIGNATURE,
    reference=_parameter_count,
    cases=[
        case("dims 64, 8 heads, no bias", 64, 8),
        case("dims 48, 4 heads, bias", 48, 4, bias=True),
        case("every size different, bias", 12, 3, query_input_dims=5, key_input_dims=7, value_input_dims=6,
             value_dims=9, value_output_dims=4, bias=True),
        case("key_input_dims 10 (value_input_dims defaults to it), bias", 8, 2, key_input_dims=10, bias=True),
        case("value_dims 12, value_output_dims 20, no bias", 8, 2, value_dims=12, value_output_dims=20),
    ],
    mistakes=[
        Mistake("count_forgot_out_proj", "There are four projections: query, key, value *and* out_proj "
                "(value_dims -> value_output_dims).", _count_bug("count_forgot_out_proj")),
        Mistake("count_forgot_bias", "With bias=True each of the four projections adds one bias per output "
                "feature.", _count_bug("count_forgot_bias")),
        Mistake("count_per_head",
                "The heads share the projections (each head is a slice of them): the count does not "
                "grow with num_heads.", _count_bug("count_per_head")),
        Mistake("count_value_input_default", "value_input_dims defaults to key_input_dims, not dims: keys and "
                "values usually come from the same sequence.", _count_bug("count_value_input_default")),
        Mistake("count_value_dims_ignored", "value_proj writes value_dims features and out_proj reads them: "
                "value_dims (default dims) sizes both.", _count_bug("count_value_dims_ignored")),
        Mistake("count_bias_4dims", "Not every bias has dims entries: each projection's bias has one entry per "
                "output feature, so value_proj's has value_dims and out_proj's value_output_dims.",
                _count_bug("count_bias_4dims")),
        Mistake("count_bias_sizes", "A bias has one entry per *output* feature: nn.Linear(input_dims, "
                "output_dims) has output_dims biases.", _count_bug("count_bias_sizes")),
    ],
))

# ---------------------------------------------------------------------------
# head_shapes(B, L_q, L_k, dims, num_heads): predict the shapes


def _head_shapes(B, L_q, L_k, dims, num_heads):
    queries = split_heads(mx.zeros((B, L_q, dims)), num_heads)  # (B, H, L_q, D_h)
    keys = split_heads(mx.zeros((B, L_k, dims)), num_heads)  # (B, H, L_k, D_h)
    scores = queries @ keys.swapaxes(-1, -2)  # (B, H, L_q, L_k)
    heads_output = scores @ keys  # (B, H, L_q, D_h)
    return {"queries": tuple(queries.shape), "scores": tuple(scores.shape),
            "heads_output": tuple(heads_output.shape), "merged": tuple(merge_heads(heads_output).shape)}


EXERCISES.append(Exercise(
    id="head_shapes",
    hidden_cases=_hidden_head_shapes,
    lesson="02",
    title="Predict the shapes of many heads",
    answer_name="head_shapes",
    signature="head_shapes(B, L_q, L_k, dims, num_heads)",
    reference=_head_shapes,
    cases=[
        case("B 2, L_q 3, L_k 5, dims 8, 2 heads", 2, 3, 5, 8, 2),
        case("B 1, L_q 6, L_k 6, dims 12, 4 heads", 1, 6, 6, 12, 4),
        case("B 3, L_q 1, L_k 4, dims 6, 6 heads", 3, 1, 4, 6, 6),
    ],
    mistakes=[
        Mistake("shape_heads", "split_heads returns (B, H, L, D_h): the heads come before the positions, so "
                "that each head is a batch of (L, D_h) matrices.", predicted_wrong(
                    _head_shapes, lambda B, L_q, L_k, dims, H: {"queries": (B, L_q, H, dims // H),
                                                                "heads_output": (B, L_q, H, dims // H)})),
        Mistake("shape_heads", "Every head has its own scores: (B, H, L_q, L_k).",
                predicted_wrong(_head_shapes, lambda B, L_q, L_k, dims, H: {"scores": (B, L_q, L_k)})),
        Mistake("shape_merge", "merge_heads puts the H heads of D_h features side by side: (B, L_q, H * D_h) "
                "= (B, L_q, dims).", predicted_wrong(_head_shapes,
                                                     lambda B, L_q, L_k, dims, H: {"merged": (B, L_q, dims // H)})),
        Mistake("shape_head_dims", "A head has D_h = dims // num_heads features, not dims: the heads split "
                "the features, they don't copy them.", predicted_wrong(
                    _head_shapes, lambda B, L_q, L_k, dims, H: {"queries": (B, H, L_q, dims),
                                                                "heads_output": (B, H, L_q, dims),
                                                                "merged": (B, L_q, H * dims)})),
    ],
))

# ---------------------------------------------------------------------------
# BasicMultiHeadAttention(dims, num_heads)


EXERCISES.append(ModuleExercise(
    id="multi_head_attention_basic",
    hidden_cases=_hidden.layer_calls,
    forbidden=("nn.MultiHeadAttention",),
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
    properties=layer_properties({"dims": 8, "num_heads": 2}),
))

