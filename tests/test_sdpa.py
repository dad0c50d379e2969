"""Stage 1 against mx.fast.scaled_dot_product_attention itself."""

import itertools
import math
import zlib

import mlx.core as mx
import numpy as np
import pytest

from mhacourse import attention_weights, attention_with_weights, scaled_dot_product_attention
from mhacourse.attention.scaled_dot_product import causal_keep
from tests.conftest import assert_close, attention_inputs

fast_sdpa = mx.fast.scaled_dot_product_attention

# (B, H_q, H_kv, L_q, L_k, D, D_v): the kinds of shapes MLX's test_fast_sdpa.py uses, plus
# n_queries != n_keys both ways, one query (decoding), GQA and MQA, a value head size of its own.
SHAPES = [
    (1, 1, 1, 1, 1, 8, 8),
    (2, 4, 4, 7, 7, 16, 16),
    (1, 8, 2, 5, 33, 64, 64),
    (2, 8, 1, 1, 40, 64, 64),
    (3, 6, 3, 17, 9, 32, 48),
    (1, 4, 4, 33, 64, 80, 80),
    (2, 2, 2, 12, 4, 128, 16),
    (1, 16, 4, 32, 32, 96, 96),
]
DTYPES = [mx.float32, mx.float16, mx.bfloat16]
MASKS = ["none", "additive", "boolean", "causal", "padding"]


def make_mask(kind, shape, dtype, seed):
    B, Hq, _, Lq, Lk, _, _ = shape
    rng = np.random.default_rng(seed)
    if kind == "none":
        return None
    if kind == "causal":
        return "causal"
    if kind == "boolean":
        keep = rng.random((B, Hq, Lq, Lk)) < 0.7
        keep[..., 0] = True
        return mx.array(keep)
    if kind == "additive":
        # A bias plus blocked keys, (Lq, Lk): broadcasts over batch and heads.
        bias = rng.normal(size=(Lq, Lk)).astype(np.float32)
        bias[rng.random((Lq, Lk)) < 0.3] = np.finfo(np.float32).min
        bias[:, 0] = 0.0
        return mx.array(bias).astype(dtype)
    if kind == "padding":
        lengths = rng.integers(1, Lk + 1, size=B)
        keep = np.arange(Lk)[None] < lengths[:, None]
        return mx.array(keep[:, None, None, :])  # (B, 1, 1, Lk)
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "shape,dtype,mask_kind",
    list(itertools.product(SHAPES, DTYPES, MASKS)),
    ids=lambda p: str(p) if not isinstance(p, tuple) else "x".join(map(str, p)),
)
def test_matches_fast_sdpa(shape, dtype, mask_kind):
    seed = zlib.crc32(repr((shape, str(dtype), mask_kind)).encode())
    q, k, v = attention_inputs(shape, dtype, seed)
    mask = make_mask(mask_kind, shape, dtype, seed)
    scale = 1 / math.sqrt(q.shape[-1])
    ours = scaled_dot_product_attention(q, k, v, scale=scale, mask=mask)
    theirs = fast_sdpa(q, k, v, scale=scale, mask=mask)
    assert ours.dtype == theirs.dtype
    assert_close(ours, theirs, dtype)


@pytest.mark.parametrize("Lq,Lk", [(3, 3), (3, 8), (8, 3), (1, 5)])
def test_causal_is_lower_right_aligned_like_mlx(Lq, Lk):
    q, k, v = attention_inputs((1, 2, 2, Lq, Lk, 8, 8), mx.float32, 1)
    explicit_bool = causal_keep(Lq, Lk)
    assert_close(fast_sdpa(q, k, v, scale=0.3, mask="causal"), fast_sdpa(q, k, v, scale=0.3, mask=explicit_bool))
    assert_close(scaled_dot_product_attention(q, k, v, scale=0.3, mask="causal"),
                 fast_sdpa(q, k, v, scale=0.3, mask="causal"))
    # The last query always sees every key.
    assert bool(explicit_bool[-1].all())


