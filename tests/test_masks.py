"""mhacourse.masks, checked against what mx.fast.scaled_dot_product_attention does with them."""

import mlx.core as mx
import numpy as np
import pytest

from mhacourse import masks, scaled_dot_product_attention
from tests.conftest import assert_close

fast_sdpa = mx.fast.scaled_dot_product_attention


def qkv(B=2, H=2, Lq=4, Lk=6, D=8):
    kq, kk, kv = mx.random.split(mx.random.key(7), 3)
    return (mx.random.normal((B, H, Lq, D), key=kq), mx.random.normal((B, H, Lk, D), key=kk),
            mx.random.normal((B, H, Lk, D), key=kv))


@pytest.mark.parametrize("Lq,Lk", [(4, 4), (2, 6), (6, 2)])
def test_causal_equals_the_string_mask(Lq, Lk):
    q, k, v = qkv(Lq=Lq, Lk=Lk)
    assert masks.causal(Lq, Lk).shape == (Lq, Lk)
    assert_close(fast_sdpa(q, k, v, scale=0.3, mask=masks.causal(Lq, Lk)),
                 fast_sdpa(q, k, v, scale=0.3, mask="causal"))


def test_causal_default_is_square():
    assert mx.array_equal(masks.causal(5), masks.causal(5, 5)).item()
    assert np.array_equal(np.array(masks.causal(3)), np.tril(np.ones((3, 3), bool)))


def test_padding_mask_from_lengths():
    keep = masks.padding_mask([3, 1, 0], 4)
    assert keep.shape == (3, 1, 1, 4)
    assert np.array_equal(np.array(keep[:, 0, 0]), [[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    q, k, v = qkv(B=3)
    keep = masks.padding_mask(mx.array([6, 2, 5]), 6)
    out = scaled_dot_product_attention(q, k, v, scale=0.3, mask=keep)
    # Padding keys have no influence on the output.
    v_changed = mx.concatenate([v[1:2, :, :2], 100 + v[1:2, :, 2:]], axis=2)
    out_changed = scaled_dot_product_attention(q[1:2], k[1:2], v_changed, scale=0.3, mask=keep[1:2])
    assert_close(out[1:2], out_changed)


@pytest.mark.parametrize("lengths,n_keys", [([5], 4), ([-1], 4), ([[1, 2]], 4), ([1.5], 4)])
def test_padding_mask_rejects_bad_lengths(lengths, n_keys):
    with pytest.raises(ValueError, match="lengths"):
        masks.padding_mask(lengths, n_keys)


@pytest.mark.parametrize("dtype", [mx.float32, mx.float16, mx.bfloat16], ids=str)
def test_boolean_and_additive_give_the_same_attention(dtype):
    q, k, v = (x.astype(dtype) for x in qkv())
    keep = mx.array(np.random.default_rng(0).random((2, 1, 4, 6)) < 0.6)
    additive = masks.to_additive(keep, dtype)
    assert additive.dtype == dtype
    assert_close(fast_sdpa(q, k, v, scale=0.3, mask=additive), fast_sdpa(q, k, v, scale=0.3, mask=keep), dtype)
    assert mx.array_equal(masks.to_boolean(additive), keep).item()


def test_to_boolean_accepts_common_blocking_values_and_rejects_biases():
    m = mx.array([[0.0, -np.inf, -1e9, float(np.finfo(np.float32).min)]])
    assert np.array_equal(np.array(masks.to_boolean(m)), [[True, False, False, False]])
    with pytest.raises(ValueError, match="bias"):
        masks.to_boolean(mx.array([[0.0, -0.5]]))


def test_combine():
    causal = masks.causal(3, 3)
    pad = masks.padding_mask([2], 3)
    both = masks.combine(causal, pad, None)
    assert both.dtype == mx.bool_
    assert np.array_equal(np.array(both[0, 0]), np.array(causal) & np.array([True, True, False]))
    additive = masks.combine(masks.causal_mask(3), pad)
    assert additive.dtype == mx.float32
    assert mx.array_equal(masks.to_boolean(additive), both).item()
    # finfo.min + finfo.min does not overflow to -inf, which would make NaN rows.
    assert not np.isinf(np.array(additive)).any()
    assert masks.combine() is None
    with pytest.raises(ValueError, match="causal"):
        masks.combine("causal", pad)


def test_from_torch_inverts_the_boolean_convention():
    blocked = np.triu(np.ones((3, 3), bool), k=1)  # PyTorch: True = blocked
    assert mx.array_equal(masks.from_torch(blocked), masks.causal(3)).item()
    padding = np.array([[False, False, True]])  # PyTorch: True = padding
    converted = masks.from_torch(key_padding_mask=padding)
    assert mx.array_equal(converted, masks.padding_mask([2], 3)).item()
    stacked = np.stack([blocked] * 4)  # (B * num_heads, L, S) with B=2, H=2
    assert masks.from_torch(stacked, num_heads=2).shape == (2, 2, 3, 3)
    with pytest.raises(ValueError, match="num_heads"):
        masks.from_torch(stacked)
    float_mask = np.where(blocked, -np.inf, 0.0).astype(np.float32)
    assert mx.array_equal(masks.from_torch(float_mask), mx.array(float_mask)).item()
