"""Lesson 04: custom dimensions and cross-attention."""

import mlx.core as mx
import mlx.nn as nn

from mhacourse import masks

from ..exercise import Exercise, Mistake, ModuleExercise
from . import _hidden
from ._common import HINTS, LAYER_BUGS, buggy_layer, case, layer_properties, predicted_wrong, rand

EXERCISES = []  # this lesson's exercises, declared whole, in notebook order; the registry collects them

# ---------------------------------------------------------------------------
# projection_shapes(dims, num_heads, ...): the weight shape of every projection

_NAMES = ("query_proj", "key_proj", "value_proj", "out_proj")


def _projection_shapes(dims, num_heads, query_input_dims=None, key_input_dims=None,
                       value_input_dims=None, value_dims=None, value_output_dims=None):
    layer = nn.MultiHeadAttention(dims, num_heads, query_input_dims, key_input_dims,
                                  value_input_dims, value_dims, value_output_dims)
    return {name: tuple(getattr(layer, name).weight.shape) for name in _NAMES}


def _shapes(dims, qi, ki, vi, vd, vo, transposed=False):
    shapes = {"query_proj": (dims, qi), "key_proj": (dims, ki), "value_proj": (vd, vi), "out_proj": (vo, vd)}
    return {k: v[::-1] for k, v in shapes.items()} if transposed else shapes


def _shapes_bug(bug):
    def wrong(dims, num_heads, query_input_dims=None, key_input_dims=None,
              value_input_dims=None, value_dims=None, value_output_dims=None):
        qi = query_input_dims or dims
        ki = key_input_dims or dims
        vi = value_input_dims or (dims if bug == "value_input_default" else ki)
        vd = value_dims or dims
        vo = value_output_dims or dims
        if bug == "value_dims_ignored":
            vd = dims
        if bug == "out_proj_from_dims":
            return {**_shapes(dims, qi, ki, vi, vd, vo), "out_proj": (vo, dims)}
        return _shapes(dims, qi, ki, vi, vd, vo, transposed=bug == "linear_transposed")

    return wrong



def _hidden_multi_head_attention(rng):
    return _hidden.layer_calls(rng, boolean_masks=True)



def _hidden_projection_shapes(rng):
    dims, H, sizes = _hidden.other_dims(rng)
    return [_hidden.fixed_case((dims, H)), _hidden.fixed_case((dims, H), sizes),
            _hidden.fixed_case((dims, H), {"key_input_dims": sizes["key_input_dims"]})]



def _hidden_layer_shapes(rng):
    B, _, L_q, L_k, _, _ = _hidden.sizes(rng)
    dims, H, sizes = _hidden.other_dims(rng)
    return [_hidden.fixed_case((B, L_q, L_k, dims, H)), _hidden.fixed_case((B, L_q, L_k, dims, H), sizes)]



def _hidden_cross_attention(rng):
    B, H, L_q, L_k, D, _ = _hidden.sizes(rng)
    dims, key_input_dims, seed = H * D, int(rng.integers(11, 16)), _hidden.seed(rng)
    lengths = rng.integers(1, L_k + 1, size=B).tolist()

    def layer():
        mx.random.seed(seed)
        made = nn.MultiHeadAttention(dims, H, key_input_dims=key_input_dims)
        mx.eval(made.parameters())
        return made

    return [case("hidden", layer, lambda: rand(seed + 1, B, L_q, dims),
                         lambda: rand(seed + 2, B, L_k, key_input_dims), lambda: list(lengths))]


EXERCISES.append(Exercise(
    id="projection_shapes",
    hidden_cases=_hidden_projection_shapes,
    lesson="04",
    title="The shape of every projection",
    answer_name="projection_shapes",
    signature="projection_shapes(dims, num_heads, query_input_dims=None, key_input_dims=None, "
              "value_input_dims=None, value_dims=None, value_output_dims=None)",
    reference=_projection_shapes,
    cases=[
        case("dims 16, 4 heads, defaults", 16, 4),
        case("every size different", 8, 2, query_input_dims=5, key_input_dims=6, value_input_dims=7,
             value_dims=10, value_output_dims=3),
        case("key_input_dims 6, value_input_dims left to its default", 8, 4, key_input_dims=6),
        case("value_dims 12, value_output_dims 20", 8, 2, value_dims=12, value_output_dims=20),
    ],
    mistakes=[
        Mistake("value_input_default",
                "value_input_dims defaults to key_input_dims, not dims (keys and values usually come "
                "from the same sequence).", _shapes_bug("value_input_default")),
        Mistake("linear_transposed",
                "nn.Linear(input_dims, output_dims) stores its weight as (output_dims, input_dims).",
                _shapes_bug("linear_transposed")),
        Mistake("value_dims_ignored", "value_proj projects to value_dims (default dims), and out_proj "
                "reads value_dims features.", _shapes_bug("value_dims_ignored")),
        Mistake("out_proj_from_dims", "out_proj reads the merged heads, value_dims features, not dims.",
                _shapes_bug("out_proj_from_dims")),
    ],
))

