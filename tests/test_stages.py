"""Each earlier stage equals the final layer restricted to its features."""

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

import mhacourse
from mhacourse.attention import custom_dims, multi_head
from mhacourse.attention.multi_head import merge_heads, split_heads
from mhacourse.attention.single_head import SingleHeadAttention
from tests.conftest import assert_close, random_normals


def inputs(batch, n_queries, n_keys, dims, seed=0):
    return random_normals([(batch, n_queries, dims), (batch, n_keys, dims), (batch, n_keys, dims)], seed=seed)


@pytest.mark.parametrize("mask", [None, "causal"])
def test_single_head_is_one_head_with_identity_out_proj(mask):
    single = SingleHeadAttention(12)
    final = mhacourse.MultiHeadAttention(12, 1)
    final.update(single.parameters())
    final.out_proj.weight = mx.eye(12)
    q, k, v = inputs(2, 5, 7, 12)
    out, w = single(q, k, v, mask=mask, return_weights=True)
    ref_out, ref_w = final(q, k, v, mask=mask, return_weights=True)
    assert out.shape == (2, 5, 12) and w.shape == (2, 5, 7)
    assert_close(out, ref_out)
    assert_close(w, ref_w[:, 0])


@pytest.mark.parametrize("num_heads", [1, 2, 4])
def test_stage2_equals_final_layer(num_heads):
    stage2 = multi_head.MultiHeadAttention(16, num_heads)
    final = mhacourse.MultiHeadAttention(16, num_heads)
    final.update(stage2.parameters())
    q, k, v = inputs(3, 4, 6, 16)
    mask = mhacourse.masks.padding_mask([6, 2, 4], 6)
    assert_close(stage2(q, k, v, mask=mask), final(q, k, v, mask=mask))


def test_stage4_equals_final_layer_and_mlx():
    kwargs = dict(dims=12, num_heads=3, query_input_dims=5, key_input_dims=7,
                  value_input_dims=9, value_dims=6, value_output_dims=11, bias=True)
    stage4, final, reference = (cls(**kwargs) for cls in
                                (custom_dims.MultiHeadAttention, mhacourse.MultiHeadAttention, nn.MultiHeadAttention))
    stage4.update(reference.parameters())
    final.update(reference.parameters())
    q = mx.random.normal((2, 3, 5))
    k = mx.random.normal((2, 8, 7))
    v = mx.random.normal((2, 8, 9))
    assert_close(stage4(q, k, v), reference(q, k, v))
    assert_close(final(q, k, v), reference(q, k, v))


def test_stages_build_on_each_other():
    assert issubclass(custom_dims.MultiHeadAttention, multi_head.MultiHeadAttention)
    assert issubclass(mhacourse.MultiHeadAttention, custom_dims.MultiHeadAttention)


@pytest.mark.parametrize("B,L,D,H", [(1, 1, 4, 1), (2, 5, 12, 3), (3, 7, 32, 8)])
def test_split_and_merge_heads(B, L, D, H):
    x = mx.arange(B * L * D).reshape(B, L, D).astype(mx.float32)
    heads = split_heads(x, H)
    assert heads.shape == (B, H, L, D // H)
    # Head h holds features h*D/H ... (h+1)*D/H - 1 of every position.
    Dh = D // H
    for h in range(H):
        assert mx.array_equal(heads[:, h], x[..., h * Dh:(h + 1) * Dh]).item()
    assert mx.array_equal(merge_heads(heads), x).item()
    assert mx.array_equal(heads, mx.unflatten(x, -1, (H, -1)).transpose(0, 2, 1, 3)).item()


@pytest.mark.parametrize("mask_kind", [None, "causal", "boolean", "additive"])
def test_returned_weights_reproduce_the_output_by_hand(mask_kind):
    layer = mhacourse.MultiHeadAttention(16, 4, key_input_dims=6, value_dims=8, value_output_dims=10, bias=True)
    q = mx.random.normal((2, 5, 16))
    k = mx.random.normal((2, 7, 6))
    v = mx.random.normal((2, 7, 6))
    rng = np.random.default_rng(1)
    mask = {None: None, "causal": "causal",
            "boolean": mx.array(rng.random((2, 4, 5, 7)) < 0.6),
            "additive": mx.array(rng.normal(size=(5, 7)).astype(np.float32))}[mask_kind]
    out, weights = layer(q, k, v, mask=mask, return_weights=True)
    assert weights.shape == (2, 4, 5, 7)
    np.testing.assert_allclose(np.array(weights.sum(-1)), 1.0, atol=1e-5)
    if mask_kind == "boolean":
        blocked = ~np.array(mask)
        fully_blocked = blocked.all(-1, keepdims=True)
        assert np.all(np.array(weights)[blocked & ~fully_blocked] == 0)
    if mask_kind == "causal":
        blocked = ~np.array(mhacourse.masks.causal(5, 7))
        assert np.all(np.array(weights)[:, :, blocked] == 0)
    _, _, values = multi_head.project(layer, q, k, v)  # (B, H, L_k, D_v/H)
    by_hand = layer.out_proj(merge_heads(weights @ values))
    assert_close(by_hand, out)
    assert_close(layer(q, k, v, mask=mask), out)  # the fused path agrees
