"""Lesson 06: drop-in parity with mlx.nn and PyTorch."""

import mlx.core as mx
import mlx.nn as nn
import numpy as np

import mhacourse
from mhacourse import masks

from ..exercise import Exercise, Mistake, ModuleExercise
from . import _hidden
from ._common import HINTS, buggy_layer, case, rand

EXERCISES = []  # this lesson's exercises, declared whole, in notebook order; the registry collects them

# ---------------------------------------------------------------------------
# FixedAttention: find and fix the two bugs planted in BuggyAttention


def _layer(kind, seed, *args, **kwargs):
    mx.random.seed(seed)
    layer = (nn.MultiHeadAttention if kind == "mlx.nn" else mhacourse.MultiHeadAttention)(*args, **kwargs)
    mx.eval(layer.parameters())
    return layer


# The notebook's BuggyAttention: heads split without the transpose, scaled by dims ** -0.5.
_NOTEBOOK_BUGGY = buggy_layer("split_no_transpose", "scale_full_dims")
_SPLIT_FIX = ("the heads are split with reshape(B, H, L, D_h), which mixes positions and features: reshape "
              "to (B, L, H, D_h), then transpose(0, 2, 1, 3)")
_SCALE_FIX = "the scale is dims ** -0.5; it must be one head's, head_dims ** -0.5 = (dims // num_heads) ** -0.5"


def _hidden_debug_layer(rng):
    B, H, L_q, L_k, D, _ = _hidden.sizes(rng)
    dims = H * D
    x = _hidden.normal(rng, B, L_q, dims)
    return [
        _hidden.layer_case(
            {"dims": dims, "num_heads": H, "bias": True},
            (_hidden.normal(rng, B, L_q, dims), _hidden.normal(rng, B, L_k, dims), _hidden.normal(rng, B, L_k, dims)),
        ),
        _hidden.layer_case(
            {"dims": dims, "num_heads": H}, (x, x, x), {"mask": nn.MultiHeadAttention.create_additive_causal_mask(L_q)}
        ),
    ]



def _hidden_torch_in_proj_to_mlx(rng):
    _, H, _, _, D, _ = _hidden.sizes(rng)
    return [_torch_case("hidden", _hidden.seed(rng), H * D), _torch_case("hidden", _hidden.seed(rng), 2 * H + 1)]



def _hidden_torch_mask_to_mlx(rng):
    B, _, L_q, L_k, _, _ = _hidden.sizes(rng)
    cases = []
    for L, S in ((L_q, L_k), (L_k, L_k)):
        seed = _hidden.seed(rng)
        cases.append(case("hidden", lambda s=seed, L=L, S=S: _torch_masks(s, B, L, S)[0],
                                  lambda s=seed, L=L, S=S: _torch_masks(s, B, L, S)[1]))
    return cases



def _hidden_parameter_gradients(rng):
    B, H, L_q, L_k, D, D_v = _hidden.sizes(rng)
    dims, seed, constructor = H * D, _hidden.seed(rng), {"bias": True, "query_input_dims": int(rng.integers(11, 16)),
                                                  "value_dims": H * D_v}
    return [case("hidden", lambda: _layer("mhacourse", seed, dims, H, **constructor),
                         lambda: rand(seed + 1, B, L_q, constructor["query_input_dims"]),
                         lambda: rand(seed + 2, B, L_k, dims), lambda: rand(seed + 3, B, L_k, dims))]


