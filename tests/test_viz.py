"""The static views and the explorer's update logic, without a browser."""

import base64

import matplotlib
import mlx.core as mx
import numpy as np
import pytest
from matplotlib.figure import Figure

matplotlib.use("Agg")

from mhacourse import MultiHeadAttention  # noqa: E402
from mhacourse.viz import (  # noqa: E402
    AttentionExplorer,
    WeightsSource,
    explorer_state,
    plot_attention,
    plot_heads,
    plot_mask,
)
from mhacourse.viz.demo import HEAD_ROLES, demo_layer  # noqa: E402

TOKENS = "the cat sat on the mat and the dog".split()  # 9 tokens


def softmax(scores):
    scores = scores - scores.max(axis=-1, keepdims=True)
    exp = np.exp(scores)
    return exp / exp.sum(axis=-1, keepdims=True)


def reference_weights(layer, x, scale, keep=None):
    """Independent NumPy weights ``(H, Lq, Lk)``: softmax(q kᵀ · scale) over the kept keys."""
    num_heads = layer.num_heads
    q = np.array(x[0] @ layer.query_proj.weight.T)  # (L, D)
    k = np.array(x[0] @ layer.key_proj.weight.T)  # (L, D)
    L, D = q.shape
    q = q.reshape(L, num_heads, D // num_heads).transpose(1, 0, 2)  # (H, L, Dh)
    k = k.reshape(L, num_heads, D // num_heads).transpose(1, 0, 2)  # (H, L, Dh)
    scores = scale * q @ k.transpose(0, 2, 1)  # (H, L, L)
    if keep is not None:
        scores = np.where(keep, scores, -np.inf)
    return softmax(scores)


@pytest.fixture
def setup():
    layer = MultiHeadAttention(32, 4)
    x = mx.random.normal((1, len(TOKENS), 32))
    return layer, x


def test_shown_weights_equal_the_layers_return_weights(setup):
    layer, x = setup
    explorer = AttentionExplorer(layer, x, tokens=TOKENS)
    _, expected = layer(x, x, x, return_weights=True)
    np.testing.assert_allclose(explorer.state.weights, np.array(expected[0]), atol=1e-6)
    assert explorer.state.scale == pytest.approx(layer.scale)
    np.testing.assert_allclose(explorer.state.row_sums, 1.0, atol=1e-5)


def test_given_mask_matches_the_layer_with_that_mask(setup):
    layer, x = setup
    explorer = AttentionExplorer(layer, x, tokens=TOKENS, mask="causal")
    assert explorer.mask_selector.value == "given"
    _, expected = layer(x, x, x, mask="causal", return_weights=True)
    np.testing.assert_allclose(explorer.state.weights, np.array(expected[0]), atol=1e-6)


def test_scale_slider_recomputes_from_the_scores(setup):
    layer, x = setup
    explorer = AttentionExplorer(layer, x, tokens=TOKENS)
    before = explorer.image.value
    for scale in (0.0, 0.9, 2.5 * layer.scale):
        explorer.scale_slider.value = scale
        expected = reference_weights(layer, x, explorer.scale_slider.value)
        np.testing.assert_allclose(explorer.state.weights, expected, atol=1e-5)
    assert explorer.image.value != before
    explorer.scale_slider.value = 0.0
    np.testing.assert_allclose(explorer.state.weights, 1 / len(TOKENS), atol=1e-6)


def test_mask_selector_recomputes_causal_and_padding(setup):
    layer, x = setup
    L = len(TOKENS)
    explorer = AttentionExplorer(layer, x, tokens=TOKENS)
    explorer.mask_selector.value = "causal"
    causal = np.tril(np.ones((L, L), dtype=bool))
    np.testing.assert_allclose(explorer.state.weights, reference_weights(layer, x, layer.scale, causal), atol=1e-5)
    assert explorer.valid_keys_slider.disabled

    explorer.mask_selector.value = "padding"
    explorer.valid_keys_slider.value = 4
    assert not explorer.valid_keys_slider.disabled
    padding = np.broadcast_to(np.arange(L) < 4, (L, L))
    expected = reference_weights(layer, x, layer.scale, padding)
    np.testing.assert_allclose(explorer.state.weights, expected, atol=1e-5)
    assert np.all(explorer.state.weights[..., 4:] == 0)
    assert "masked" in explorer.bars.value

    explorer.mask_selector.value = "none"
    np.testing.assert_allclose(explorer.state.weights, reference_weights(layer, x, layer.scale), atol=1e-5)


def test_selecting_a_token_and_a_head_shows_that_row(setup):
    layer, x = setup
    explorer = AttentionExplorer(layer, x, tokens=TOKENS)
    explorer.head_selector.value = 2
    image_before = explorer.image.value
    explorer.query_selector.value = 3
    row = explorer.state.weights[2, 3]
    np.testing.assert_array_equal(explorer.state.row, row)
    for value in row:
        assert f"{value:.3f}" in explorer.bars.value
    assert "“on”" in explorer.bars.value  # TOKENS[3]
    assert explorer.image.value != image_before  # the outline moved to row 3

    explorer.head_selector.value = -1  # all heads: the row is the mean over heads
    assert explorer.state.head is None
    np.testing.assert_allclose(explorer.state.row, explorer.state.weights[:, 3].mean(axis=0))
    assert f"{explorer.state.max_weight:.4f}" in explorer.numbers.value


def test_explorer_state_is_a_plain_function(setup):
    layer, x = setup
    explorer = AttentionExplorer(layer, x)
    state = explorer_state(explorer.source, head=1, query=0, mask="causal", scale=0.5)
    # Query 0 may only see key 0 under the causal mask.
    np.testing.assert_allclose(state.row, np.eye(len(TOKENS))[0], atol=1e-6)
    assert state.keep.sum() == len(TOKENS) * (len(TOKENS) + 1) // 2
    with pytest.raises(ValueError, match="head"):
        explorer_state(explorer.source, head=4)
    with pytest.raises(ValueError, match="mask"):
        explorer_state(explorer.source, mask="diagonal")
    with pytest.raises(ValueError, match="scale"):
        explorer_state(explorer.source, scale=-1.0)


def test_precomputed_weights_rescale_like_the_scores(setup):
    layer, x = setup
    _, w0 = layer(x, x, x, return_weights=True)
    w1 = mx.softmax(mx.random.normal(w0.shape), axis=-1)
    explorer = AttentionExplorer(weights=[w0, w1], tokens=TOKENS)
    assert explorer.source.num_layers == 2 and explorer.layer_selector.layout.display != "none"
    np.testing.assert_allclose(explorer.state.weights, np.array(w0[0]), atol=1e-6)
    # A factor of 2 on the scores is the layer at twice its scale.
    explorer.scale_slider.value = 2.0
    np.testing.assert_allclose(explorer.state.weights, reference_weights(layer, x, 2 * layer.scale), atol=1e-5)
    explorer.layer_selector.value = 1
    np.testing.assert_allclose(explorer.state.weights, softmax(2 * np.log(np.array(w1[0]))), atol=1e-5)
    explorer.mask_selector.value = "causal"
    L = len(TOKENS)
    kept = np.where(np.tril(np.ones((L, L), dtype=bool)), np.array(w1[0]) ** 2, 0)
    np.testing.assert_allclose(explorer.state.weights, kept / kept.sum(-1, keepdims=True), atol=1e-5)


def test_fast_render_paints_the_colours_of_the_colour_scale(setup):
    layer, x = setup
    explorer = AttentionExplorer(layer, x, tokens=TOKENS)
    frame = explorer._frame(all_heads=False)
    weights = np.linspace(0, 1, 9 * 9).reshape(9, 9)
    png = frame.render([weights])
    from io import BytesIO

    from PIL import Image

    pixels = np.asarray(Image.open(BytesIO(png)).convert("RGB")).astype(int)
    y0, y1, x0, x1 = frame.boxes[0]
    cmap = matplotlib.colormaps["viridis"]
    for i, j in [(0, 0), (4, 5), (8, 8)]:
        y = y0 + int((i + 0.5) * (y1 - y0) / 9)
        x = x0 + int((j + 0.5) * (x1 - x0) / 9)
        expected = np.array(cmap(np.sqrt(weights[i, j]))[:3]) * 255
        assert np.abs(pixels[y, x] - expected).max() <= 3, (i, j, pixels[y, x], expected)


def test_static_fallback_is_a_png_of_all_heads(setup):
    from IPython.core.formatters import DisplayFormatter

    layer, x = setup
    explorer = AttentionExplorer(layer, x, tokens=TOKENS)
    data, _ = DisplayFormatter().format(explorer)
    assert "application/vnd.jupyter.widget-view+json" in data
    png = base64.b64decode(data["image/png"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert "4 heads" in data["text/plain"]


def test_static_views_name_heads_and_layers():
    w = mx.softmax(mx.random.normal((2, 3, 5, 5)), axis=-1)
    fig = plot_heads([w, w[0]], query_tokens=list("abcde"), title="two layers")
    assert isinstance(fig, Figure)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert "layer 1 · head 2" in titles and len(titles) == 6
    assert any(ax.get_label() == "<colorbar>" for ax in fig.axes)

    fig = plot_attention(w[0, 1], list("abcde"), title="head 1")
    assert fig.axes[0].get_title() == "head 1"
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == list("abcde")

    big = mx.softmax(mx.random.normal((16, 64, 64)), axis=-1)
    fig = plot_heads(big)
    assert sum(ax.get_visible() and bool(ax.images) for ax in fig.axes) == 16
    assert fig.canvas.print_png  # renders with Agg
    plot_attention(big[0]).savefig(__import__("io").BytesIO(), format="png")


def test_plot_mask_reads_boolean_and_additive_masks():
    additive = MultiHeadAttention.create_additive_causal_mask(4)
    fig = plot_mask(additive, list("abcd"))
    image = fig.axes[0].images[0].get_array()
    np.testing.assert_array_equal(np.asarray(image) > 0.5, np.tril(np.ones((4, 4), dtype=bool)))
    fig = plot_mask(mx.array([True, True, False])[None, None, None])
    assert np.asarray(fig.axes[0].images[0].get_array()).shape == (1, 3)


def test_bad_input_names_the_argument(setup):
    layer, x = setup
    with pytest.raises(ValueError, match="weights"):
        plot_heads(mx.zeros((5, 5)))
    with pytest.raises(ValueError, match="query_tokens"):
        plot_attention(mx.zeros((3, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="either layer"):
        AttentionExplorer()
    with pytest.raises(TypeError, match="layer"):
        AttentionExplorer(object(), x)
    with pytest.raises(ValueError, match="weights"):
        WeightsSource(-mx.ones((1, 3, 3)))


def test_demo_layer_heads_do_their_jobs():
    tokens = "the cat sat on the mat because the cat was tired".split()
    layer, x = demo_layer(tokens)
    _, w = layer(x, x, x, return_weights=True)
    w = np.array(w[0])
    L = len(tokens)
    argmax = w.argmax(axis=-1)  # (H, L)
    assert HEAD_ROLES[0] == "previous token" and np.all(argmax[0, 1:] == np.arange(L - 1))
    assert HEAD_ROLES[1] == "itself" and np.all(argmax[1] == np.arange(L))
    assert HEAD_ROLES[4] == "first token" and np.all(argmax[4] == 0)