# ---------------------------------------------------------------------------
# MultiHeadAttention: the full constructor


def _causal(n):
    return nn.MultiHeadAttention.create_additive_causal_mask(n)


EXERCISES.append(ModuleExercise(
    id="multi_head_attention",
    hidden_cases=_hidden_multi_head_attention,
    forbidden=("nn.MultiHeadAttention",),
    lesson="04",
    title="The full mlx.nn.MultiHeadAttention",
    answer_name="MultiHeadAttention",
    signature=("MultiHeadAttention(dims, num_heads, query_input_dims=None, key_input_dims=None, "
               "value_input_dims=None, value_dims=None, value_output_dims=None, bias=False)"
               "(queries, keys, values, mask=None)"),
    reference=nn.MultiHeadAttention,
    cases=[
        case("dims 8, 2 heads, defaults, self-attention", {"dims": 8, "num_heads": 2},
             lambda: (lambda x: (x, x, x))(rand(90, 1, 4, 8))),
        case("every size different, bias=True, batch 2, 3 queries, 5 keys",
             {"dims": 12, "num_heads": 3, "query_input_dims": 5, "key_input_dims": 7, "value_input_dims": 6,
              "value_dims": 9, "value_output_dims": 4, "bias": True},
             lambda: (rand(91, 2, 3, 5), rand(92, 2, 5, 7), rand(93, 2, 5, 6))),
        case("key_input_dims 6 (value_input_dims defaults to it), 4 heads",
             {"dims": 8, "num_heads": 4, "key_input_dims": 6},
             lambda: (rand(94, 2, 3, 8), rand(95, 2, 4, 6), rand(96, 2, 4, 6))),
        case("dims 16, 4 heads, bias, additive causal mask", {"dims": 16, "num_heads": 4, "bias": True},
             lambda: (lambda x: (x, x, x))(rand(97, 2, 5, 16)), mask=lambda: _causal(5)),
        case("dims 8, 2 heads, boolean padding mask, 3 queries, 6 keys", {"dims": 8, "num_heads": 2},
             lambda: (rand(98, 2, 3, 8), rand(99, 2, 6, 8), rand(100, 2, 6, 8)),
             mask=lambda: masks.padding_mask([6, 3], 6)),
    ],
    mistakes=[
        Mistake(bug, HINTS[bug], buggy_layer(bug))
        for bug in LAYER_BUGS
    ] + [
        Mistake("boolean_added", HINTS["boolean_added"], buggy_layer("boolean_added")),
        Mistake("scale_from_value_dims", HINTS["scale_from_value_dims"], buggy_layer("scale_from_value_dims")),
    ],
    properties=layer_properties({"dims": 8, "num_heads": 2, "value_dims": 6}, causal=True),
))

# ---------------------------------------------------------------------------
# layer_shapes(B, L_q, L_k, dims, num_heads, ...): predict every shape inside the layer

_LAYER_SHAPES_SIGNATURE = ("layer_shapes(B, L_q, L_k, dims, num_heads, query_input_dims=None, "
                           "key_input_dims=None, value_input_dims=None, value_dims=None, value_output_dims=None)")


def _layer_shapes(B, L_q, L_k, dims, num_heads, query_input_dims=None, key_input_dims=None,
                  value_input_dims=None, value_dims=None, value_output_dims=None):
    query_input_dims = query_input_dims or dims
    key_input_dims = key_input_dims or dims
    value_input_dims = value_input_dims or key_input_dims
    layer = nn.MultiHeadAttention(dims, num_heads, query_input_dims, key_input_dims, value_input_dims,
                                  value_dims, value_output_dims)
    queries = layer.query_proj(mx.zeros((B, L_q, query_input_dims)))  # (B, L_q, dims)
    keys = layer.key_proj(mx.zeros((B, L_k, key_input_dims)))  # (B, L_k, dims)
    values = layer.value_proj(mx.zeros((B, L_k, value_input_dims)))  # (B, L_k, value_dims)
    H = num_heads
    queries = queries.reshape(B, L_q, H, -1).transpose(0, 2, 1, 3)  # (B, H, L_q, D_h)
    keys = keys.reshape(B, L_k, H, -1).transpose(0, 2, 1, 3)  # (B, H, L_k, D_h)
    values = values.reshape(B, L_k, H, -1).transpose(0, 2, 1, 3)  # (B, H, L_k, D_v)
    scores = queries @ keys.swapaxes(-1, -2)  # (B, H, L_q, L_k)
    heads_output = scores @ values  # (B, H, L_q, D_v)
    merged = heads_output.transpose(0, 2, 1, 3).reshape(B, L_q, -1)  # (B, L_q, value_dims)
    return {"queries": tuple(queries.shape), "keys": tuple(keys.shape), "values": tuple(values.shape),
            "scores": tuple(scores.shape), "heads_output": tuple(heads_output.shape),
            "merged": tuple(merged.shape), "output": tuple(layer.out_proj(merged).shape)}