def test_fully_masked_rows_match_the_fused_kernel():
    q, k, v = attention_inputs((1, 1, 1, 3, 5, 8, 4), mx.float32, 2)
    keep = np.ones((3, 5), bool)
    keep[0] = False
    out_bool = scaled_dot_product_attention(q, k, v, scale=0.5, mask=mx.array(keep))
    # Boolean: the blocked row attends uniformly, giving the mean of the values.
    assert_close(out_bool[0, 0, 0], v[0, 0].mean(axis=0))
    assert_close(out_bool, fast_sdpa(q, k, v, scale=0.5, mask=mx.array(keep)))
    additive = np.zeros((3, 5), np.float32)
    additive[0] = -np.inf
    out_add = scaled_dot_product_attention(q, k, v, scale=0.5, mask=mx.array(additive))
    theirs = fast_sdpa(q, k, v, scale=0.5, mask=mx.array(additive))
    # Additive -inf: 0/0 in the softmax, NaN in both; the other rows agree.
    assert np.isnan(np.array(out_add[0, 0, 0])).all() and np.isnan(np.array(theirs[0, 0, 0])).all()
    assert_close(out_add[..., 1:, :], theirs[..., 1:, :])


def test_grouped_query_attention_equals_repeated_heads():
    q, k, v = attention_inputs((2, 6, 2, 4, 5, 8, 8), mx.float32, 3)
    repeated = scaled_dot_product_attention(
        q, mx.repeat(k, 3, axis=1), mx.repeat(v, 3, axis=1), scale=0.35
    )
    assert_close(scaled_dot_product_attention(q, k, v, scale=0.35), repeated)
    # Query head h uses key/value head h // 3 (repeat, not tile).
    w = attention_weights(q, k, scale=0.35)
    w4 = attention_weights(q[:, 4:5], k[:, 1:2], scale=0.35)
    assert_close(w[:, 4:5], w4)


@pytest.mark.parametrize("mask_kind", MASKS)
def test_weights_are_a_distribution_that_reproduces_the_output(mask_kind):
    shape = (2, 4, 2, 6, 9, 16, 12)
    q, k, v = attention_inputs(shape, mx.float32, 4)
    mask = make_mask(mask_kind, shape, mx.float32, 4)
    out, w = attention_with_weights(q, k, v, scale=0.25, mask=mask)
    assert w.shape == (2, 4, 6, 9)
    np.testing.assert_allclose(np.array(w.sum(axis=-1)), 1.0, atol=1e-5)
    assert_close(w @ mx.repeat(v, 2, axis=1), out)
    if mask_kind in ("boolean", "padding", "causal"):
        keep = causal_keep(6, 9) if mask == "causal" else mask
        keep = np.broadcast_to(np.array(keep), w.shape)
        assert np.all(np.array(w)[~keep] == 0.0)


def test_scale_is_applied_to_the_queries():
    q, k, v = attention_inputs((1, 2, 2, 4, 4, 8, 8), mx.float32, 5)
    scores = (q @ k.swapaxes(-1, -2)) * 0.1
    expected = mx.softmax(scores, axis=-1) @ v
    assert_close(scaled_dot_product_attention(q, k, v, scale=0.1), expected)


@pytest.mark.parametrize(
    "mask_shape",
    [(9,), (1, 9), (5, 9), (1, 1, 5, 9), (2, 1, 1, 9), (2, 4, 5, 9), (1, 4, 1, 9), (4, 5, 9)],
)
@pytest.mark.parametrize("boolean", [False, True])
def test_every_broadcastable_mask_shape(mask_shape, boolean):
    q, k, v = attention_inputs((2, 4, 2, 5, 9, 16, 16), mx.float32, 6)
    rng = np.random.default_rng(6)
    if boolean:
        mask = mx.array(rng.random(mask_shape) < 0.7)
    else:
        mask = mx.array(rng.normal(size=mask_shape).astype(np.float32))
    assert_close(scaled_dot_product_attention(q, k, v, scale=0.25, mask=mask),
                 fast_sdpa(q, k, v, scale=0.25, mask=mask))


def test_non_contiguous_inputs():
    # Heads split from (B, L, H, D) by a transpose, as the layer does.
    x = mx.random.normal((2, 7, 4, 16))
    q = k = v = x.transpose(0, 2, 1, 3)  # (B, H, L, D), a strided view
    assert_close(scaled_dot_product_attention(q, k, v, scale=0.25, mask="causal"),
                 fast_sdpa(q, k, v, scale=0.25, mask="causal"))
