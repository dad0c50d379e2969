"""Every error path names the argument and the numbers."""

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

import mhacourse
from mhacourse import attention_weights, scaled_dot_product_attention
from mhacourse.attention.multi_head import merge_heads, split_heads
from mhacourse.attention.single_head import SingleHeadAttention

MHA = mhacourse.MultiHeadAttention


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        (dict(dims=10, num_heads=3), r"dims \(10\) must be divisible by num_heads \(3\)"),
        (dict(dims=12, num_heads=4, value_dims=6), r"value_dims \(6\) must be divisible by num_heads \(4\)"),
        (dict(dims=8, num_heads=0), "num_heads must be a positive integer, got 0"),
        (dict(dims=0, num_heads=1), "dims must be a positive integer, got 0"),
        (dict(dims=-4, num_heads=2), "dims must be a positive integer, got -4"),
        (dict(dims=8.0, num_heads=2), "dims must be a positive integer"),
        (dict(dims=8, num_heads=2, query_input_dims=0), "query_input_dims must be a positive integer, got 0"),
        (dict(dims=8, num_heads=2, key_input_dims=-1), "key_input_dims"),
        (dict(dims=8, num_heads=2, value_input_dims=0), "value_input_dims"),
        (dict(dims=8, num_heads=2, value_output_dims=0), "value_output_dims"),
        (dict(dims=8, num_heads=2, bias="yes"), "bias must be True or False"),
        (dict(dims=8, num_heads=2, bias=1), r"bias must be True or False, got 1 \(int\)"),
        (dict(dims=8, num_heads=2, bias=mx.array([True, False])), "bias must be True or False"),
    ],
)
def test_constructor_errors(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        MHA(**kwargs)


@pytest.mark.parametrize("flag", [True, np.bool_(True), mx.array(True), False, np.bool_(False)], ids=repr)
def test_bias_accepts_the_flags_mlx_accepts(flag):
    ours, theirs = MHA(8, 2, bias=flag), nn.MultiHeadAttention(8, 2, bias=flag)
    assert ("bias" in ours.query_proj) == ("bias" in theirs.query_proj) == bool(flag)


def test_mlx_itself_is_less_strict():
    # What MLX lets through (or fails on later) and we reject up front.
    with pytest.raises(ZeroDivisionError):
        nn.MultiHeadAttention(8, 0)
    nn.MultiHeadAttention(12, 4, value_dims=6)  # fails only when called


@pytest.mark.parametrize(
    "which,shape,pattern",
    [
        ("queries", (2, 3, 7), r"queries have 7 features .* query_input_dims = 5"),
        ("keys", (2, 4, 5), r"keys have 5 features .* key_input_dims = 6"),
        ("values", (2, 4, 6), r"values have 6 features .* value_input_dims = 9"),
        ("queries", (3, 5), r"queries must have shape \(batch, length, 5\)"),
    ],
)
def test_input_feature_errors(which, shape, pattern):
    layer = MHA(8, 2, query_input_dims=5, key_input_dims=6, value_input_dims=9)
    args = dict(queries=mx.zeros((2, 3, 5)), keys=mx.zeros((2, 4, 6)), values=mx.zeros((2, 4, 9)))
    args[which] = mx.zeros(shape)
    with pytest.raises(ValueError, match=pattern):
        layer(args["queries"], args["keys"], args["values"])


def test_keys_values_and_batch_mismatch():
    layer = MHA(8, 2)
    with pytest.raises(ValueError, match="keys and values must have the same batch size and length"):
        layer(mx.zeros((1, 3, 8)), mx.zeros((1, 4, 8)), mx.zeros((1, 5, 8)))
    with pytest.raises(ValueError, match="queries and keys must have the same batch size"):
        layer(mx.zeros((2, 3, 8)), mx.zeros((1, 4, 8)), mx.zeros((1, 4, 8)))


@pytest.mark.parametrize("return_weights", [False, True])
def test_layer_mask_that_cannot_broadcast(return_weights):
    layer = MHA(8, 2)
    x = mx.zeros((2, 3, 8))
    with pytest.raises(ValueError, match=r"mask of shape \(3, 4\) cannot broadcast to .* \(2, 2, 3, 3\)"):
        layer(x, x, x, mask=mx.zeros((3, 4)), return_weights=return_weights)


def q_k_v(B=1, Hq=2, Hkv=2, Lq=3, Lk=4, D=8, dtype=mx.float32):
    return (mx.zeros((B, Hq, Lq, D), dtype), mx.zeros((B, Hkv, Lk, D), dtype), mx.zeros((B, Hkv, Lk, D), dtype))


@pytest.mark.parametrize(
    "change,pattern",
    [
        (lambda q, k, v: (q[0], k, v, None), r"queries must have rank 4"),
        (lambda q, k, v: (q, k[..., :4], v, None), r"keys must have the same last dimension as queries \(8\)"),
        (lambda q, k, v: (q, mx.zeros((1, 3, 4, 8)), mx.zeros((1, 3, 4, 8)), None),
         r"query heads \(2\) must be a multiple"),
        (lambda q, k, v: (q, k, v[:, :, :2], None), "values must have as many heads and positions as keys"),
        (lambda q, k, v: (q, mx.zeros((2, 2, 4, 8)), v, None), "keys has batch size 2 but queries have 1"),
        (lambda q, k, v: (q, k, v, mx.zeros((3, 5))),
         r"cannot broadcast to \(batch, heads, n_queries, n_keys\) = \(1, 2, 3, 4\)"),
        (lambda q, k, v: (q, k, v, mx.zeros((1, 1, 1, 3, 4))), "at most 4 dimensions"),
        # Broadcasts *with* the target but not *to* it: a batch of masks for a batch of one.
        (lambda q, k, v: (q, k, v, mx.zeros((2, 1, 3, 4))), r"mask of shape \(2, 1, 3, 4\) cannot broadcast"),
        (lambda q, k, v: (q, k, v, "upper-left"), "mask must be 'causal'"),
        (lambda q, k, v: (q.astype(mx.int32), k.astype(mx.int32), v.astype(mx.int32), None), "floating point"),
        (lambda q, k, v: (q.astype(mx.float16), k.astype(mx.float16), v.astype(mx.float16), mx.zeros((3, 4))),
         "additive mask of dtype mlx.core.float32 would promote the mlx.core.float16 inputs"),
    ],
)
def test_sdpa_errors_match_the_fused_kernel(change, pattern):
    q, k, v, mask = change(*q_k_v())
    with pytest.raises(ValueError, match=pattern):
        scaled_dot_product_attention(q, k, v, scale=1.0, mask=mask)
    # The fused kernel rejects the same input (with its own words).
    with pytest.raises(ValueError):
        mx.eval(mx.fast.scaled_dot_product_attention(q, k, v, scale=1.0, mask=mask))


def test_type_errors():
    q, k, v = q_k_v()
    with pytest.raises(TypeError, match="queries must be an mx.array"):
        attention_weights([[1.0]], k, scale=1.0)
    with pytest.raises(TypeError, match="mask must be 'causal', an mx.array or None"):
        scaled_dot_product_attention(q, k, v, scale=1.0, mask=[[True]])


def test_split_and_merge_errors():
    with pytest.raises(ValueError, match=r"last dimension of x \(10\) must be divisible by num_heads \(4\)"):
        split_heads(mx.zeros((1, 2, 10)), 4)
    with pytest.raises(ValueError, match="batch, length, features"):
        split_heads(mx.zeros((2, 10)), 2)
    with pytest.raises(ValueError, match="batch, heads, length, head_dims"):
        merge_heads(mx.zeros((2, 3, 4)))


def test_single_head_errors():
    with pytest.raises(ValueError, match="dims must be a positive integer"):
        SingleHeadAttention(0)
    with pytest.raises(ValueError, match="keys have 3 features .* dims = 4"):
        SingleHeadAttention(4)(mx.zeros((1, 2, 4)), mx.zeros((1, 2, 3)), mx.zeros((1, 2, 4)))


def test_swapped_projection_errors_name_the_projection():
    layer = MHA(8, 2)
    x = mx.zeros((1, 3, 8))
    layer.key_proj = nn.Linear(8, 4)  # 2 features per head against the queries' 4
    with pytest.raises(ValueError, match=r"same size per head; got 4 \(query_proj\) and 2 \(key_proj\)"):
        layer(x, x, x)
    layer.key_proj = nn.Linear(8, 5)  # 5 features cannot be split into 2 heads
    with pytest.raises(ValueError, match=r"projected keys features \(5\) must be divisible by num_heads \(2\)"):
        layer(x, x, x)
