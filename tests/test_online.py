"""The online-softmax attention equals mx.fast, and the shipped GPU figures load and add up."""

import functools
import statistics

import mlx.core as mx
import pytest

from mhacourse.attention.online import fused_kernel_available, online_attention
from mhacourse.bench import attention_flops
from mhacourse.data import load_gpu_figures
from tests.conftest import attention_inputs

# One unit in the last place near 1: the online loop keeps its weights in float32, while the
# unfused path rounds them to the dtype before multiplying by the values.
TOLERANCE = {mx.float32: 1e-5, mx.float16: 2.0**-10, mx.bfloat16: 2.0**-7}

# (B, H_q, H_kv, L_q, L_k, D_h, D_v): keys not a multiple of the tile, grouped heads and
# a different value width, a single decoding query.
SHAPES = [
    (2, 4, 4, 5, 37, 16, 16),
    (1, 8, 2, 9, 9, 8, 12),
    (2, 2, 1, 1, 20, 32, 32),
]


def masks_for(shape, dtype):
    B, _, _, L_q, L_k, _, _ = shape
    lengths = mx.array([L_k, L_k // 2])[:B]
    first_row_blocked = mx.arange(L_q)[:, None] > 0  # (L_q, 1): query 0 sees no key
    recent_only = mx.arange(L_k)[None] >= L_k - 3  # (1, L_k): the first tiles are all -inf
    return {
        "none": None,
        "causal": "causal",
        "padding": (mx.arange(L_k)[None] < lengths[:, None])[:, None, None, :],  # (B, 1, 1, L_k)
        "fully masked boolean row": mx.broadcast_to(first_row_blocked, (L_q, L_k)),
        "additive": mx.random.normal((L_q, L_k), key=mx.random.key(7)).astype(dtype),
        "additive -inf before the last keys": mx.where(recent_only, 0.0, -mx.inf).astype(dtype),
    }


@pytest.mark.parametrize("dtype", [mx.float32, mx.float16, mx.bfloat16], ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_equals_fast_sdpa(shape, dtype):
    queries, keys, values = attention_inputs(shape, dtype)
    scale = shape[5] ** -0.5
    tol = TOLERANCE[dtype]
    for name, mask in masks_for(shape, dtype).items():
        fused = mx.fast.scaled_dot_product_attention(queries, keys, values, scale=scale, mask=mask)
        for tile_size in (1, 7, 64):
            online = online_attention(queries, keys, values, scale=scale, mask=mask, tile_size=tile_size)
            assert online.dtype == fused.dtype == dtype
            assert online.shape == fused.shape
            assert mx.allclose(online, fused, atol=tol, rtol=tol).item(), (name, tile_size)


def test_low_precision_error_no_worse_than_unfused():
    # Against a float32 reference, the online loop is at least as accurate as mx.fast's CPU path.
    shape = SHAPES[0]
    q32, k32, v32 = attention_inputs(shape, mx.float32, seed=3)
    reference = mx.fast.scaled_dot_product_attention(q32, k32, v32, scale=0.25, mask="causal")
    q, k, v = (x.astype(mx.bfloat16) for x in (q32, k32, v32))
    error = {
        name: mx.abs(out.astype(mx.float32) - reference).max().item()
        for name, out in [
            ("online", online_attention(q, k, v, scale=0.25, mask="causal", tile_size=8)),
            ("fast", mx.fast.scaled_dot_product_attention(q, k, v, scale=0.25, mask="causal")),
        ]
    }
    assert error["online"] <= error["fast"] + TOLERANCE[mx.bfloat16], error


def test_special_rows():
    queries, keys, values = attention_inputs((1, 1, 1, 2, 10, 4, 4), mx.float32)
    blocked = mx.array([[False] * 10, [True] * 10])  # query 0 may attend to nothing
    out = online_attention(queries, keys, values, scale=0.5, mask=blocked, tile_size=3)
    assert mx.allclose(out[0, 0, 0], values[0, 0].mean(axis=0), atol=1e-6).item()  # mean of values
    all_inf = mx.array([[-mx.inf] * 10, [0.0] * 10])
    out = online_attention(queries, keys, values, scale=0.5, mask=all_inf, tile_size=3)
    assert mx.isnan(out[0, 0, 0]).all().item() and not mx.isnan(out[0, 0, 1]).any().item()


def test_memory_grows_linearly():
    # Peak memory beyond the inputs: doubling L doubles the online loop's, quadruples the scores'.
    # The median of five evaluations: when the lazy graph frees its temporaries varies a little from
    # run to run (a fresh-clone CI once measured the online loop at 256 keys 17% under its usual peak).
    def peak(fn):
        peaks = []
        for _ in range(5):
            mx.reset_peak_memory()
            before = mx.get_active_memory()
            mx.eval(fn())
            peaks.append(mx.get_peak_memory() - before)
        return statistics.median(peaks)

    peaks = {}
    for L in (256, 512):
        q, k, v = attention_inputs((1, 2, 2, L, L, 16, 16), mx.float32)
        mx.eval(q, k, v)
        peaks["online", L] = peak(functools.partial(online_attention, q, k, v, scale=0.25, tile_size=32))
        peaks["fast", L] = peak(functools.partial(mx.fast.scaled_dot_product_attention, q, k, v, scale=0.25))
    print({key: round(value / 1e6, 3) for key, value in peaks.items()})
    if mx.default_device() == mx.cpu:  # the CPU runs mx.fast unfused: it holds (B, H, L, L) scores
        assert peaks["fast", 512] / peaks["fast", 256] > 3.0
        assert peaks["fast", 512] >= 1 * 2 * 512 * 512 * 4
    assert peaks["online", 512] / peaks["online", 256] < 2.6


def test_fused_kernel_available_matches_force_fused():
    queries, keys, values = attention_inputs((1, 2, 2, 16, 16, 64, 64), mx.float32)
    available = fused_kernel_available(queries, keys, values, mask="causal")
    if mx.default_device() == mx.cpu:
        assert available is False  # the CPU backend has no fused attention kernel
    if not available:
        with pytest.raises(ValueError, match="force_fused"):
            mx.fast.scaled_dot_product_attention(queries, keys, values, scale=1.0, mask="causal",
                                                 force_fused=True)
    with pytest.raises(ValueError, match="mask"):
        fused_kernel_available(queries, keys, values, mask="upper")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"tile_size": 0}, "tile_size"),
        ({"tile_size": 2.5}, "tile_size"),
        ({"mask": "upper"}, "mask"),
        ({"mask": mx.ones((3, 5), dtype=mx.bool_)}, "mask"),
    ],
)
def test_bad_arguments(kwargs, match):
    queries, keys, values = attention_inputs((1, 2, 2, 4, 6, 8, 8), mx.float32)
    with pytest.raises(ValueError, match=match):
        online_attention(queries, keys, values, scale=1.0, **kwargs)


