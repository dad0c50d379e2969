import mlx.core as mx
import numpy as np
import pytest

# Tolerances of MLX's own test_fast_sdpa.py, per dtype.
ATOL = {mx.float32: 1e-5, mx.float16: 3e-4, mx.bfloat16: 5e-3}


def to_numpy(x):
    return np.array(x.astype(mx.float32)) if x.dtype != mx.float32 else np.array(x)


def assert_close(actual, expected, dtype=mx.float32, scale=1.0):
    """Compare two MLX arrays with MLX's per-dtype tolerance (NaN equals NaN)."""
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    tol = ATOL[dtype] * scale
    np.testing.assert_allclose(to_numpy(actual), to_numpy(expected), atol=tol, rtol=tol)


@pytest.fixture(autouse=True)
def _seed():
    mx.random.seed(0)
