"""The shape and weight diagrams: what they print, checked independently, and a look in Chromium.

The last test shows every diagram on one HTML page in a real Chromium (the
harness of test_browser.py) and saves a screenshot of each under
``artifacts/diagrams/``.
"""

import base64
import math
import re
from pathlib import Path

import matplotlib
import mlx.core as mx
import numpy as np
import pytest
from matplotlib.figure import Figure

matplotlib.use("Agg")

from mhacourse import MultiHeadAttention  # noqa: E402
from mhacourse.viz import diagrams  # noqa: E402
from mhacourse.viz.static import figure_to_png  # noqa: E402
from tests.browser_harness import chromium, require_browser  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "diagrams"
CELL_LABEL = re.compile(r"^\d+,\d+$")


def texts(fig):
    """Every string drawn in the figure, in drawing order (titles included)."""
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text) if t.get_text()]


def symbolic_to_numbers(symbolic, sizes):
    """``"(B, H, L_q, D_h)"`` -> ``(2, 3, 5, 4)`` with ``sizes`` for each letter."""
    return tuple(math.prod(sizes[letter] for letter in name.split("·"))
                 for name in symbolic.strip("()").split(", "))


@pytest.mark.parametrize("B, L_q, L_k, dims, num_heads", [(2, 5, 5, 12, 3), (1, 3, 7, 16, 4)])
def test_shape_flow_agrees_with_the_layer_and_its_letters(B, L_q, L_k, dims, num_heads):
    steps = diagrams.shape_flow(B, L_q, dims, num_heads, L_k=L_k)
    sizes = {"B": B, "L_q": L_q, "L_k": L_k, "dims": dims, "H": num_heads, "D_h": dims // num_heads}
    for _, symbolic, shape, _ in steps:
        assert symbolic_to_numbers(symbolic, sizes) == tuple(shape), symbolic

    layer = MultiHeadAttention(dims, num_heads)
    queries, keys = mx.zeros((B, L_q, dims)), mx.zeros((B, L_k, dims))
    output, weights = layer(queries, keys, keys, return_weights=True)
    by_name = {name: shape for name, _, shape, _ in steps}
    assert tuple(by_name["weights"]) == weights.shape
    assert tuple(by_name["output"]) == output.shape

    shown = texts(diagrams.plot_shape_flow(B, L_q, dims, num_heads, L_k=L_k))
    for _, symbolic, shape, _ in steps:
        assert symbolic in shown and f"= {tuple(shape)}" in shown


def test_split_merge_cells_follow_numpys_reshape_and_transpose():
    L, dims, H = 4, 6, 3
    labels = [t for t in texts(diagrams.plot_split_merge_heads(L, dims, H)) if CELL_LABEL.match(t)]
    flat = np.arange(L * dims)
    name = np.vectorize(lambda i: f"{i // dims},{i % dims}")
    x = name(flat.reshape(L, dims))
    heads = name(flat.reshape(L, H, dims // H).transpose(1, 0, 2))        # (H, L, D_h)
    assert labels == [*x.ravel(), *heads.ravel(), *x.ravel()]              # merge gives x back


def test_reshape_mistake_shows_whole_positions_in_one_head():
    L, dims, H = 4, 6, 3
    labels = [t for t in texts(diagrams.plot_reshape_mistake(L, dims, H)) if CELL_LABEL.match(t)]
    flat = np.arange(L * dims)
    name = np.vectorize(lambda i: f"{i // dims},{i % dims}")
    right = name(flat.reshape(L, H, dims // H).transpose(1, 0, 2)).ravel()
    wrong = name(flat.reshape(H, L, dims // H)).ravel()
    assert labels == [*right, *wrong]
    assert wrong[2] == "0,2"        # "head 0, position 1" is head 1's features of position 0


def test_worked_example_prints_the_softmax_numbers():
    q = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    k = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]])
    v = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    fig = diagrams.plot_worked_example(mx.array(q), mx.array(k), mx.array(v), tokens=["a", "b", "c"])
    shown = texts(fig)
    scaled = q @ k.T / np.sqrt(2)
    weights = np.exp(scaled) / np.exp(scaled).sum(axis=-1, keepdims=True)
    for value in (*scaled.ravel(), *weights.ravel(), *(weights @ v).ravel()):
        assert f"{value:.2f}" in shown
    assert "3" in shown and "softmax" in shown    # integer scores print as integers


def test_plot_matrices_and_its_errors():
    fig = diagrams.plot_matrices({"A": mx.array([[1, 2], [3, 4]]), "b": [0.5, 1.25]}, title="t")
    assert isinstance(fig, Figure)
    assert {"1", "4", "0.50", "1.25", "A", "b", "t"} <= set(texts(fig))
    with pytest.raises(ValueError, match="matrices"):
        diagrams.plot_matrices({"cube": mx.zeros((2, 2, 2))})
    with pytest.raises(ValueError, match="keys"):
        diagrams.plot_worked_example(mx.zeros((3, 2)), mx.zeros((3, 4)), mx.zeros((3, 2)))


def test_packed_in_proj_names_the_row_slices():
    shown = texts(diagrams.plot_packed_in_proj(dims=6, num_heads=3))
    for piece in ("rows [0:6]", "rows [6:12]", "rows [12:18]", "in_proj_weight\n(18, 6)",
                  "key_proj.weight (6, 6)\nkey_proj.bias (6,)"):
        assert piece in shown
    assert any("D_h = 2" in t for t in shown)


@pytest.mark.parametrize("plot", [diagrams.plot_shape_flow, diagrams.plot_split_merge_heads,
                                  diagrams.plot_reshape_mistake, diagrams.plot_packed_in_proj])
def test_sizes_that_do_not_split_into_heads_are_refused(plot):
    with pytest.raises(ValueError, match=r"dims \(10\) must be divisible by num_heads \(4\)"):
        plot(dims=10, num_heads=4)


def test_transformer_overview_names_every_part_in_words_and_saves_a_picture():
    fig = diagrams.plot_transformer_overview()
    shown = "\n".join(texts(fig))
    for words in ("a transformer block (pre-norm)", "LayerNorm", "multi-head attention", "MLP",
                  "residual: x + attention(norm(x))", "residual: x + MLP(norm(x))", "queries", "keys", "values",
                  "encoder self-attention", "masked self-attention", "causal mask", "cross-attention",
                  "queries from the decoder", "keys and values\nfrom the encoder", "encoder output"):
        assert words in shown, words
    assert shown.count("multi-head attention") == 5     # the block's, and three in the encoder-decoder + key
    # Only Okabe-Ito colours (and greys) fill boxes and arrows, so red-green colour blindness loses nothing.
    allowed = {
        matplotlib.colors.to_hex(c) for c in (*diagrams.OKABE_ITO.values(), "#DDDDDD", "#333333", "white", "black")
    }
    fills = {matplotlib.colors.to_hex(patch.get_facecolor(), keep_alpha=False)
             for patch in fig.findobj(matplotlib.patches.Patch) if patch.get_fill()}
    fills.discard("#ffffff")
    assert fills <= allowed, fills - allowed
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    png = figure_to_png(fig, dpi=80)
    (ARTIFACTS / "transformer_overview.png").write_bytes(png)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_the_overview_draws_the_blocks_the_course_trains():
    """Left panel = capstone.TransformerBlock; cross-attention = seq2seq's: queries from x, keys/values memory."""
    from mhacourse.capstone import TransformerBlock
    from mhacourse.seq2seq import _Block

    mx.random.seed(0)
    x = mx.random.normal((2, 5, 8))                                    # (B, L, dims)
    block = TransformerBlock(8, 2)
    h = block.attention_norm(x)
    x1 = x + block.attention(h, h, h, mask="causal")                   # norm -> MHA -> residual add
    expected = x1 + block.mlp(block.mlp_norm(x1))                      # norm -> MLP -> residual add
    assert mx.allclose(block(x)[0], expected, atol=1e-5)

    decoder = _Block(8, 2, cross=True)
    memory = mx.random.normal((2, 7, 8))                               # encoder output (B, L_k, dims)
    h = decoder.self_norm(x)
    x1 = x + decoder.self_attention(h, h, h, mask="causal")
    x2 = x1 + decoder.cross_attention(decoder.cross_norm(x1), memory, memory)   # queries: decoder
    expected = x2 + decoder.mlp(decoder.mlp_norm(x2))
    out, weights = decoder(x, "causal", memory)
    assert mx.allclose(out, expected, atol=1e-5)
    assert weights.shape == (2, 2, 5, 7)                               # (B, H, L_q, L_k)


def all_diagrams():
    q = mx.array([[1, 0], [0, 2], [1, 1]])
    kv = mx.array([[1, 0], [0, 1], [2, 1]])
    return {
        "shape_flow": diagrams.plot_shape_flow(),
        "split_merge_heads": diagrams.plot_split_merge_heads(),
        "reshape_mistake": diagrams.plot_reshape_mistake(),
        "worked_example": diagrams.plot_worked_example(q, kv, kv, tokens=["a", "b", "c"]),
        "packed_in_proj": diagrams.plot_packed_in_proj(),
        "transformer_overview": diagrams.plot_transformer_overview(),
    }


def test_every_diagram_in_a_real_browser(tmp_path):
    require_browser()
    sections = []
    for name, fig in all_diagrams().items():
        data = base64.b64encode(figure_to_png(fig, dpi=80)).decode()
        sections.append((name, f'<figure id="{name}"><img src="data:image/png;base64,{data}">'
                               f"<figcaption>{name}</figcaption></figure>"))
    page_path = tmp_path / "diagrams.html"
    page_path.write_text("<!doctype html><html><head><style>figure { display: table; margin: 8px; }</style>"
                         "</head><body>" + "".join(html for _, html in sections) + "</body></html>")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with chromium(tmp_path / "profile", downloads=False) as context:
        page = context.pages[0] if context.pages else context.new_page()
        page.goto(page_path.as_uri())
        for name, _ in sections:
            figure = page.locator(f"#{name}")
            size = figure.locator("img").evaluate("img => [img.complete, img.naturalWidth, img.naturalHeight]")
            assert size[0] and size[1] > 200 and size[2] > 150, (name, size)
            figure.screenshot(path=str(ARTIFACTS / f"{name}.png"))
            assert (ARTIFACTS / f"{name}.png").stat().st_size > 5_000
