"""The public API contract: names and signatures that tests outside the package rely on."""

import inspect

import mlx.core as mx
import mlx.nn as nn

import mhacourse
from mhacourse import grading, masks


def parameters(fn):
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def test_layer_constructor_is_mlx_constructor():
    assert parameters(mhacourse.MultiHeadAttention.__init__) == parameters(nn.MultiHeadAttention.__init__)


def test_layer_call_and_causal_mask():
    call = inspect.signature(mhacourse.MultiHeadAttention.__call__)
    assert list(call.parameters) == ["self", "queries", "keys", "values", "mask", "return_weights"]
    assert call.parameters["mask"].default is None
    assert call.parameters["return_weights"].kind is inspect.Parameter.KEYWORD_ONLY
    assert call.parameters["return_weights"].default is False
    assert parameters(mhacourse.MultiHeadAttention.create_additive_causal_mask) == parameters(
        nn.MultiHeadAttention.create_additive_causal_mask)


def test_scaled_dot_product_attention_signature():
    sig = inspect.signature(mhacourse.scaled_dot_product_attention)
    assert [(p.name, p.kind) for p in sig.parameters.values()] == [
        ("queries", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("keys", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("values", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("scale", inspect.Parameter.KEYWORD_ONLY),
        ("mask", inspect.Parameter.KEYWORD_ONLY),
    ]
    assert sig.parameters["scale"].default is inspect.Parameter.empty
    assert sig.parameters["mask"].default is None


def test_masks_and_grading_names():
    assert inspect.signature(masks.causal_mask).parameters["dtype"].default == mx.float32
    assert mhacourse.check is grading.check
    required = {"scaled_dot_product_attention", "split_heads", "merge_heads", "causal_mask", "multi_head_attention"}
    assert required <= set(grading.exercise_ids())
    result = grading.check("split_heads", mhacourse.attention.multi_head.split_heads)
    assert isinstance(result, grading.CheckResult) and result.passed is True
