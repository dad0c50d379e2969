"""mhacourse.MultiHeadAttention against mlx.nn.MultiHeadAttention itself."""

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

import mhacourse
from tests.conftest import assert_close, random_normals

MASKS = ["none", "additive_causal", "additive", "boolean", "causal", "padding"]


def random_config(seed):
    """A random constructor call: every size may differ, bias on or off."""
    rng = np.random.default_rng(seed)
    num_heads = int(rng.choice([1, 2, 3, 4, 8]))
    head = int(rng.choice([2, 4, 8, 16]))
    value_head = int(rng.choice([2, 4, 8]))
    kwargs = dict(dims=num_heads * head, num_heads=num_heads, bias=bool(rng.integers(2)))
    for name in ("query_input_dims", "key_input_dims", "value_input_dims", "value_output_dims"):
        if rng.random() < 0.6:
            kwargs[name] = int(rng.integers(3, 40))
    if rng.random() < 0.6:
        kwargs["value_dims"] = num_heads * value_head
    batch = int(rng.integers(1, 4))
    n_queries = int(rng.integers(1, 12))
    n_keys = n_queries if rng.random() < 0.4 else int(rng.integers(1, 12))
    return kwargs, batch, n_queries, n_keys


def input_sizes(kwargs):
    dims = kwargs["dims"]
    query = kwargs.get("query_input_dims", dims)
    key = kwargs.get("key_input_dims", dims)
    return query, key, kwargs.get("value_input_dims", key)


def make_mask(kind, batch, num_heads, n_queries, n_keys, dtype, rng):
    if kind == "none":
        return None
    if kind == "causal":
        return "causal"
    if kind == "additive_causal":
        causal = nn.MultiHeadAttention.create_additive_causal_mask(max(n_queries, n_keys), dtype)
        return causal[-n_queries:, -n_keys:]  # lower-right corner
    if kind == "additive":
        bias = rng.normal(size=(batch, 1, n_queries, n_keys)).astype(np.float32)
        bias[rng.random(bias.shape) < 0.3] = -1e4
        return mx.array(bias).astype(dtype)
    if kind == "boolean":
        keep = rng.random((batch, num_heads, n_queries, n_keys)) < 0.7
        return mx.array(keep)
    if kind == "padding":
        return mhacourse.masks.padding_mask(rng.integers(1, n_keys + 1, size=batch).tolist(), n_keys)
    raise AssertionError(kind)


def make_pair(kwargs, dtype, direction):
    ours = mhacourse.MultiHeadAttention(**kwargs)
    theirs = nn.MultiHeadAttention(**kwargs)
    if direction == "mlx_to_ours":
        ours.update(theirs.parameters())
    else:
        theirs.update(ours.parameters())
    ours.set_dtype(dtype)
    theirs.set_dtype(dtype)
    return ours, theirs


def make_inputs(kwargs, batch, n_queries, n_keys, dtype, seed):
    query, key, value = input_sizes(kwargs)
    shapes = [(batch, n_queries, query), (batch, n_keys, key), (batch, n_keys, value)]
    return random_normals(shapes, dtype, seed)


CASES = [(seed, MASKS[seed % len(MASKS)], ["mlx_to_ours", "ours_to_mlx"][seed % 2]) for seed in range(60)]


@pytest.mark.parametrize("dtype", [mx.float32, mx.float16, mx.bfloat16], ids=str)
@pytest.mark.parametrize("seed,mask_kind,direction", CASES)
def test_outputs_match_mlx(seed, mask_kind, direction, dtype):
    kwargs, batch, n_queries, n_keys = random_config(seed)
    ours, theirs = make_pair(kwargs, dtype, direction)
    assert [(k, v.shape) for k, v in tree_flatten(ours.parameters())] == [
        (k, v.shape) for k, v in tree_flatten(theirs.parameters())
    ]
    q, k, v = make_inputs(kwargs, batch, n_queries, n_keys, dtype, seed)
    rng = np.random.default_rng(seed)
    mask = make_mask(mask_kind, batch, kwargs["num_heads"], n_queries, n_keys, dtype, rng)
    expected = theirs(q, k, v, mask=mask)
    assert_close(ours(q, k, v, mask=mask), expected, dtype)
    out, weights = ours(q, k, v, mask=mask, return_weights=True)
    assert weights.shape == (batch, kwargs["num_heads"], n_queries, n_keys)
    assert_close(out, expected, dtype, scale=4)


@pytest.mark.parametrize("seed", range(0, 60, 5))
def test_gradients_match_mlx(seed):
    kwargs, batch, n_queries, n_keys = random_config(seed)
    ours, theirs = make_pair(kwargs, mx.float32, "mlx_to_ours")
    q, k, v = make_inputs(kwargs, batch, n_queries, n_keys, mx.float32, seed)
    mask = make_mask(MASKS[seed % len(MASKS)], batch, kwargs["num_heads"], n_queries, n_keys,
                     mx.float32, np.random.default_rng(seed))

    def loss(model, q, k, v):
        return (model(q, k, v, mask=mask) ** 2).mean()

    loss_ours, grads_ours = nn.value_and_grad(ours, loss)(ours, q, k, v)
    loss_theirs, grads_theirs = nn.value_and_grad(theirs, loss)(theirs, q, k, v)
    assert_close(loss_ours, loss_theirs)
    for (name, g1), (_, g2) in zip(tree_flatten(grads_ours), tree_flatten(grads_theirs)):
        assert_close(g1, g2, scale=10), name
    # Gradients with respect to the inputs, too.
    dq_ours = mx.grad(lambda q: loss(ours, q, k, v))(q)
    dq_theirs = mx.grad(lambda q: loss(theirs, q, k, v))(q)
    assert_close(dq_ours, dq_theirs, scale=10)


def test_defaults_are_mlx_defaults():
    # value_input_dims defaults to key_input_dims, not dims.
    ours = mhacourse.MultiHeadAttention(8, 2, key_input_dims=5)
    theirs = nn.MultiHeadAttention(8, 2, key_input_dims=5)
    assert ours.value_proj.weight.shape == theirs.value_proj.weight.shape == (8, 5)
    assert "bias" not in ours.query_proj


@pytest.mark.parametrize("n", [1, 2, 7, 33])
@pytest.mark.parametrize("dtype", [mx.float32, mx.float16, mx.bfloat16], ids=str)
def test_create_additive_causal_mask_matches_mlx(n, dtype):
    expected = nn.MultiHeadAttention.create_additive_causal_mask(n, dtype)
    for ours in (mhacourse.MultiHeadAttention.create_additive_causal_mask(n, dtype),
                 mhacourse.masks.causal_mask(n, dtype)):
        assert ours.dtype == expected.dtype
        assert mx.array_equal(ours, expected).item()