def test_gpu_figures_load_with_provenance():
    figures = load_gpu_figures()
    provenance = figures["provenance"]
    assert provenance["mlx"] == "0.32.4" and "CUDA" in provenance["backend"]
    assert "H100" in provenance["device"] and provenance["dtype"] == "bfloat16"
    assert (provenance["batch"], provenance["num_heads"]) == (4, 16)
    assert len(figures["rows"]) == 4


def test_gpu_figures_are_consistent():
    # TFLOP/s must follow from the times and the FLOP count; the explicit form must hold its scores.
    figures = load_gpu_figures()
    B, H = figures["provenance"]["batch"], figures["provenance"]["num_heads"]
    for row in figures["rows"]:
        flops = attention_flops(B, H, row["L"], row["head_dims"], causal=row["causal"])
        for impl in ("explicit", "fused", "torch"):
            implied = flops / (row[f"{impl}_ms"] * 1e-3) / 1e12
            assert implied == pytest.approx(row[f"{impl}_tflops"], rel=0.05), (row, impl)
        scores_gb = B * H * row["L"] ** 2 * 2 / 1e9  # bfloat16 (B, H, L, L)
        assert row["explicit_peak_gb"] >= scores_gb > row["fused_peak_gb"]
        assert row["fused_ms"] < row["explicit_ms"]


def test_gradients_match_fast_sdpa():
    # The loop is made of differentiable MLX operations: its gradients are attention's gradients.
    queries, keys, values = attention_inputs((1, 2, 2, 6, 11, 8, 8), mx.float32)
    weights = mx.random.normal((1, 2, 6, 8), key=mx.random.key(5))

    def loss(attend):
        return lambda q, k, v: (attend(q, k, v) * weights).sum()

    online = mx.grad(loss(lambda q, k, v: online_attention(q, k, v, scale=0.3, mask="causal", tile_size=4)),
                     argnums=(0, 1, 2))(queries, keys, values)
    fused = mx.grad(loss(lambda q, k, v: mx.fast.scaled_dot_product_attention(q, k, v, scale=0.3, mask="causal")),
                    argnums=(0, 1, 2))(queries, keys, values)
    for ours, theirs in zip(online, fused):
        assert mx.allclose(ours, theirs, atol=1e-5).item()