EXERCISES.append(ModuleExercise(
    id="debug_layer",
    hidden_cases=_hidden_debug_layer,
    forbidden=("nn.MultiHeadAttention",),
    lesson="06",
    title="Find and fix two bugs",
    answer_name="FixedAttention",
    signature="FixedAttention(dims, num_heads, bias=False)(queries, keys, values, mask=None)",
    reference=nn.MultiHeadAttention,
    cases=[
        case("dims 8, 2 heads, self-attention over 4 positions", {"dims": 8, "num_heads": 2},
             lambda: (lambda x: (x, x, x))(rand(200, 1, 4, 8))),
        case("dims 12, 3 heads, bias, batch 2, 3 queries, 5 keys", {"dims": 12, "num_heads": 3, "bias": True},
             lambda: (rand(201, 2, 3, 12), rand(202, 2, 5, 12), rand(203, 2, 5, 12))),
        case("dims 16, 4 heads, additive causal mask", {"dims": 16, "num_heads": 4},
             lambda: (lambda x: (x, x, x))(rand(204, 2, 5, 16)),
             mask=lambda: nn.MultiHeadAttention.create_additive_causal_mask(5)),
    ],
    mistakes=[
        Mistake("debug_both", f"Both bugs remain: {_SPLIT_FIX}; and {_SCALE_FIX}.", _NOTEBOOK_BUGGY),
        Mistake("debug_split", f"One bug remains (the scale is fixed): {_SPLIT_FIX}.",
                buggy_layer("split_no_transpose")),
        Mistake("debug_scale", f"One bug remains (the split is fixed): {_SCALE_FIX}.", buggy_layer("scale_full_dims")),
    ] + [Mistake(bug, HINTS[bug], buggy_layer(bug)) for bug in ("merge_no_transpose", "merge_interleaved",
                                                                "split_interleaved", "scale_not_sqrt",
                                                                "missing_scale")],
    points=2,
))

# ---------------------------------------------------------------------------
# torch_in_proj_to_mlx(in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias)


def _from_torch(in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, *, order="qkv",
                transpose=False, axis=0):
    weights = dict(zip(order, np.split(np.asarray(in_proj_weight), 3, axis=axis)))
    biases = dict(zip(order, np.split(np.asarray(in_proj_bias), 3, axis=0)))

    def linear(weight, bias):
        weight = weight.T if transpose else weight
        return {"weight": mx.array(weight), "bias": mx.array(bias)}

    return {
        "query_proj": linear(weights["q"], biases["q"]),
        "key_proj": linear(weights["k"], biases["k"]),
        "value_proj": linear(weights["v"], biases["v"]),
        "out_proj": linear(np.asarray(out_proj_weight), np.asarray(out_proj_bias)),
    }


def _torch_arrays(seed, embed_dim):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((3 * embed_dim, embed_dim)).astype(np.float32),
            rng.standard_normal(3 * embed_dim).astype(np.float32),
            rng.standard_normal((embed_dim, embed_dim)).astype(np.float32),
            rng.standard_normal(embed_dim).astype(np.float32))


def _torch_case(name, seed, embed_dim):
    return case(name, lambda: _torch_arrays(seed, embed_dim)[0], lambda: _torch_arrays(seed, embed_dim)[1],
                lambda: _torch_arrays(seed, embed_dim)[2], lambda: _torch_arrays(seed, embed_dim)[3])


EXERCISES.append(Exercise(
    id="torch_in_proj_to_mlx",
    hidden_cases=_hidden_torch_in_proj_to_mlx,
    lesson="06",
    title="PyTorch's packed in_proj_weight to MLX's four projections",
    answer_name="torch_in_proj_to_mlx",
    signature="torch_in_proj_to_mlx(in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias)",
    reference=_from_torch,
    cases=[_torch_case("embed_dim 8", 210, 8), _torch_case("embed_dim 6", 211, 6)],
    mistakes=[
        Mistake("torch_transposed",
                "PyTorch's nn.Linear and MLX's nn.Linear both store a weight as (out_features, "
                "in_features): copy it as it is, without transposing.",
                lambda *a: _from_torch(*a, transpose=True)),
        Mistake("torch_split_axis",
                "in_proj_weight is (3E, E): the three weights are stacked along the rows, so split it "
                "along axis 0, not along the input features (axis 1).",
                lambda *a: _from_torch(*a, axis=1)),
        Mistake("torch_qkv_order",
                "in_proj_weight stacks the query, key and value weights in that order: rows "
                "[0:E] are the queries', [E:2E] the keys', [2E:3E] the values'.",
                lambda *a: _from_torch(*a, order="kqv")),
        Mistake("torch_qkv_order",
                "in_proj_weight stacks the query, key and value weights in that order: rows "
                "[0:E] are the queries', [E:2E] the keys', [2E:3E] the values'.",
                lambda *a: _from_torch(*a, order="qvk")),
    ],
))

# ---------------------------------------------------------------------------
# torch_mask_to_mlx(attn_mask, key_padding_mask): True = blocked -> True = attend


