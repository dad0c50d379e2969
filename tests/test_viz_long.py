"""The explorer at 1024 tokens, kernel side: what it sends and that it is right.

The browser side at long inputs (window, zoom, thinning labels) is in
tests/test_browser.py; its speed at 12 layers x 12 heads x 1024 tokens is measured by
benchmarks/bench_explorer_browser.py.
"""

import math

import mlx.core as mx
import numpy as np

import mhacourse
from mhacourse.viz import AttentionExplorer
from mhacourse.viz.codes import decode

L, DIMS, HEADS = 1024, 32, 4


def explicit_weights(layer, x, scale, causal):
    """Softmax of the scaled scores, by hand: ``(H, L, L)`` for batch 0."""
    q = mx.unflatten(layer.query_proj(x), -1, (HEADS, -1)).transpose(0, 2, 1, 3)  # (B, H, L, D_h)
    k = mx.unflatten(layer.key_proj(x), -1, (HEADS, -1)).transpose(0, 2, 1, 3)    # (B, H, L, D_h)
    scores = (q * scale) @ k.swapaxes(-1, -2)                                      # (B, H, L, L)
    if causal:
        scores = mx.where(mx.tril(mx.ones((L, L), dtype=mx.bool_)), scores, -mx.inf)
    return np.array(mx.softmax(scores, axis=-1, precise=True)[0])


def test_1024_tokens_are_sent_once_and_decode_to_the_layers_weights():
    mx.random.seed(3)
    layer = mhacourse.MultiHeadAttention(DIMS, HEADS)
    x = mx.random.normal((1, L, DIMS))                                              # (B, L, dims)
    explorer = AttentionExplorer(layer, x, tokens=[f"t{i}" for i in range(L)])

    # A layer of 4 x 1024 x 1024 weights goes a head at a time: head 0's (L, L) weights, 16 bits each.
    assert explorer._meta["per_head"] and explorer._weights_heads == [[0]]
    assert [len(buffer) for buffer in explorer._weights] == [L * L * 2]
    scale = 1 / math.sqrt(DIMS // HEADS)
    assert math.isclose(explorer.scale, scale)
    expected = explicit_weights(layer, x, scale, False)
    np.testing.assert_allclose(decode(np.frombuffer(explorer._weights[0], np.uint16)).reshape(L, L), expected[0],
                               atol=5e-5)
    np.testing.assert_allclose(explorer.shown_weights(), expected, atol=5e-5)

    # The browser shows head 2 at another scale: head 2 alone is computed and sent.
    explorer._handle_msg({"content": {"data": {"method": "update", "buffer_paths": [],
                                               "state": {"scale": 2 * scale, "_want": "layer:0:2", "_request": 1}}},
                          "buffers": []})
    assert explorer._weights_heads == [[2]] and len(explorer._weights[0]) == L * L * 2
    np.testing.assert_allclose(decode(np.frombuffer(explorer._weights[0], np.uint16)).reshape(L, L),
                               explicit_weights(layer, x, 2 * scale, False)[2], atol=5e-5)
    explorer.scale = scale

    # A scale and a mask change recompute all 1024 rows; rows still sum to 1.
    explorer.scale = 2 * scale
    explorer.mask = "causal"
    shown = explorer.shown_weights()
    np.testing.assert_allclose(shown, explicit_weights(layer, x, 2 * scale, True), atol=5e-5)
    assert np.all(shown[:, np.triu_indices(L, 1)[0], np.triu_indices(L, 1)[1]] == 0)
    np.testing.assert_allclose(shown.sum(-1), 1.0, atol=2e-3)
