"""The static views, the explorer's kernel side, its codes, compare, stepper and MLX's reference weights."""

import base64
import json
import math
import re

import matplotlib
import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
import traitlets
from matplotlib.figure import Figure

matplotlib.use("Agg")

from mhacourse import MultiHeadAttention  # noqa: E402
from mhacourse.attention.multi_head import merge_heads, project  # noqa: E402
from mhacourse.viz import (  # noqa: E402
    AttentionExplorer,
    WeightsSource,
    explorer_state,
    plot_attention,
    plot_heads,
    plot_mask,
    reference_weights,
    sdpa_weights,
)
from mhacourse.viz.codes import (  # noqa: E402
    MAX_16_BIT,
    bits_for,
    centred_scores,
    decode,
    softmax_sqrt_codes,
    sqrt_codes,
)
from mhacourse.viz.demo import HEAD_ROLES, demo_layer  # noqa: E402
from mhacourse.viz.explorer import HERE  # noqa: E402
from mhacourse.viz.reference import project_heads  # noqa: E402
from tests.widget_comm import recording_comms  # noqa: E402

TOKENS = "the cat sat on the mat and the dog".split()  # 9 tokens
SCALE = (32 // 4) ** -0.5  # the setup layer attends with sqrt(1 / D_h), D_h = 32 // 4
ATOL_16 = 2e-5  # 16-bit square-root codes: |decoded - w| <= 2 sqrt(w) / 65535 + rounding


def softmax(scores):
    scores = scores - scores.max(axis=-1, keepdims=True)
    exp = np.exp(scores)
    return exp / exp.sum(axis=-1, keepdims=True)


def numpy_weights(layer, x, scale, keep=None):
    """Independent NumPy weights ``(H, Lq, Lk)``: softmax(q kᵀ · scale) over the kept keys."""
    num_heads = layer.num_heads
    q = np.array(x[0] @ layer.query_proj.weight.T)  # (L, dims)
    k = np.array(x[0] @ layer.key_proj.weight.T)  # (L, dims)
    L, dims = q.shape
    q = q.reshape(L, num_heads, dims // num_heads).transpose(1, 0, 2)  # (H, L, D_h)
    k = k.reshape(L, num_heads, dims // num_heads).transpose(1, 0, 2)  # (H, L, D_h)
    scores = scale * q @ k.transpose(0, 2, 1)  # (H, L, L)
    if keep is not None:
        scores = np.where(keep, scores, -np.inf)
    return softmax(scores)


@pytest.fixture
def setup():
    mx.random.seed(3)
    layer = MultiHeadAttention(32, 4)
    x = mx.random.normal((1, len(TOKENS), 32))
    return layer, x


@pytest.fixture
def comm():
    with recording_comms() as made:
        yield made


def test_shown_weights_equal_the_layers_return_weights(setup):
    layer, x = setup
    explorer = AttentionExplorer(layer, x, tokens=TOKENS)
    _, expected = layer(x, x, x, return_weights=True)
    np.testing.assert_allclose(explorer.state.weights, np.array(expected[0]), atol=1e-6)
    np.testing.assert_allclose(explorer.shown_weights(), np.array(expected[0]), atol=ATOL_16)
    assert explorer.scale == pytest.approx(SCALE)
    np.testing.assert_allclose(explorer.state.row_sums, 1.0, atol=1e-5)


def test_given_mask_matches_the_layer_with_that_mask(setup):
    layer, x = setup
    explorer = AttentionExplorer(layer, x, tokens=TOKENS, mask="causal")
    assert explorer.mask == "given"
    _, expected = layer(x, x, x, mask="causal", return_weights=True)
    np.testing.assert_allclose(explorer.state.weights, np.array(expected[0]), atol=1e-6)
    np.testing.assert_allclose(explorer.shown_weights(), np.array(expected[0]), atol=ATOL_16)


def test_scale_recomputes_from_the_scores(setup):
    layer, x = setup
    explorer = AttentionExplorer(layer, x, tokens=TOKENS)
    revision = explorer._revision
    for scale in (0.0, 0.9, 2.5 * SCALE):
        explorer.scale = scale
        expected = numpy_weights(layer, x, scale)
        np.testing.assert_allclose(explorer.state.weights, expected, atol=1e-5)
        np.testing.assert_allclose(explorer.shown_weights(), expected, atol=ATOL_16)
    assert explorer._revision == revision + 3
    explorer.scale = 0.0
    np.testing.assert_allclose(explorer.shown_weights(), 1 / len(TOKENS), atol=ATOL_16)
    with pytest.raises(traitlets.TraitError, match="scale"):
        explorer.scale = -1.0


def test_mask_recomputes_causal_and_padding(setup):
    layer, x = setup
    L = len(TOKENS)
    explorer = AttentionExplorer(layer, x, tokens=TOKENS)
    assert explorer._keep == b""
    explorer.mask = "causal"
    causal = np.tril(np.ones((L, L), dtype=bool))
    np.testing.assert_allclose(explorer.shown_weights(), numpy_weights(layer, x, SCALE, causal), atol=ATOL_16)
    np.testing.assert_array_equal(np.frombuffer(explorer._keep, np.uint8).reshape(L, L), causal)

    explorer.mask = "padding"
    explorer.valid_keys = 4
    padding = np.broadcast_to(np.arange(L) < 4, (L, L))
    expected = numpy_weights(layer, x, SCALE, padding)
    np.testing.assert_allclose(explorer.state.weights, expected, atol=1e-5)
    np.testing.assert_allclose(explorer.shown_weights(), expected, atol=ATOL_16)
    assert np.all(explorer.shown_weights()[..., 4:] == 0)
    np.testing.assert_array_equal(np.frombuffer(explorer._keep, np.uint8).reshape(L, L), padding)
    with pytest.raises(traitlets.TraitError, match="valid_keys"):
        explorer.valid_keys = L + 1
    with pytest.raises(traitlets.TraitError, match="mask"):
        explorer.mask = "given"  # no mask was given


def mlx_copy(layer):
    """``mlx.nn.MultiHeadAttention`` with the parameters of the course's ``layer``."""
    mlx_layer = nn.MultiHeadAttention(layer.query_proj.weight.shape[1], layer.num_heads)
    mlx_layer.update(layer.parameters())
    return mlx_layer


def test_explorer_on_mlx_layer_shows_the_course_layers_weights(setup):
    layer, x = setup
    ours = AttentionExplorer(layer, x, tokens=TOKENS)
    theirs = AttentionExplorer(mlx_copy(layer), x, tokens=TOKENS)
    assert theirs.scale == pytest.approx(SCALE)
    for change in ({}, {"scale": 2.5 * SCALE}, {"mask": "causal"}, {"mask": "padding", "valid_keys": 4},
                   {"scale": 0.3}):
        for explorer in (ours, theirs):
            for name, value in change.items():
                setattr(explorer, name, value)
        np.testing.assert_allclose(theirs.state.weights, ours.state.weights, atol=1e-6, err_msg=str(change))
        np.testing.assert_allclose(theirs.shown_weights(), ours.shown_weights(), atol=ATOL_16, err_msg=str(change))
    # Back to the defaults: MLX's own kernel agrees (its weights rebuilt with the identity as values).
    theirs.scale, theirs.mask = SCALE, "none"
    np.testing.assert_allclose(theirs.state.weights, np.array(reference_weights(theirs.source.layer, x)[0]),
                               atol=1e-5)


class Wrapped(nn.Module):
    """A projection with no ``weight`` of its own (as LoRA's wrapper holds a ``Linear`` inside)."""

    def __init__(self, linear):
        super().__init__()
        self.inner = linear

    def __call__(self, x):
        return self.inner(x)


def test_explorer_reads_quantized_and_wrapped_projections(setup):
    layer, x = setup
    mlx_layer = mlx_copy(layer)
    nn.quantize(mlx_layer, group_size=32, bits=8)
    mlx_layer.value_proj = Wrapped(mlx_layer.value_proj)
    mlx_layer.query_proj = Wrapped(mlx_layer.query_proj)
    explorer = AttentionExplorer(mlx_layer, x, tokens=TOKENS, mask="causal")
    assert explorer.scale == pytest.approx(SCALE)
    np.testing.assert_allclose(explorer.state.weights,
                               np.array(reference_weights(mlx_layer, x, mask="causal")[0]), atol=1e-5)


def test_only_new_weights_travel_and_they_travel_as_binary(setup, comm):
    layer, x = setup
    explorer = AttentionExplorer(layer, x, tokens=TOKENS)
    (opened,) = [c for c in comm if "_meta" in c.opened["data"]["state"]]  # not its Layout's
    # Everything the browser needs is in the first message: one buffer per layer, 16-bit codes,
    # and the grid's thumbnails (8-bit: all 9 queries x 9 keys here).
    paths = opened.opened["data"]["buffer_paths"]
    assert paths.count(["_weights", 0]) == 1 and ["_thumbs"] in paths
    sizes = {tuple(p): len(b) for p, b in zip(paths, opened.opened["buffers"])}
    assert sizes[("_weights", 0)] == 4 * 9 * 9 * 2 and sizes[("_thumbs",)] == 4 * 9 * 9
    # The browser moves the scale (with a new request number, as it always does): the kernel
    # answers with the shown layer only, in one message.
    explorer._handle_msg({"content": {"data": {"method": "update", "state": {"scale": 0.5, "_request": 1},
                                               "buffer_paths": []}},
                         "buffers": []})
    with_buffers = [(data, buffers) for data, buffers in opened.messages if buffers]
    assert len(with_buffers) == 1
    data, buffers = with_buffers[0]
    assert {"_weights", "_revision", "_generation"} <= set(data["state"]) and "_thumbs" not in data["state"]
    assert [len(b) for b in buffers] == [4 * 9 * 9 * 2]
    np.testing.assert_allclose(decode(np.frombuffer(buffers[0], np.uint16)).reshape(4, 9, 9),
                               numpy_weights(layer, x, 0.5), atol=ATOL_16)
    # Steering the view from Python sends a few bytes of JSON, never weights.
    messages = len(opened.messages)
    explorer.head, explorer.view, explorer.query = 2, "lines", 3
    assert all(not buffers for _, buffers in opened.messages[messages:])


def test_precomputed_weights_rescale_like_the_scores(setup):
    layer, x = setup
    _, w0 = layer(x, x, x, return_weights=True)
    w1 = mx.softmax(mx.random.normal(w0.shape), axis=-1)
    explorer = AttentionExplorer(weights=[w0, w1], tokens=TOKENS)
    assert explorer._meta["num_layers"] == 2 and len(explorer._weights) == 2
    np.testing.assert_allclose(explorer.shown_weights(0), np.array(w0[0]), atol=ATOL_16)
    # A factor of 2 on the scores is the layer at twice its scale.
    explorer.scale = 2.0
    np.testing.assert_allclose(explorer.state.weights, numpy_weights(layer, x, 2 * SCALE), atol=1e-5)
    np.testing.assert_allclose(explorer.shown_weights(0), numpy_weights(layer, x, 2 * SCALE), atol=ATOL_16)
    explorer.layer = 1
    expected = softmax(2 * np.log(np.array(w1[0])))
    np.testing.assert_allclose(explorer.state.weights, expected, atol=1e-5)
    np.testing.assert_allclose(explorer.shown_weights(1), expected, atol=ATOL_16)
    explorer.mask = "causal"
    L = len(TOKENS)
    kept = np.where(np.tril(np.ones((L, L), dtype=bool)), np.array(w1[0]) ** 2, 0)
    np.testing.assert_allclose(explorer.shown_weights(1), kept / kept.sum(-1, keepdims=True), atol=ATOL_16)
    with pytest.raises(traitlets.TraitError, match="layer"):
        explorer.layer = 2


def test_codes_decode_to_softmax_for_every_kind_of_mask():
    rng = np.random.default_rng(0)
    scores = (rng.standard_normal((3, 6, 7)) * 4).astype(np.float32)
    keep = rng.random((1, 6, 7)) > 0.3
    keep[0, 2] = False  # a row with no allowed key: uniform, as MLX's kernel gives
    additive = np.where(rng.random((6, 7)) > 0.5, 0.0, -np.inf).astype(np.float32)
    additive[4] = -np.inf  # an additive row blocking everything: NaN in MLX, zeros here
    for scale in (0.0, 0.3, 2.0):
        expected = softmax(np.where(keep, scale * scores, np.finfo(np.float32).min))
        got = decode(softmax_sqrt_codes(scores, scale, keep=keep))
        np.testing.assert_allclose(got, expected, atol=ATOL_16)
        np.testing.assert_allclose(got[:, 2], 1 / 7, atol=ATOL_16)
        if scale > 0:  # the shortcut for scale changes under one mask gives the same codes
            centred = softmax_sqrt_codes(centred_scores(scores, keep), scale, centred=True)
            assert np.abs(centred.astype(int) - softmax_sqrt_codes(scores, scale, keep=keep)).max() <= 1
        with np.errstate(invalid="ignore"):
            expected = softmax(scale * scores + additive)
        got = decode(softmax_sqrt_codes(scores, scale, additive=additive))
        rows = np.arange(6) != 4
        np.testing.assert_allclose(got[:, rows], expected[:, rows], atol=ATOL_16)
        assert np.all(got[:, 4] == 0)
    w = softmax(scores)
    assert np.abs(decode(sqrt_codes(w, 8), 8) - w).max() <= 2 / 255 + 1e-6
    assert sqrt_codes(w, 8).dtype == np.uint8 and sqrt_codes(w).dtype == np.uint16
    assert bits_for(12 * 512 * 512) == 16 and bits_for(12 * 12 * 1024 * 1024) == 8
    assert bits_for(MAX_16_BIT + 1) == 8


def test_compare_marks_the_largest_error(setup):
    layer, x = setup
    _, weights = layer(x, x, x, return_weights=True)  # (1, 4, 9, 9)
    yours = np.array(weights).copy()
    yours[0, 2, 5, 1] += 0.25
    yours[0, 1, 0, 0] = np.nan
    explorer = AttentionExplorer.compare(yours, weights, tokens=TOKENS)
    assert explorer.largest_error[1:] == (0, 1, 0, 0)  # NaN counts as the largest error
    yours[0, 1, 0, 0] = weights[0, 1, 0, 0].item()
    explorer = AttentionExplorer.compare(yours, weights, tokens=TOKENS)
    assert explorer.largest_error == pytest.approx((0.25, 0, 2, 5, 1), abs=1e-6)
    assert (explorer.layer, explorer.head, explorer.query) == (0, 2, 5)  # opens on the worst head and row
    assert set(explorer._extra) == {"yours", "reference"} and explorer._weights == []
    np.testing.assert_array_equal(np.frombuffer(explorer._extra["yours"][0], np.float32).reshape(4, 9, 9),
                                  yours[0].astype(np.float32))
    with pytest.raises(ValueError, match="same shape"):
        AttentionExplorer.compare(yours[:, :2], weights)
    with pytest.raises(ValueError, match="reference"):
        AttentionExplorer.compare(weights, yours - 1)


def test_stepper_shows_each_step_with_its_shape(setup):
    layer, x = setup
    explorer = AttentionExplorer.stepper(layer, x, head=1, mask="causal", tokens=TOKENS)
    names = [s["name"] for s in explorer.steps]
    assert names == ["scores", "scaled", "masked", "softmax", "weights @ V"]
    q, k, v = (np.array(a[0, 1]) for a in project(layer, x, x, x))  # (L, D_h)
    L = len(TOKENS)
    np.testing.assert_allclose(explorer.steps[0]["matrix"], q @ k.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(explorer.steps[1]["matrix"], SCALE * q @ k.T, rtol=1e-5, atol=1e-5)
    assert np.isneginf(explorer.steps[2]["matrix"][0, 1:]).all()
    _, w = layer(x, x, x, mask="causal", return_weights=True)
    np.testing.assert_allclose(explorer.steps[3]["matrix"], np.array(w[0, 1]), atol=1e-6)
    np.testing.assert_allclose(explorer.steps[4]["matrix"], np.array(w[0, 1]) @ v, atol=1e-5)
    assert explorer.steps[4]["shape"] == [("L_q", L), ("D_v", 8)]
    assert [s["rows"] for s in explorer._meta["steps"]] == [L] * 5
    assert len(explorer._extra["steps"]) == 5 and explorer.function_errors is None


def test_stepper_checks_a_learners_function(setup):
    layer, x = setup
    q, k, v = project(layer, x, x, x)  # (1, H, L, D_h)

    def forgot_the_scale(queries, keys, values, *, scale, mask=None):
        return mx.softmax(queries @ keys.swapaxes(-1, -2), axis=-1) @ values

    good = AttentionExplorer.stepper(mx.fast.scaled_dot_product_attention, q, k, v, scale=SCALE)
    assert max(good.function_errors.values()) < 1e-5
    bad = AttentionExplorer.stepper(forgot_the_scale, q, k, v, scale=SCALE)
    assert bad.function_errors["softmax"] > 1e-2
    with pytest.raises(ValueError, match="scale is required"):
        AttentionExplorer.stepper(forgot_the_scale, q, k, v)
    with pytest.raises(ValueError, match="head"):
        AttentionExplorer.stepper(layer, x, head=4)


@pytest.mark.parametrize("mask", [None, "causal", "boolean", "additive"])
def test_reference_weights_rebuild_mlx_layers_output(mask):
    mx.random.seed(1)
    mlx_layer = nn.MultiHeadAttention(32, 4, bias=True)
    queries, keys = mx.random.normal((2, 5, 32)), mx.random.normal((2, 7, 32))
    values = mx.random.normal((2, 7, 32))
    if mask == "boolean":
        mask = mx.random.uniform(shape=(2, 1, 5, 7)) > 0.3
    elif mask == "additive":
        mask = mx.where(mx.random.uniform(shape=(5, 7)) > 0.3, 0.0, -1e9)
    weights = reference_weights(mlx_layer, queries, keys, values, mask=mask)  # (2, 4, 5, 7)
    assert weights.shape == (2, 4, 5, 7)
    assert mx.allclose(weights.sum(axis=-1), mx.ones((2, 4, 5)), atol=1e-5)
    v = mx.unflatten(mlx_layer.value_proj(values), -1, (4, -1)).transpose(0, 2, 1, 3)  # (2, 4, 7, 8)
    rebuilt = mlx_layer.out_proj(merge_heads(weights @ v))  # (2, 5, 32)
    assert mx.allclose(rebuilt, mlx_layer(queries, keys, values, mask=mask), atol=1e-5)


def test_sdpa_weights_reads_any_attention_function(setup):
    layer, x = setup
    q, k, _ = project(layer, x, x, x)
    ours = sdpa_weights(mx.fast.scaled_dot_product_attention, q, k, scale=0.3, mask="causal")
    _, expected = layer(x, x, x, mask="causal", return_weights=True)
    assert not mx.allclose(ours, expected)  # a different scale ...
    from mhacourse import attention_weights

    assert mx.allclose(ours, attention_weights(q, k, scale=0.3, mask="causal"), atol=1e-6)  # ... same weights
    with pytest.raises(ValueError, match="fn must return"):
        sdpa_weights(lambda q_, k_, v_, *, scale, mask=None: q_, q, k, scale=0.3)


def test_save_html_is_standalone_and_offline(setup, tmp_path):
    layer, x = setup
    explorer = AttentionExplorer(layer, x, tokens=TOKENS)
    page = explorer.save_html(tmp_path / "explorer.html", title="a <title>").read_text()
    assert "class Explorer" in page and "renderStandalone(" in page and "&lt;title&gt;" in page
    # Nothing is loaded from anywhere: no URL but the SVG namespace.
    assert set(re.findall(r"https?://[^\s\"'`\\]+", page)) == {"http://www.w3.org/2000/svg"}
    data = json.loads(re.search(r"<script type='application/json' id='mha-data'>(.*?)</script>", page, re.S)
                      .group(1).replace("<\\/", "</"))
    assert data["state"]["_meta"]["offline"] is True
    (path,) = [p for p in data["buffer_paths"] if p[0] == "_weights"]
    codes = np.frombuffer(base64.b64decode(data["buffers"][data["buffer_paths"].index(path)]), np.uint16)
    np.testing.assert_allclose(decode(codes).reshape(4, 9, 9), explorer.state.weights, atol=ATOL_16)


def test_the_javascript_ships_inside_the_package():
    from importlib.resources import files

    for name in ("explorer.js", "explorer.css"):
        assert files("mhacourse.viz").joinpath(name).is_file()
    script = (HERE / "explorer.js").read_text()
    assert "export default { render }" in script
    assert not re.search(r"\bimport\b[^;]*\bfrom\b|import\(", script)  # no dependencies to fetch
    assert AttentionExplorer._esm == HERE / "explorer.js" or "export default" in str(AttentionExplorer._esm)


def test_explorer_displays_the_widget_then_a_labelled_picture(setup):
    from IPython.core.formatters import DisplayFormatter
    from IPython.core.interactiveshell import InteractiveShell

    layer, x = setup
    explorer = AttentionExplorer(layer, x, tokens=TOKENS)
    data = explorer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data and "4 heads" in data["text/plain"]
    assert DisplayFormatter().format(explorer) == ({}, {})  # _ipython_display_ shows both outputs
    shell = InteractiveShell.instance()
    published = []
    shell.display_pub.publish = lambda data, metadata=None, **kw: published.append((data, kw))
    try:
        explorer._ipython_display_()
        widget, (picture, options) = published
        assert "application/vnd.jupyter.widget-view+json" in widget[0]
        png = base64.b64decode(picture["image/png"])
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
        assert (
            'class="mha-static-picture"' in picture["text/html"] and 'alt="Attention explorer' in picture["text/html"]
        )
        assert options["transient"]["display_id"] == explorer._picture_id
        # A change from Python redraws it once, when the cell ends (post_execute), under the same id.
        published.clear()
        explorer.mask, explorer.head = "causal", 2
        assert not published
        shell.events.trigger("post_execute")
        (update, options), = published
        assert options["update"] and options["transient"]["display_id"] == explorer._picture_id
        assert "head 2 of 4" in update["text/plain"] and "mask: causal" in update["text/plain"]
    finally:
        del shell.display_pub.publish


def test_a_browser_control_draws_the_picture_after_a_pause_not_at_once(setup, monkeypatch):
    # comm triggers post_execute after every widget message: the picture (hundreds of ms at 1024
    # tokens) must not be drawn then, between a control's answer and the next control.
    import asyncio

    from IPython.core.interactiveshell import InteractiveShell

    from mhacourse.viz import picture

    class Kernel:
        parent = {"header": {"msg_type": "comm_msg"}}

        def get_parent(self, channel=None):
            return self.parent

    layer, x = setup
    explorer = AttentionExplorer(layer, x, tokens=TOKENS)
    explorer._picture_id = "mha-picture-test"
    shell = InteractiveShell.instance()
    published = []
    monkeypatch.setattr(shell.display_pub, "publish", lambda data, metadata=None, **kw: published.append(data),
                        raising=False)
    monkeypatch.setattr(shell, "kernel", Kernel(), raising=False)
    monkeypatch.setattr(picture, "DELAY", 0.05)

    async def control():
        explorer.scale = 0.5  # as the browser's slider does, between cells
        shell.events.trigger("post_execute")  # what comm does after the message
        assert not published
        await asyncio.sleep(0.3)
        assert len(published) == 1 and "scale 0.5" in published[0]["text/plain"]

    asyncio.run(control())
    # A cell's change is drawn when the cell ends, as before.
    published.clear()
    Kernel.parent = {"header": {"msg_type": "execute_request"}}
    explorer.head = 1
    shell.events.trigger("post_execute")
    assert len(published) == 1 and "head 1 of 4" in published[0]["text/plain"]


def test_static_picture_labels_tokens_and_greys_masked_keys(setup):
    layer, x = setup
    explorer = AttentionExplorer(layer, x, tokens=TOKENS)
    explorer.mask, explorer.head = "causal", 1
    fig = explorer.static_figure()
    main = fig.axes[0]
    assert [t.get_text() for t in main.get_xticklabels()] == TOKENS
    assert [t.get_text() for t in main.get_yticklabels()] == TOKENS
    assert (main.get_xlabel(), main.get_ylabel()) == ("key", "query")
    assert "head 1 of 4" in fig.texts[0].get_text() and "mask: causal" in fig.texts[1].get_text()
    assert "square-root" in fig.axes[1].get_ylabel()  # the colour bar names its scale
    image = np.ma.filled(main.images[0].get_array(), np.nan)
    assert np.isnan(image[0, 1]) and not np.isnan(image[1, 0])  # above the diagonal: masked, grey
    # Drawn from 8-bit square-root codes: as many levels as the colour map has, each weight within 0.004.
    expected = explorer.state.weights[1]
    below = np.tril(np.ones_like(expected, dtype=bool))
    np.testing.assert_allclose(image[below], expected[below], atol=0.004)
    assert any(t.get_text() == "masked" for legend in fig.legends for t in legend.get_texts())
    heads = [t.get_text() for t in fig.axes[2].get_yticklabels()]
    assert heads == ["head 0", "head 1", "head 2", "head 3"]


def test_static_picture_pools_long_inputs():
    weights = np.zeros((2, 3, 600, 600), dtype=np.float32)
    weights[..., np.arange(600), np.arange(600)] = 1.0  # one-hot diagonals
    fig = AttentionExplorer(weights=list(weights)).static_figure()
    image = np.ma.filled(fig.axes[0].images[0].get_array(), np.nan)
    assert "max-pooled over blocks of 3 × 3" in fig.texts[1].get_text()
    assert image.shape == (200, 200) and np.nanmax(image) == 1.0  # max-pooling keeps the peaks
    # Under a mask, a block is grey only when every cell in it is masked.
    causal = AttentionExplorer(weights=list(weights), mask="causal")
    image = np.ma.filled(causal.static_figure().axes[0].images[0].get_array(), np.nan)
    assert np.isnan(image[0, 1]) and not np.isnan(image[1, 0]) and not np.isnan(image[5, 5])
    np.testing.assert_array_equal(np.isnan(image), ~np.tril(np.ones((200, 200), dtype=bool)))


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


def test_plot_mask_reads_boolean_and_additive_masks():
    additive = MultiHeadAttention.create_additive_causal_mask(4)
    fig = plot_mask(additive, list("abcd"))
    image = fig.axes[0].images[0].get_array()
    np.testing.assert_array_equal(np.asarray(image) > 0.5, np.tril(np.ones((4, 4), dtype=bool)))
    fig = plot_mask(mx.array([True, True, False])[None, None, None])
    assert np.asarray(fig.axes[0].images[0].get_array()).shape == (1, 3)


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
    with pytest.raises(ValueError, match="tokens"):
        AttentionExplorer(layer, x, tokens=TOKENS[:3])
    with pytest.raises(ValueError, match="view"):
        AttentionExplorer(layer, x, view="3d")
    with pytest.raises(traitlets.TraitError, match="head"):
        AttentionExplorer(layer, x).head = 4


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
    assert layer.query_proj.weight.shape[0] // layer.num_heads == 16  # D_h = 16: scale 16 ** -0.5


# Pasted as they are into exercises 01 and 03 (after the learner's function): the learner's weights
# next to MLX's. The test runs them with correct answers, a wrong one, an untouched one and a broken one.
EXERCISE_01_SNIPPET = '''
from mhacourse.viz import AttentionExplorer, reference_weights, sdpa_weights
from mhacourse.viz.reference import project_heads

tokens = "the cat sat on the mat".split()
mlx_layer = nn.MultiHeadAttention(16, num_heads=1)
x = mx.random.normal((1, len(tokens), 16))                  # (B, L, dims)
q, k, _ = project_heads(mlx_layer, x)                       # (B, 1, L, 16): one head
comparison = None
try:
    # Your function's weights (sdpa_weights passes the identity as values).
    yours = sdpa_weights(scaled_dot_product_attention, q, k, scale=1 / math.sqrt(16))
except NotImplementedError:
    print("Finish exercise 01.3 first, then run this cell again.")
except Exception as error:
    print(f"Your function raised {type(error).__name__}: {error} (run its check above for a hint)")
else:
    comparison = AttentionExplorer.compare(yours, reference_weights(mlx_layer, x), tokens=tokens)
comparison
'''

EXERCISE_03_SNIPPET = '''
from mhacourse.viz import AttentionExplorer, reference_weights, sdpa_weights
from mhacourse.viz.reference import project_heads

tokens = "the cat sat on the mat".split()
mlx_layer = nn.MultiHeadAttention(16, num_heads=2)
x = mx.random.normal((1, len(tokens), 16))                  # (B, L, dims)
q, k, _ = project_heads(mlx_layer, x)                       # (B, 2, L, 8)
comparison = None
try:
    yours = sdpa_weights(masked_attention, q, k, scale=1 / math.sqrt(8), mask="causal")
except NotImplementedError:
    print("Finish exercise 03.6 first, then run this cell again.")
except Exception as error:
    print(f"Your function raised {type(error).__name__}: {error} (run its check above for a hint)")
else:
    comparison = AttentionExplorer.compare(yours, reference_weights(mlx_layer, x, mask="causal"), tokens=tokens)
comparison
'''


def _solution_sdpa(queries, keys, values, *, scale, mask=None):
    scores = (queries * scale) @ keys.swapaxes(-1, -2)  # (B, H, L_q, L_k)
    if isinstance(mask, str):
        mask = mx.tril(mx.ones(scores.shape[-2:], dtype=mx.bool_))
    if mask is not None and mask.dtype == mx.bool_:
        scores = mx.where(mask, scores, -1e9)
    elif mask is not None:
        scores = scores + mask
    return mx.softmax(scores, axis=-1) @ values  # (B, H, L_q, D_v)


@pytest.mark.parametrize("snippet, name", [(EXERCISE_01_SNIPPET, "scaled_dot_product_attention"),
                                           (EXERCISE_03_SNIPPET, "masked_attention")])
def test_exercise_snippets_compare_the_learners_weights_with_mlxs(snippet, name, capsys):
    for answer, close in ((_solution_sdpa, True), (lambda q, k, v, *, scale, mask=None:
                                                   _solution_sdpa(q, k, v, scale=1.0, mask=mask), False)):
        namespace = {"mx": mx, "nn": nn, "math": math, name: answer}
        exec(snippet, namespace)
        comparison = namespace["comparison"]
        assert comparison._meta["kind"] == "compare"
        assert (comparison.largest_error[0] < 1e-5) == close, comparison.largest_error
    assert capsys.readouterr().out == ""


def _untouched(queries, keys, values, *, scale, mask=None):
    raise NotImplementedError()


def _one_value_column(queries, keys, values, *, scale, mask=None):
    return _solution_sdpa(queries, keys, values, scale=scale, mask=mask)[..., :1]  # (B, H, L_q, 1)


@pytest.mark.parametrize("snippet, name", [(EXERCISE_01_SNIPPET, "scaled_dot_product_attention"),
                                           (EXERCISE_03_SNIPPET, "masked_attention")])
@pytest.mark.parametrize("answer, message", [(_untouched, r"^Finish exercise 0[13]\.[36] first"),
                                             (_one_value_column, r"^Your function raised ValueError: .*L_q")])
def test_exercise_snippets_say_one_line_instead_of_a_traceback(snippet, name, answer, message, capsys):
    namespace = {"mx": mx, "nn": nn, "math": math, name: answer}
    exec(snippet, namespace)
    assert namespace["comparison"] is None
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and re.search(message, out), out


def _softmax_over_queries(queries, keys, values, mask, return_weights):
    scores = (queries * queries.shape[-1] ** -0.5) @ keys.swapaxes(-1, -2)  # (B, H, Lq, Lk)
    weights = mx.softmax(scores, axis=-2)  # the bug
    return weights @ values, weights


class SoftmaxOverQueries(MultiHeadAttention):
    """A learner's bug: the softmax runs over the queries (axis -2) instead of the keys."""

    def __call__(self, queries, keys, values, mask=None, *, return_weights=False):
        from mhacourse.attention.multi_head import forward

        return forward(self, queries, keys, values, mask, return_weights, attend=_softmax_over_queries)


def test_a_buggy_layers_explorer_shows_its_own_wrong_weights(setup):
    layer, x = setup
    buggy = SoftmaxOverQueries(32, 4)
    buggy.update(layer.parameters())
    assert np.abs(np.array(buggy(x, x, x) - layer(x, x, x))).max() > 1e-3  # the outputs differ
    right, wrong = AttentionExplorer(layer, x), AttentionExplorer(buggy, x)
    assert np.abs(wrong.shown_weights() - right.shown_weights()).max() > 0.05  # and so does the picture
    _, own = buggy(x, x, x, return_weights=True)
    np.testing.assert_allclose(wrong.shown_weights(), np.array(own[0]), atol=ATOL_16)
    assert "forward pass" in wrong._note
    # MLX's layer has no return_weights: recomputed from the projections, and the subtitle says so.
    mlx_layer = nn.MultiHeadAttention(32, 4)
    mlx_layer.update(layer.parameters())
    assert "recomputed from query_proj and key_proj" in AttentionExplorer(mlx_layer, x)._note
    right.scale = 0.5
    assert "recomputed" in right._note


def test_precomputed_causal_weights_show_their_mask(setup):
    layer, x = setup
    _, w = layer(x, x, x, mask="causal", return_weights=True)
    explorer = AttentionExplorer(weights=[w, w], tokens=TOKENS)
    assert explorer.mask == "given" and "causal (detected" in explorer._meta["mask_labels"]["given"]
    L = len(TOKENS)
    keep = np.frombuffer(explorer._keep, np.uint8).reshape(L, L)
    np.testing.assert_array_equal(keep, np.tril(np.ones((L, L), np.uint8)))  # grey above the diagonal
    np.testing.assert_allclose(explorer.shown_weights(1), np.array(w[0]), atol=ATOL_16)
    _, plain = layer(x, x, x, return_weights=True)
    assert AttentionExplorer(weights=plain).mask == "none"  # nothing to detect


def test_every_request_is_answered_with_weights_or_an_error(setup):
    layer, x = setup
    explorer = AttentionExplorer(layer, x)
    revision = explorer._revision
    explorer._request += 1  # the browser asks again with nothing changed: it still gets an answer
    assert explorer._revision == revision + 1 and explorer._error == ""
    with explorer.hold_trait_notifications():  # a control and its request number arrive together
        explorer.scale, explorer._request = 0.5, explorer._request + 1
    assert explorer._revision == revision + 2  # one answer, not two

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    explorer.source.codes = broken
    explorer.scale = 0.7
    assert explorer._revision == revision + 3 and explorer._error == "RuntimeError: out of memory"


def test_compare_and_stepper_are_widgets_of_their_own(setup):
    from mhacourse.viz.explorer import Compare, ExplorerBase, Stepper

    layer, x = setup
    _, w = layer(x, x, x, return_weights=True)
    assert isinstance(AttentionExplorer.compare(w, w), Compare)
    stepper = AttentionExplorer.stepper(layer, x, head=1)
    assert isinstance(stepper, Stepper) and isinstance(stepper, ExplorerBase)
    assert [i["name"] for i in stepper._meta["inputs"]] == ["Q", "K", "V"] and len(stepper._extra["inputs"]) == 3


def test_one_mask_rule_everywhere():
    from mhacourse.viz.masking import keep_of, mask_to_numpy

    additive = np.array([[0.0, -1e9], [0.0, 0.0]], np.float32)
    assert mask_to_numpy(additive).dtype == np.bool_  # only 0 and blocked: a boolean mask
    assert mask_to_numpy(additive, as_boolean=False).dtype == np.float32
    bias = np.array([[0.0, -2.0], [0.0, 0.0]], np.float32)
    assert mask_to_numpy(bias).dtype == np.float32  # a bias stays a number...
    np.testing.assert_array_equal(keep_of(bias, 2, 2), np.ones((2, 2), bool))  # ...and blocks nothing
    np.testing.assert_array_equal(keep_of("causal", 2, 3), [[True, True, False], [True, True, True]])


def test_projections_and_scale_never_come_from_the_layers_own_methods(setup):
    layer, x = setup

    class Odd(MultiHeadAttention):
        scale = 123.0  # a learner may set any attribute

        def project(self, queries, keys, values):  # a learner's own helper, with another meaning
            raise AssertionError("project() of the layer must not be called")

    odd = Odd(32, 4)
    odd.update(layer.parameters())
    q, k, v = project_heads(odd, x)
    expected = project(layer, x, x, x)
    for got, want in zip((q, k, v), expected):
        np.testing.assert_allclose(np.array(got), np.array(want), atol=1e-6)
    stepper = AttentionExplorer.stepper(odd, x, head=1, tokens=TOKENS)
    np.testing.assert_allclose(stepper.steps[1]["matrix"], stepper.steps[0]["matrix"] * math.sqrt(1 / 8), rtol=1e-6)


def test_a_control_change_sends_only_the_layer_or_the_grid_shown(comm):
    """Long inputs: the build sends one layer and the thumbnails; a change recomputes only what is shown."""
    rng = np.random.default_rng(0)
    layers, heads, n = 3, 2, 300
    weights = [softmax(rng.standard_normal((heads, n, n)).astype(np.float32) * 3) for _ in range(layers)]
    import mhacourse.viz.explorer as module

    small = module.ALL_AT_BUILD
    module.ALL_AT_BUILD = 0  # as for 12 layers x 12 heads x 1024 tokens, at a size quick to test
    try:
        explorer = AttentionExplorer(weights=weights)
    finally:
        module.ALL_AT_BUILD = small
    (opened,) = [c for c in comm if "_meta" in c.opened["data"]["state"]]
    sizes = {tuple(p): len(b) for p, b in zip(opened.opened["data"]["buffer_paths"], opened.opened["buffers"])}
    assert sizes[("_weights", 0)] == heads * n * n * 2 and sizes[("_weights", 1)] == sizes[("_weights", 2)] == 0
    meta = explorer._meta
    assert (meta["thumb_rows"], meta["thumb_cols"], meta["thumb_key_block"]) == (64, 60, 5)
    assert sizes[("_thumbs",)] == layers * heads * 64 * 60

    def browser(state):
        explorer._handle_msg({"content": {"data": {"method": "update", "state": state, "buffer_paths": []}},
                              "buffers": []})
        data, buffers = opened.messages[-1]
        return data["state"], dict(zip(map(tuple, data["buffer_paths"]), buffers))

    # Showing layer 2, the browser moves the scale: layer 2 alone is recomputed and sent.
    state, buffers = browser({"scale": 2.0, "_want": "layer:2", "_request": 1})
    assert {k: len(v) for k, v in buffers.items()} == {("_weights", 0): 0, ("_weights", 1): 0,
                                                       ("_weights", 2): heads * n * n * 2}
    assert state["_generation"] == state["_weights_generation"] == 1
    expected = softmax(2 * np.log(weights[2]))
    np.testing.assert_allclose(decode(np.frombuffer(buffers[("_weights", 2)], np.uint16)).reshape(heads, n, n),
                               expected, atol=ATOL_16)
    # Then it opens layer 0 at the same settings: one layer again, same generation.
    state, buffers = browser({"_want": "layer:0", "_request": 2})
    assert len(buffers[("_weights", 0)]) == heads * n * n * 2 and "_generation" not in state
    # In the grid, a mask change sends the thumbnails only: every 64th-ish query, keys max-pooled by 5.
    state, buffers = browser({"mask": "causal", "_want": "grid", "_request": 3})
    assert set(buffers) == {("_thumbs",), ("_keep",), ("_thumb_keep",)} and state["_thumbs_generation"] == 2
    thumbs = decode(np.frombuffer(buffers[("_thumbs",)], np.uint8), 8).reshape(layers, heads, 64, 60)
    rows = np.unique(np.linspace(0, n - 1, 64).round().astype(int))
    causal = np.tril(np.ones((n, n), dtype=bool))
    for layer in range(layers):
        kept = np.where(causal, np.array(weights[layer]) ** 2, 0)
        full = (kept / kept.sum(-1, keepdims=True))[:, rows]  # (H, 64, n)
        np.testing.assert_allclose(thumbs[layer], full.reshape(heads, 64, 60, 5).max(-1), atol=2 / 255)
    keep = np.frombuffer(buffers[("_thumb_keep",)], np.uint8).reshape(64, 60)
    np.testing.assert_array_equal(keep, causal[rows].reshape(64, 60, 5).any(-1))


def test_a_large_layer_goes_one_head_at_a_time(monkeypatch, comm):
    """Beyond WHOLE_LAYER weights a layer: the build sends head 0; the browser asks for the heads it shows."""
    import mhacourse.viz.explorer as module

    rng = np.random.default_rng(1)
    layers, heads, n = 2, 4, 40
    weights = [softmax(rng.standard_normal((heads, n, n)).astype(np.float32) * 3) for _ in range(layers)]
    monkeypatch.setattr(module, "ALL_AT_BUILD", 0)
    monkeypatch.setattr(module, "WHOLE_LAYER", heads * n * n - 1)
    explorer = AttentionExplorer(weights=weights)
    (opened,) = [c for c in comm if "_meta" in c.opened["data"]["state"]]
    state = opened.opened["data"]["state"]
    sizes = {tuple(p): len(b) for p, b in zip(opened.opened["data"]["buffer_paths"], opened.opened["buffers"])}
    assert state["_meta"]["per_head"] and state["_weights_heads"] == [[0], []]
    assert sizes[("_weights", 0)] == n * n * 2 and sizes[("_weights", 1)] == 0

    def browser(change):
        explorer._handle_msg({"content": {"data": {"method": "update", "state": change, "buffer_paths": []}},
                              "buffers": []})
        data, buffers = opened.messages[-1]
        return data["state"], dict(zip(map(tuple, data["buffer_paths"]), buffers))

    # The lines view overlays heads 3 and 1 of layer 1 under a causal mask at scale 2: those two, in order.
    state, buffers = browser({"scale": 2.0, "mask": "causal", "_want": "layer:1:3,1", "_request": 1})
    assert state["_weights_heads"] == [[], [1, 3]] and len(buffers[("_weights", 1)]) == 2 * n * n * 2
    causal = np.tril(np.ones((n, n), dtype=bool))
    kept = np.where(causal, weights[1] ** 2, 0)  # softmax(2 log w) over the kept keys
    expected = kept / kept.sum(-1, keepdims=True)
    got = decode(np.frombuffer(buffers[("_weights", 1)], np.uint16)).reshape(2, n, n)
    np.testing.assert_allclose(got, expected[[1, 3]], atol=ATOL_16)
    # "layer:L" still asks for every head; the decoded weights agree with the per-head ones.
    state, buffers = browser({"_want": "layer:1", "_request": 2})
    assert state["_weights_heads"] == [[], [0, 1, 2, 3]]
    np.testing.assert_allclose(explorer.shown_weights(1), expected, atol=ATOL_16)
    # A request naming no valid head falls back to every head, never to an error.
    state, _ = browser({"_want": "layer:0:9", "_request": 3})
    assert state["_weights_heads"] == [[0, 1, 2, 3], []] and explorer._error == ""
    # Python steers to layer 1, head 2, then changes the scale: that head goes, with the thumbnails.
    explorer.layer, explorer.head = 1, 2
    explorer.scale = 0.5
    assert explorer._weights_heads == [[], [2]] and len(explorer._weights[1]) == n * n * 2 and len(explorer._thumbs)
    kept = np.where(causal, weights[1][2] ** 0.5, 0)  # the causal mask the browser chose stays
    np.testing.assert_allclose(decode(np.frombuffer(explorer._weights[1], np.uint16)).reshape(n, n),
                               kept / kept.sum(-1, keepdims=True), atol=ATOL_16)


def test_per_head_codes_equal_the_whole_layers_under_every_mask(setup):
    """LayerSource and WeightsSource: codes of some heads are those heads of the whole layer's codes."""
    layer, x = setup
    H, L = layer.num_heads, x.shape[1]
    rng = np.random.default_rng(2)
    per_head_mask = mx.array(rng.random((1, H, L, L)) > 0.3) | mx.eye(L, dtype=mx.bool_)  # (1, H, L, L)
    additive = mx.array(np.where(rng.random((L, L)) > 0.5, 0.0, -2.0).astype(np.float32))  # (L, L) bias
    sources = [AttentionExplorer(layer, x, mask=per_head_mask).source,
               WeightsSource([np.array(reference_weights(layer, x)[0])])]
    for source in sources:
        for mask in (None, "causal", per_head_mask, additive):
            if isinstance(source, WeightsSource) and mask is additive:
                continue  # precomputed weights take masks that block, not biases
            for scale in (source.default_scale, 0.5, 0.0):
                whole = source.codes(0, scale, mask, 16)
                np.testing.assert_array_equal(source.codes(0, scale, mask, 16, heads=[3, 1]), whole[[3, 1]])


def test_neuron_view_sends_one_heads_queries_and_keys_on_demand(setup, comm):
    layer, x = setup
    explorer = AttentionExplorer(layer, x, tokens=TOKENS)
    assert explorer._meta["has_vectors"] and not len(explorer._vectors)  # nothing sent at build
    sent = len(comm[-1].messages)
    explorer._want_vectors = "0:2"  # the browser asks for head 2's vectors
    data, buffers = comm[-1].messages[-1]
    assert len(comm[-1].messages) == sent + 2  # its request echoed, then one answer
    assert data["state"]["_vectors_meta"] == {"layer": 0, "head": 2, "dims": 8, "n_queries": 9, "n_keys": 9}
    (vectors,) = buffers
    assert memoryview(vectors).nbytes == (9 + 9) * 8 * 4  # one head: Lq x D_h and Lk x D_h, float32
    values = np.frombuffer(vectors, np.float32)
    q, k = values[:72].reshape(9, 8), values[72:].reshape(9, 8)
    # Independent: the layer's query and key projections, split into heads as MLX does.
    q_ref = np.array(x[0] @ layer.query_proj.weight.T).reshape(9, 4, 8)[:, 2]
    k_ref = np.array(x[0] @ layer.key_proj.weight.T).reshape(9, 4, 8)[:, 2]
    np.testing.assert_allclose(q, q_ref, atol=1e-5)
    np.testing.assert_allclose(k, k_ref, atol=1e-5)
    # What the view draws: the products q_d k_d of a cell add up, times the scale, to its score.
    products = q[5] * k[3]  # (D_h,)
    scores = SCALE * q @ k.T
    assert products.sum() * SCALE == pytest.approx(scores[5, 3], rel=1e-5)
    np.testing.assert_allclose(softmax(scores), explorer.state.weights[2], atol=1e-5)
    precomputed = AttentionExplorer(weights=explorer.state.weights)
    assert not precomputed._meta["has_vectors"]
    precomputed._want_vectors = "0:1"
    assert "precomputed weights carry no queries or keys" in precomputed._vectors_meta["error"]


def test_encoder_decoder_input_different_query_and_key_tokens(setup):
    layer, _ = setup
    source_tokens = "le chat est assis sur le tapis rouge ici".split()  # 9 keys (encoder)
    target_tokens = "the cat sat down".split()  # 4 queries (decoder)
    mx.random.seed(5)
    encoded = mx.random.normal((1, len(source_tokens), 32))
    decoded = mx.random.normal((1, len(target_tokens), 32))
    explorer = AttentionExplorer(layer, decoded, encoded, tokens=target_tokens, key_tokens=source_tokens)
    assert (explorer.source.n_queries, explorer.source.n_keys) == (4, 9)
    assert explorer._meta["query_labels"] == target_tokens and explorer._meta["key_labels"] == source_tokens
    # Independent NumPy: queries from the decoder, keys from the encoder.
    q = np.array(decoded[0] @ layer.query_proj.weight.T).reshape(4, 4, 8).transpose(1, 0, 2)
    k = np.array(encoded[0] @ layer.key_proj.weight.T).reshape(9, 4, 8).transpose(1, 0, 2)
    expected = softmax(SCALE * q @ k.transpose(0, 2, 1))  # (H, 4, 9)
    _, returned = layer(decoded, encoded, encoded, return_weights=True)
    np.testing.assert_allclose(np.array(returned[0]), expected, atol=1e-5)
    np.testing.assert_allclose(explorer.state.weights, expected, atol=1e-5)
    np.testing.assert_allclose(explorer.shown_weights(), expected, atol=ATOL_16)
    # A causal mask with L_q != L_k is aligned to the lower right (as in MLX): query i sees keys <= i + 5.
    explorer.mask = "causal"
    weights = explorer.state.weights
    blocked = np.arange(9)[None, :] > np.arange(4)[:, None] + 5
    assert np.all(weights[:, blocked] == 0) and np.all(weights[:, ~blocked] > 0)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    # Padding keeps the first valid_keys keys of the encoder.
    explorer.mask, explorer.valid_keys = "padding", 6
    assert np.all(explorer.state.weights[..., 6:] == 0)
    # The grid's thumbnails, the picture and the neuron view all use both lengths.
    assert explorer._meta["thumb_rows"] == 4 and explorer._meta["thumb_cols"] == 9
    fig = explorer.static_figure()
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == source_tokens
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == target_tokens
    assert "4 queries × 9 keys" in explorer.picture_description()
    q0, k0 = explorer.vectors(head=0)
    assert q0.shape == (4, 8) and k0.shape == (9, 8)
    with pytest.raises(ValueError, match="key_tokens has 4 entries"):
        AttentionExplorer(layer, decoded, encoded, tokens=target_tokens, key_tokens=target_tokens)