def _torch_masks(seed, B, L, S):
    rng = np.random.default_rng(seed)
    attn_mask = np.triu(np.ones((L, S), dtype=bool), k=1 + S - L)  # PyTorch: True = blocked
    lengths = rng.integers(1, S + 1, size=B)
    key_padding_mask = np.arange(S)[None] >= lengths[:, None]  # True = padding
    return attn_mask, key_padding_mask


def _torch_mask_to_mlx(attn_mask, key_padding_mask):
    return masks.from_torch(attn_mask, key_padding_mask)


def _mask_bug(bug):
    def wrong(attn_mask, key_padding_mask):
        attn = mx.array(attn_mask)  # (L, S)
        padding = mx.array(key_padding_mask)[:, None, None, :]  # (B, 1, 1, S)
        if bug == "not_inverted":
            return attn & padding
        if bug == "not_inverted_or":
            return attn | padding
        if bug == "or":
            return ~attn | ~padding
        if bug == "no_head_axis":
            return ~attn & ~padding[:, 0]  # (B, L, S)
        raise ValueError(bug)

    return wrong


EXERCISES.append(
    Exercise(
        id="torch_mask_to_mlx",
        hidden_cases=_hidden_torch_mask_to_mlx,
        lesson="06",
        title="PyTorch masks to an MLX mask",
        answer_name="torch_mask_to_mlx",
        signature="torch_mask_to_mlx(attn_mask, key_padding_mask)",
        reference=_torch_mask_to_mlx,
        cases=[
            case(
                "batch 2, 4 queries, 4 keys",
                lambda: _torch_masks(220, 2, 4, 4)[0],
                lambda: _torch_masks(220, 2, 4, 4)[1],
            ),
            case(
                "batch 3, 2 queries, 5 keys",
                lambda: _torch_masks(221, 3, 2, 5)[0],
                lambda: _torch_masks(221, 3, 2, 5)[1],
            ),
        ],
        mistakes=[
            Mistake(
                "inverted_boolean_mask",
                "PyTorch's boolean masks say True = *blocked*; MLX's say True = *attend*: invert both "
                "(~mask) before combining.",
                _mask_bug("not_inverted"),
            ),
            Mistake(
                "inverted_boolean_mask",
                "PyTorch's boolean masks say True = *blocked*; MLX's say True = *attend*: invert both "
                "(~mask) before combining.",
                _mask_bug("not_inverted_or"),
            ),
            Mistake(
                "mask_or",
                "A key is attended only if both masks allow it: combine the MLX masks with &, not |.",
                _mask_bug("or"),
            ),
            Mistake(
                "mask_missing_head_axis",
                "Give the mask a head axis, (B, 1, L, S), so that it broadcasts to (B, H, L, S): "
                "key_padding_mask[:, None, None, :].",
                _mask_bug("no_head_axis"),
            ),
        ],
    )
)

# ---------------------------------------------------------------------------
# parameter_gradients(layer, queries, keys, values)


def _gradients(layer, queries, keys, values, reduce="sum"):
    def loss_fn(model):
        out = model(queries, keys, values)
        return out.sum() if reduce == "sum" else out.mean()

    return nn.value_and_grad(layer, loss_fn)(layer)[1]


def _grad_case(name, seed, *args, **kwargs):
    B, L_q, L_k = 2, 3, 4
    return case(name, lambda: _layer("mhacourse", seed, *args, **kwargs),
                lambda: rand(seed + 1, B, L_q, kwargs.get("query_input_dims", args[0])),
                lambda: rand(seed + 2, B, L_k, args[0]), lambda: rand(seed + 3, B, L_k, args[0]))


EXERCISES.append(Exercise(
    id="parameter_gradients",
    hidden_cases=_hidden_parameter_gradients,
    lesson="06",
    title="Gradients of the layer's parameters",
    answer_name="parameter_gradients",
    signature="parameter_gradients(layer, queries, keys, values)",
    reference=_gradients,
    cases=[
        _grad_case("dims 8, 2 heads, bias", 230, 8, 2, bias=True),
        _grad_case("dims 12, 3 heads, query_input_dims 5, value_output_dims 4", 240, 12, 3,
                   query_input_dims=5, value_output_dims=4),
    ],
    mistakes=[
        Mistake("grad_mean",
                "The loss is the *sum* of the outputs, layer(queries, keys, values).sum(); a mean "
                "divides every gradient by the number of outputs.",
                lambda layer, q, k, v: _gradients(layer, q, k, v, reduce="mean")),
    ],
))
