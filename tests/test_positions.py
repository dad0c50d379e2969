"""mhacourse.positions: the sinusoidal table, RoPE against mlx.nn.RoPE, and their properties."""

import math

import mlx.core as mx
import mlx.nn as nn
import pytest

from mhacourse import positions, scaled_dot_product_attention


def test_sinusoidal_table_is_the_papers_formula():
    table = positions.sinusoidal_encoding(7, 6)
    assert table.shape == (7, 6) and table.dtype == mx.float32
    for p in (0, 3, 6):
        for i in range(3):
            angle = p / 10000 ** (2 * i / 6)
            assert table[p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_sinusoidal_table_matches_mlx_layer_up_to_layout_and_scale():
    dims = 8
    table = positions.sinusoidal_encoding(12, dims)
    # MLX: sines then cosines, frequencies from 1 to min_freq, scaled by sqrt(2 / dims) by default.
    layer = nn.SinusoidalPositionalEncoding(dims, min_freq=10000 ** (-(dims - 2) / dims), scale=1.0)
    theirs = layer(mx.arange(12, dtype=mx.float32))
    assert mx.allclose(mx.concatenate([table[:, 0::2], table[:, 1::2]], axis=-1), theirs, atol=1e-5)


def test_sinusoidal_dot_products_depend_only_on_the_offset():
    table = positions.sinusoidal_encoding(20, 16)
    similarity = (table[:, None] * table[None]).sum(-1)  # (L, L): table @ table.T without TF32 on CUDA
    for k in (1, 5):
        diagonal = mx.diagonal(similarity, offset=k)
        assert mx.allclose(diagonal, diagonal[0], atol=1e-4)


@pytest.mark.parametrize("traditional", [False, True])
@pytest.mark.parametrize("offset", [0, 7])
def test_rope_equals_mlx_rope(traditional, offset):
    x = mx.random.normal((2, 3, 5, 8), key=mx.random.key(0))
    ours = positions.rope(x, offset, traditional=traditional)
    theirs = nn.RoPE(8, traditional=traditional)(x, offset=offset)
    assert ours.shape == x.shape and ours.dtype == x.dtype
    assert mx.allclose(ours, theirs, atol=1e-5)


def test_rope_scores_depend_only_on_the_offset_and_norms_are_kept():
    q = mx.random.normal((1, 1, 6, 8), key=mx.random.key(1))
    k = mx.random.normal((1, 1, 6, 8), key=mx.random.key(2))
    def scores(query_offset, key_offset):  # (1, 1, L_q, L_k), elementwise (no TF32 on CUDA)
        rq, rk = positions.rope(q, query_offset), positions.rope(k, key_offset)
        return (rq[..., :, None, :] * rk[..., None, :, :]).sum(-1)

    assert mx.allclose(scores(0, 0), scores(40, 40), atol=1e-4)
    assert not mx.allclose(scores(0, 0), scores(3, 0), atol=1e-2)
    assert mx.allclose(mx.linalg.norm(positions.rope(q), axis=-1), mx.linalg.norm(q, axis=-1), atol=1e-5)


def test_rope_attention_puts_the_queries_last():
    q = mx.random.normal((2, 2, 3, 4), key=mx.random.key(3))
    k = mx.random.normal((2, 2, 5, 4), key=mx.random.key(4))
    v = mx.random.normal((2, 2, 5, 6), key=mx.random.key(5))
    rope = nn.RoPE(4)
    expected = scaled_dot_product_attention(rope(q, offset=2), rope(k), v, scale=0.5)
    assert mx.allclose(positions.rope_attention(q, k, v), expected, atol=1e-5)
    with pytest.raises(ValueError, match="L_k"):
        positions.rope_attention(k, q, q)


def test_unshuffle_inverts_the_permutation():
    x = mx.random.normal((2, 5, 3), key=mx.random.key(6))
    perm = mx.array([3, 0, 4, 1, 2])
    assert mx.array_equal(positions.unshuffle(x[:, perm], perm), x)
    with pytest.raises(ValueError, match="perm"):
        positions.unshuffle(x, mx.array([0, 1]))


def test_bad_sizes_name_the_argument():
    with pytest.raises(ValueError, match="dims must be even"):
        positions.sinusoidal_encoding(4, 5)
    with pytest.raises(ValueError, match="num_positions"):
        positions.sinusoidal_encoding(0, 4)
    with pytest.raises(ValueError, match="D_h"):
        positions.rope(mx.zeros((1, 3, 5)))