EXERCISES.append(Exercise(
    id="layer_shapes",
    hidden_cases=_hidden_layer_shapes,
    lesson="04",
    title="Predict every shape inside the full layer",
    answer_name="layer_shapes",
    signature=_LAYER_SHAPES_SIGNATURE,
    reference=_layer_shapes,
    cases=[
        case("B 2, L_q 3, L_k 5, dims 8, 2 heads, defaults", 2, 3, 5, 8, 2),
        case("every size different", 2, 3, 4, 12, 3, query_input_dims=5, key_input_dims=7, value_input_dims=6,
             value_dims=9, value_output_dims=4),
        case("value_dims 12, value_output_dims 20, 4 heads", 1, 2, 6, 8, 4, value_dims=12, value_output_dims=20),
        case("query_input_dims 10, key_input_dims 6", 3, 4, 2, 8, 2, query_input_dims=10, key_input_dims=6),
    ],
    mistakes=[
        Mistake("shape_value_dims", "The values are projected to value_dims, so a head's values have "
                "D_v = value_dims // num_heads features, and so have the heads' outputs.", predicted_wrong(
                    _layer_shapes, lambda B, L_q, L_k, dims, H, **sizes: {
                        "values": (B, H, L_k, dims // H), "heads_output": (B, H, L_q, dims // H),
                        "merged": (B, L_q, dims)})),
        Mistake("shape_output", "out_proj maps value_dims to value_output_dims: the output is "
                "(B, L_q, value_output_dims).", predicted_wrong(
                    _layer_shapes, lambda B, L_q, L_k, dims, H, **sizes: {"output": (B, L_q, dims)})),
        Mistake("shape_input_dims", "The projections map every input width to dims before the split: "
                "queries and keys are (B, H, L, dims // num_heads) whatever query_input_dims and "
                "key_input_dims are.", predicted_wrong(
                    _layer_shapes, lambda B, L_q, L_k, dims, H, query_input_dims=None, key_input_dims=None,
                    **sizes: {"queries": (B, H, L_q, (query_input_dims or dims) // H),
                              "keys": (B, H, L_k, (key_input_dims or dims) // H)})),
    ],
))

# ---------------------------------------------------------------------------
# cross_attention(layer, decoder_states, encoder_states, encoder_lengths)


def _cross_layer(seed):
    mx.random.seed(seed)
    layer = nn.MultiHeadAttention(8, 2, key_input_dims=6)
    mx.eval(layer.parameters())
    return layer


def _cross_attention(layer, decoder_states, encoder_states, encoder_lengths):
    mask = masks.padding_mask(encoder_lengths, encoder_states.shape[1])
    return layer(decoder_states, encoder_states, encoder_states, mask=mask)


EXERCISES.append(Exercise(
    id="cross_attention",
    hidden_cases=_hidden_cross_attention,
    lesson="04",
    title="Encoder-decoder attention with padding",
    answer_name="cross_attention",
    signature="cross_attention(layer, decoder_states, encoder_states, encoder_lengths)",
    reference=_cross_attention,
    cases=[
        case("batch 2, 3 decoder positions, 5 encoder positions, lengths [5, 2]",
             lambda: _cross_layer(110), lambda: rand(111, 2, 3, 8), lambda: rand(112, 2, 5, 6), [5, 2]),
        case("batch 3, 4 decoder positions, 4 encoder positions, lengths [1, 4, 3]",
             lambda: _cross_layer(113), lambda: rand(114, 3, 4, 8), lambda: rand(115, 3, 4, 6), [1, 4, 3]),
    ],
    mistakes=[
        Mistake("cross_no_padding",
                "Mask the encoder's padding: build a (B, 1, 1, L_k) boolean mask from "
                "encoder_lengths and pass it as mask=.",
                lambda layer, dec, enc, lengths: layer(dec, enc, enc)),
        Mistake("cross_causal",
                "Cross-attention is not causal: every decoder position may read the whole (unpadded) "
                "encoder output. Use only the padding mask.",
                lambda layer, dec, enc, lengths: layer(dec, enc, enc, mask=masks.combine(
                    masks.padding_mask(lengths, enc.shape[1]), masks.causal(dec.shape[1], enc.shape[1])))),
        Mistake("padding_inverted", HINTS["inverted_boolean_mask"],
                lambda layer, dec, enc, lengths: layer(dec, enc, enc, mask=~masks.padding_mask(lengths, enc.shape[1]))),
    ],
))
