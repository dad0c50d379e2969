"""Lesson 06: drop-in parity with mlx.nn and PyTorch."""

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

import mhacourse
from mhacourse import masks

from ..compare import describe
from ..registry import Exercise, Mistake, register
from ..runner import AnswerProblem
from ._common import case, rand

# ---------------------------------------------------------------------------
# copy_weights(source, target) -> target


def _layer(kind, seed, *args, **kwargs):
    mx.random.seed(seed)
    layer = (nn.MultiHeadAttention if kind == "mlx.nn" else mhacourse.MultiHeadAttention)(*args, **kwargs)
    mx.eval(layer.parameters())
    return layer


def _snapshot(module):
    return {k: np.array(v) for k, v in tree_flatten(module.parameters())}


class CopyWeightsExercise(Exercise):
    """``answer(source, target)`` must return ``target`` holding ``source``'s parameters.

    The check calls the returned layer on the case's inputs and makes sure the
    source was left as it was.
    """

    def run_case(self, answer, case):
        (source, target, inputs), _ = case.inputs()
        before = _snapshot(source)
        returned = answer(source, target)
        if returned is not target:
            which = "the source layer" if returned is source else describe(returned)
            raise AnswerProblem(
                f"{self.answer_name} returned {which}, not the target layer.",
                "copy_return_target",
                "Copy into the target and return the target: target.update(source.parameters()); "
                "return target.",
            )
        after = _snapshot(source)
        if any(not np.array_equal(before[k], after[k]) for k in before):
            raise AnswerProblem(
                "the source layer's parameters changed.",
                "copy_reversed",
                "Copy in the right direction: target.update(source.parameters()) changes the target "
                "only; source.update(target.parameters()) overwrites the source.",
            )
        return returned(*inputs)


def _copy(source, target):
    target.update(source.parameters())
    return target


def _copy_some(names):
    def wrong(source, target):
        for name in names:
            getattr(target, name).update(getattr(source, name).parameters())
        return target

    return wrong


register(CopyWeightsExercise(
    id="copy_weights",
    lesson="06",
    title="Swap weights with mlx.nn.MultiHeadAttention",
    answer_name="copy_weights",
    signature="copy_weights(source, target)",
    reference=_copy,
    cases=[
        case("mlx.nn -> mhacourse, dims 8, 2 heads, bias",
             lambda: _layer("mlx.nn", 200, 8, 2, bias=True), lambda: _layer("mhacourse", 201, 8, 2, bias=True),
             lambda: (lambda x: (x, x, x))(rand(202, 2, 4, 8))),
        case("mhacourse -> mlx.nn, every size different",
             lambda: _layer("mhacourse", 203, 12, 3, 5, 7, 6, 9, 4),
             lambda: _layer("mlx.nn", 204, 12, 3, 5, 7, 6, 9, 4),
             lambda: (rand(205, 2, 3, 5), rand(206, 2, 6, 7), rand(207, 2, 6, 6))),
    ],
    mistakes=[
        Mistake("copy_partial",
                "Copy every parameter, out_proj included: target.update(source.parameters()) copies "
                "all four projections (and their biases) at once.",
                _copy_some(("query_proj", "key_proj", "value_proj"))),
    ],
))

# ---------------------------------------------------------------------------
# torch_in_proj_to_mlx(in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias)


def _from_torch(in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, *, order="qkv",
                transpose=False):
    weights = dict(zip(order, np.split(np.asarray(in_proj_weight), 3, axis=0)))
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


register(Exercise(
    id="torch_in_proj_to_mlx",
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


register(Exercise(
    id="torch_mask_to_mlx",
    lesson="06",
    title="PyTorch masks to an MLX mask",
    answer_name="torch_mask_to_mlx",
    signature="torch_mask_to_mlx(attn_mask, key_padding_mask)",
    reference=_torch_mask_to_mlx,
    cases=[
        case("batch 2, 4 queries, 4 keys", lambda: _torch_masks(220, 2, 4, 4)[0], lambda: _torch_masks(220, 2, 4, 4)[1]),
        case("batch 3, 2 queries, 5 keys", lambda: _torch_masks(221, 3, 2, 5)[0], lambda: _torch_masks(221, 3, 2, 5)[1]),
    ],
    mistakes=[
        Mistake("inverted_boolean_mask",
                "PyTorch's boolean masks say True = *blocked*; MLX's say True = *attend*: invert both "
                "(~mask) before combining.", _mask_bug("not_inverted")),
        Mistake("inverted_boolean_mask",
                "PyTorch's boolean masks say True = *blocked*; MLX's say True = *attend*: invert both "
                "(~mask) before combining.", _mask_bug("not_inverted_or")),
        Mistake("mask_or",
                "A key is attended only if both masks allow it: combine the MLX masks with &, not |.",
                _mask_bug("or")),
        Mistake("mask_missing_head_axis",
                "Give the mask a head axis, (B, 1, L, S), so that it broadcasts to (B, H, L, S): "
                "key_padding_mask[:, None, None, :].", _mask_bug("no_head_axis")),
    ],
))

# ---------------------------------------------------------------------------
# parameter_gradients(layer, queries, keys, values)


def _gradients(layer, queries, keys, values, reduce="sum"):
    def loss_fn(model):
        out = model(queries, keys, values)
        return out.sum() if reduce == "sum" else out.mean()

    return nn.value_and_grad(layer, loss_fn)(layer)[1]


def _grad_case(name, seed, *args, **kwargs):
    B, Lq, Lk = 2, 3, 4
    return case(name, lambda: _layer("mhacourse", seed, *args, **kwargs),
                lambda: rand(seed + 1, B, Lq, kwargs.get("query_input_dims", args[0])),
                lambda: rand(seed + 2, B, Lk, args[0]), lambda: rand(seed + 3, B, Lk, args[0]))


register(Exercise(
    id="parameter_gradients",
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
