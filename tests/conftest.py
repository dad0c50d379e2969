import os

import mlx.core as mx
import numpy as np
import pytest

# The backend the tests run on: "cuda", "metal" or "cpu" (make gpu-check reports it).
BACKEND = ("cpu" if mx.default_device() != mx.gpu
           else "cuda" if mx.cuda.is_available() else "metal")
TF32 = BACKEND == "cuda" and os.environ.get("MLX_ENABLE_TF32", "1") != "0"

# Tolerances of MLX's own test_fast_sdpa.py, per dtype (CPU and Metal).
ATOL = {mx.float32: 1e-5, mx.float16: 3e-4, mx.bfloat16: 5e-3}
if BACKEND == "cuda":
    # MLX's CUDA backend multiplies float32 matrices in TF32 (a 10-bit mantissa, like float16's)
    # unless MLX_ENABLE_TF32=0, and cuDNN's fused kernel adds up in another order: on one H100
    # (MLX 0.32.4) |fused - explicit| reached 0.002 in float16 and 0.016 in bfloat16.
    ATOL = {mx.float32: 2e-3 if TF32 else 1e-4, mx.float16: 2e-3, mx.bfloat16: 1.6e-2}


def to_numpy(x):
    return np.array(x.astype(mx.float32)) if x.dtype != mx.float32 else np.array(x)


def assert_close(actual, expected, dtype=mx.float32, scale=1.0):
    """Compare two MLX arrays with MLX's per-dtype tolerance (NaN equals NaN)."""
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    tol = ATOL[dtype] * scale
    np.testing.assert_allclose(to_numpy(actual), to_numpy(expected), atol=tol, rtol=tol)


def random_normals(shapes, dtype=mx.float32, seed=0):
    """One standard-normal array per shape, each from its own key split off ``seed``."""
    keys = mx.random.split(mx.random.key(seed), len(shapes))
    return tuple(mx.random.normal(shape, key=key).astype(dtype) for shape, key in zip(shapes, keys))


def attention_inputs(shape, dtype=mx.float32, seed=0):
    """Queries, keys and values for ``shape = (B, H_q, H_kv, L_q, L_k, D_h, D_v)``."""
    B, H_q, H_kv, L_q, L_k, D_h, D_v = shape
    return random_normals([(B, H_q, L_q, D_h), (B, H_kv, L_k, D_h), (B, H_kv, L_k, D_v)], dtype, seed)


@pytest.fixture(autouse=True)
def _seed():
    mx.random.seed(0)
