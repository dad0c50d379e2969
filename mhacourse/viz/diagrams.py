"""Diagrams of the layer's shapes and weights, drawn with matplotlib.

Every picture is computed, not drawn by hand: the shape flow runs the layer's
steps on zero arrays and prints the shapes MLX returns, the split/merge
pictures label each cell with the (position, feature) it came from after
``split_heads``/``merge_heads`` ran, and the worked example prints the numbers
MLX computes. A picture therefore cannot drift from the code it explains.

>>> from mhacourse.viz.diagrams import plot_shape_flow
>>> fig = plot_shape_flow(B=2, L_q=5, dims=12, num_heads=3)
"""

import math

import matplotlib
import mlx.core as mx
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

from ..attention.multi_head import merge_heads, split_heads
from ..attention.validation import check_divisible, check_size
from .static import register_png_formatter, to_numpy

__all__ = [
    "shape_flow",
    "plot_shape_flow",
    "plot_split_merge_heads",
    "plot_reshape_mistake",
    "plot_matrices",
    "plot_worked_example",
    "plot_packed_in_proj",
    "plot_induction_training",
    "plot_ablation",
    "OKABE_ITO",
    "plot_transformer_overview",
]

HEAD_COLOURS = matplotlib.colormaps["tab10"].colors
KIND_COLOURS = {"model": "#dbe9f6", "heads": "#fde3c8", "weights": "#d9f0d3"}
QKV_COLOURS = {"q": "#4c78a8", "k": "#f58518", "v": "#54a24b"}
FONT = 12
# Okabe & Ito's palette: its colours stay apart under red-green (and blue-yellow) colour blindness.
OKABE_ITO = {"orange": "#E69F00", "sky blue": "#56B4E9", "bluish green": "#009E73", "yellow": "#F0E442",
             "blue": "#0072B2", "vermillion": "#D55E00", "reddish purple": "#CC79A7", "grey": "#999999"}


def _figure(width, height):
    """A figure without a layout engine: the diagrams place everything themselves (fast to draw)."""
    register_png_formatter()
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _canvas(width, height, title_inches=0.0):
    """A figure with one axes-free drawing area, leaving ``title_inches`` at the top."""
    fig = _figure(width, height)
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.98 - title_inches / height))
    ax.axis("off")
    return fig, ax


def _panel_rows(rows, title_inches=0.0, cell=0.55, label_chars=3, title_chars=None):
    """Axes for rows of matrix panels, every cell ``cell`` inches square.

    A panel whose title is wider than the panel gets a slot as wide as its title (the panel centred
    in it), so that neighbouring titles never overlap.

    Args:
        rows (list[list[tuple(int, int)]]): The ``(n_rows, n_cols)`` of each panel, row by row.
        title_inches (float): Room for a title above each row of panels.
        label_chars (int): The longest row label, to leave room on the left of each panel.
        title_chars (list[list[int]], optional): The length of each panel's title, row by row.

    Returns:
        tuple(Figure, list[list[Axes]], list[float]): The figure, the axes row by row, and the
        top of each row of panels in figure coordinates (for its title).
    """
    gap = 0.35 + 0.09 * label_chars      # row labels of the next panel
    head, foot = 0.45, 0.4               # panel title, column labels
    title_chars = title_chars or [[0] * len(row) for row in rows]
    slots = [[max(c * cell, 0.11 * n) for (_, c), n in zip(row, chars)] for row, chars in zip(rows, title_chars)]
    widths = [sum(row) + gap * len(row) for row in slots]
    heights = [max(r for r, _ in row) * cell + head + foot + title_inches for row in rows]
    W, H = max(widths) + 0.2, sum(heights)
    fig = _figure(W, H)
    axes, tops, y = [], [], H
    for row, height, slot_row in zip(rows, heights, slots):
        tops.append(y / H)
        x, line = gap, []
        for (r, c), slot in zip(row, slot_row):
            top = y - title_inches - head
            left = x + (slot - c * cell) / 2
            line.append(fig.add_axes((left / W, (top - r * cell) / H, c * cell / W, r * cell / H)))
            x += slot + gap
        axes.append(line)
        y -= height
    return fig, axes, tops


def _check_heads(dims, num_heads):
    check_size("dims", dims)
    check_size("num_heads", num_heads)
    check_divisible("dims", dims, num_heads)
    return dims // num_heads


def shape_flow(B=2, L_q=5, dims=12, num_heads=3, L_k=None):
    """Run the layer's steps on zero arrays and record every shape.

    Args:
        B (int): The batch size. Default: ``2``.
        L_q (int): The number of queries. Default: ``5``.
        dims (int): The model width; must be divisible by ``num_heads``.
            Default: ``12``.
        num_heads (int): The number of heads ``H``. Default: ``3``.
        L_k (int, optional): The number of keys. Default: ``L_q``.

    Returns:
        list[tuple(str, str, tuple, str)]: One ``(name, symbolic shape, shape,
        step to the next)`` per stage, from the queries to the output.
    """
    for name, value in (("B", B), ("L_q", L_q)):
        check_size(name, value)
    L_k = check_size("L_k", L_k, default=L_q)
    head_dims = _check_heads(dims, num_heads)
    H = num_heads
    queries = mx.zeros((B, L_q, dims))                        # (B, L_q, dims)
    keys = mx.zeros((B, L_k, dims))                           # (B, L_k, dims)
    weight = mx.zeros((dims, dims))                           # a Linear's (out, in)
    q = queries @ weight.T                                    # (B, L_q, H·D_h)
    q_split = q.reshape(B, L_q, H, head_dims)                 # (B, L_q, H, D_h)
    q_heads = q_split.transpose(0, 2, 1, 3)                   # (B, H, L_q, D_h)
    k_heads = split_heads(keys @ weight.T, H)                 # (B, H, L_k, D_h)
    weights = mx.softmax(q_heads @ k_heads.swapaxes(-1, -2), axis=-1)   # (B, H, L_q, L_k)
    per_head = weights @ k_heads                              # (B, H, L_q, D_h)
    merged = merge_heads(per_head)                            # (B, L_q, H·D_h)
    output = merged @ weight.T                                # (B, L_q, dims)
    return [
        ("queries", "(B, L_q, dims)", queries.shape,
         "query_proj: x @ W_qᵀ  (k, v: key_proj, value_proj)"),
        ("q", "(B, L_q, dims)", q.shape, "reshape: cut dims into H pieces of D_h"),
        ("q", "(B, L_q, H, D_h)", q_split.shape, "transpose(0, 2, 1, 3): heads forward"),
        ("q per head", "(B, H, L_q, D_h)", q_heads.shape,
         "softmax(q @ kᵀ · scale + mask),  k: (B, H, L_k, D_h)"),
        ("weights", "(B, H, L_q, L_k)", weights.shape, "@ v,  v: (B, H, L_k, D_h)"),
        ("per-head output", "(B, H, L_q, D_h)", per_head.shape,
         "transpose(0, 2, 1, 3), then reshape"),
        ("merged", "(B, L_q, H·D_h)", merged.shape, "out_proj:  x @ W_oᵀ"),
        ("output", "(B, L_q, dims)", output.shape, ""),
    ]


def _kind(symbolic):
    if "L_k" in symbolic:
        return "weights"
    return "heads" if "D_h" in symbolic and "H·" not in symbolic else "model"


def plot_shape_flow(B=2, L_q=5, dims=12, num_heads=3, L_k=None):
    """The shape of the data after every step of multi-head attention.

    Boxes for full-width tensors are blue, per-head tensors orange and the
    attention weights green. Each box shows the shape in letters and the
    shape MLX returned for the given sizes.

    Args:
        B (int): The batch size. Default: ``2``.
        L_q (int): The number of queries. Default: ``5``.
        dims (int): The model width. Default: ``12``.
        num_heads (int): The number of heads ``H``. Default: ``3``.
        L_k (int, optional): The number of keys. Default: ``L_q``.

    Returns:
        matplotlib.figure.Figure: The diagram, top to bottom.
    """
    steps = shape_flow(B, L_q, dims, num_heads, L_k)
    fig, ax = _canvas(8.0, 1.15 * len(steps) + 0.6, title_inches=0.4)
    ax.set_xlim(0, 8.6)
    ax.set_ylim(-len(steps) * 1.5 + 0.4, 0.6)
    head_dims = dims // num_heads
    fig.suptitle(f"multi-head attention, B={B}, L_q={L_q}, L_k={L_k or L_q}, dims={dims}, "
                 f"H={num_heads}, D_h={head_dims}", fontsize=FONT + 1)
    for index, (name, symbolic, shape, step) in enumerate(steps):
        y = -index * 1.5
        ax.add_patch(FancyBboxPatch((0.1, y - 0.45), 4.6, 0.9, boxstyle="round,pad=0.05",
                                    facecolor=KIND_COLOURS[_kind(symbolic)], edgecolor="#555555"))
        ax.text(0.25, y + 0.15, name, fontsize=FONT - 2, color="#444444", va="center")
        ax.text(2.9, y + 0.15, symbolic, fontsize=FONT + 1, family="monospace", va="center",
                ha="center", weight="bold")
        ax.text(2.9, y - 0.22, "= " + str(tuple(shape)), fontsize=FONT - 1, family="monospace",
                va="center", ha="center", color="#333333")
        if step:
            ax.add_patch(FancyArrowPatch((2.1, y - 0.5), (2.1, y - 1.0), arrowstyle="-|>",
                                         mutation_scale=14, color="#333333"))
            ax.text(2.4, y - 0.75, step, fontsize=FONT - 1, va="center", family="monospace")
    return fig


def _cell(ax, x, y, colour, text, size=1.0, font=FONT - 3, alpha=1.0):
    ax.add_patch(Rectangle((x, y), size, size, facecolor=to_rgba(colour, alpha),
                           edgecolor="white", linewidth=1.5))
    if text:
        ax.text(x + size / 2, y + size / 2, text, ha="center", va="center", fontsize=font)


def _origin_colour(position, feature, head_dims, length):
    """Colour of a cell that came from ``(position, feature)``: hue = head, shade = position."""
    return HEAD_COLOURS[(feature // head_dims) % len(HEAD_COLOURS)], 0.35 + 0.65 * (length - position) / length


def _draw_origins(ax, origins, x0, y0, dims, head_dims, length, title):
    """Draw a ``(rows, cols)`` grid of flat indices ``position * dims + feature``."""
    rows, cols = origins.shape
    for r in range(rows):
        for c in range(cols):
            position, feature = divmod(int(origins[r, c]), dims)
            colour, alpha = _origin_colour(position, feature, head_dims, length)
            _cell(ax, x0 + c, y0 - r - 1, colour, f"{position},{feature}", alpha=alpha)
    ax.text(x0 + cols / 2, y0 + 0.35, title, ha="center", va="bottom", fontsize=FONT - 1,
            family="monospace")


def _origins(length, dims):
    """``(1, L, dims)`` whose every entry names its own position and feature."""
    return mx.arange(length * dims).reshape(1, length, dims)   # (B=1, L, dims)


def _head_panels(ax, heads, x0, y0, dims, head_dims, length, labels):
    """Draw ``(H, L, D_h)`` side by side, one titled grid per head; return the right edge."""
    x = x0
    for h in range(heads.shape[0]):
        _draw_origins(ax, heads[h], x, y0, dims, head_dims, length, labels[h])
        x += heads.shape[2] + 0.6
    return x


def _finish_blocks(ax, right, bottom, top=1.6):
    ax.set_xlim(-0.3, right + 0.3)
    ax.set_ylim(bottom - 0.3, top)
    ax.set_aspect("equal")


def plot_split_merge_heads(L=4, dims=6, num_heads=3):
    """Colour blocks of ``split_heads`` and ``merge_heads`` on one sequence.

    Each cell of ``x`` is labelled ``position,feature``; its hue is the head
    that owns the feature, its shade the position. The middle panels are what
    ``split_heads`` returns (one ``(L, D_h)`` grid per head), the right panel
    what ``merge_heads`` gives back: ``x`` again.

    Args:
        L (int): The sequence length. Default: ``4``.
        dims (int): The model width; must be divisible by ``num_heads``.
            Default: ``6``.
        num_heads (int): The number of heads ``H``. Default: ``3``.

    Returns:
        matplotlib.figure.Figure: ``x (L, dims)`` → ``split_heads`` →
        ``merge_heads``.
    """
    check_size("L", L)
    head_dims = _check_heads(dims, num_heads)
    x = _origins(L, dims)                                   # (1, L, dims)
    heads = split_heads(x, num_heads)                       # (1, H, L, D_h)
    merged = merge_heads(heads)                             # (1, L, H·D_h)
    fig, ax = _canvas(0.55 * (2 * dims + num_heads * (head_dims + 0.6) + 4), 0.55 * (L + 3) + 0.5)
    _draw_origins(ax, np.array(x[0]), 0, 0, dims, head_dims, L, f"x (L, dims) = ({L}, {dims})")
    right = _head_panels(ax, np.array(heads[0]), dims + 1.6, 0, dims, head_dims, L,
                         [f"head {h}" for h in range(num_heads)])
    ax.annotate("", (dims + 1.5, -L / 2), (dims + 0.1, -L / 2), arrowprops={"arrowstyle": "-|>"})
    ax.text(dims + 0.8, -L / 2 + 0.2, "split", ha="center", va="bottom", fontsize=FONT - 2)
    ax.text(dims + 1.6 + (right - dims - 2.2) / 2, -L - 0.7,
            f"split_heads(x, {num_heads}): (B, H, L, D_h) = (1, {num_heads}, {L}, {head_dims})",
            ha="center", va="top", fontsize=FONT - 2, family="monospace")
    _draw_origins(ax, np.array(merged[0]), right + 1.0, 0, dims, head_dims, L,
                  f"merge_heads: ({L}, H·D_h) = ({L}, {dims})")
    ax.annotate("", (right + 0.95, -L / 2), (right - 0.5, -L / 2), arrowprops={"arrowstyle": "-|>"})
    ax.text(right + 0.2, -L / 2 + 0.2, "merge", ha="center", va="bottom", fontsize=FONT - 2)
    ax.text(0, -L - 0.7, "cell = position,feature\ncolour = head owning the feature\n"
            "shade = position", va="top", fontsize=FONT - 3)
    _finish_blocks(ax, right + 1.0 + dims, -L - 1.6)
    return fig


def plot_reshape_mistake(L=4, dims=6, num_heads=3):
    """``split_heads`` next to the one-step ``reshape(B, H, L, D_h)`` mistake.

    Same labels as :func:`plot_split_merge_heads`. On the top row each head
    holds one colour (its own features) at every position; on the bottom row,
    reshaping ``(B, L, dims)`` straight to ``(B, H, L, D_h)`` gives the right
    shape but fills "head 0" with whole positions, so colours and positions
    interleave.

    Args:
        L (int): The sequence length. Default: ``4``.
        dims (int): The model width; must be divisible by ``num_heads``.
            Default: ``6``.
        num_heads (int): The number of heads ``H``. Default: ``3``.

    Returns:
        matplotlib.figure.Figure: Two rows of ``H`` grids, right then wrong.
    """
    check_size("L", L)
    head_dims = _check_heads(dims, num_heads)
    x = _origins(L, dims)                                        # (1, L, dims)
    right = split_heads(x, num_heads)                            # (1, H, L, D_h)
    wrong = x.reshape(1, num_heads, L, head_dims)                # (1, H, L, D_h), mixed up
    width = num_heads * (head_dims + 0.6) + 6
    fig, ax = _canvas(0.55 * width, 0.55 * (2 * L + 5) + 0.6)
    ax.text(0, 0.9, "right: reshape(B, L, H, D_h) then transpose(0, 2, 1, 3)", fontsize=FONT - 1,
            va="bottom", color="#1a7f37", weight="bold")
    _head_panels(ax, np.array(right[0]), 0, 0, dims, head_dims, L,
                 [f"head {h}" for h in range(num_heads)])
    top = -L - 2.4
    ax.text(0, top + 0.9, "wrong: reshape(B, H, L, D_h) at once (same shape, no error)",
            fontsize=FONT - 1, va="bottom", color="#b42318", weight="bold")
    _head_panels(ax, np.array(wrong[0]), 0, top, dims, head_dims, L,
                 [f"'head {h}'" for h in range(num_heads)])
    _finish_blocks(ax, num_heads * (head_dims + 0.6) + 0.2, top - L, top=2.0)
    return fig


def _format(value, integers):
    if not math.isfinite(value):
        return "-inf" if value < 0 else ("inf" if value > 0 else "nan")
    return str(int(value)) if integers else f"{value:.2f}"


def _annotated(ax, matrix, title, row_labels, col_labels, cmap, vmin=None, vmax=None):
    finite = np.where(np.isfinite(matrix), matrix, np.nan)
    image = ax.imshow(finite, cmap=cmap, aspect="equal", interpolation="nearest", vmin=vmin, vmax=vmax)
    shown = finite[np.isfinite(finite)]
    integers = bool(np.all(shown == np.round(shown)) and np.all(np.abs(shown) < 1e4))
    for (r, c), value in np.ndenumerate(matrix):
        red, green, blue, _ = image.cmap(image.norm(value)) if np.isfinite(value) else (1, 1, 1, 1)
        dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
        ax.text(c, r, _format(float(value), integers), ha="center", va="center", fontsize=FONT,
                color="white" if dark else "black")
    ax.set_xticks(range(matrix.shape[1]), col_labels, fontsize=FONT - 1)
    ax.set_yticks(range(matrix.shape[0]), row_labels, fontsize=FONT - 1)
    ax.tick_params(length=0)
    ax.set_title(title, fontsize=FONT + 1)


def plot_matrices(matrices, row_labels=None, col_labels=None, title=None, cmap="Blues", vmin=None,
                  vmax=None):
    """Small matrices side by side as heatmaps with their numbers in the cells.

    Args:
        matrices (dict[str, array]): Title -> 2-D array (or 1-D, shown as one
            row), drawn left to right. Integers print as integers, other
            numbers with two decimals.
        row_labels (list[str] or dict[str, list[str]], optional): Labels of
            the rows, for every panel or per title. Default: indices.
        col_labels (list[str] or dict[str, list[str]], optional): Labels of
            the columns, likewise. Default: indices.
        title (str, optional): A title above the panels.
        cmap (str): The colour map. Default: ``"Blues"``.
        vmin (float, optional): The value at the bottom of the colour map,
            shared by all panels. Default: each panel's smallest value.
        vmax (float, optional): The value at the top, likewise. Use
            ``vmin=0, vmax=1`` for attention weights, so that colours compare
            across panels. Default: each panel's largest value.

    Returns:
        matplotlib.figure.Figure: One annotated panel per matrix.
    """
    if not isinstance(matrices, dict) or not matrices:
        raise ValueError("matrices must be a non-empty dict of title -> 2-D array.")
    arrays = {}
    for name, matrix in matrices.items():
        array = to_numpy(matrix, name=f"matrices[{name!r}]").astype(np.float64)
        if array.ndim == 1:
            array = array[None, :]
        if array.ndim != 2:
            raise ValueError(f"matrices[{name!r}] must be 1-D or 2-D; got shape {array.shape}.")
        arrays[name] = array

    def labels(given, name, n):
        chosen = given.get(name) if isinstance(given, dict) else given
        return [str(i) for i in range(n)] if chosen is None else list(chosen)

    rows = {name: labels(row_labels, name, a.shape[0]) for name, a in arrays.items()}
    longest = max(len(label) for names in rows.values() for label in names)
    fig, axes, tops = _panel_rows([[a.shape for a in arrays.values()]], title_inches=0.4 * bool(title),
                                  label_chars=longest, title_chars=[[len(name) for name in arrays]])
    for ax, (name, array) in zip(axes[0], arrays.items()):
        _annotated(ax, array, name, rows[name], labels(col_labels, name, array.shape[1]), cmap, vmin, vmax)
    if title:
        fig.suptitle(title, fontsize=FONT + 2, y=tops[0] - 0.02)
    return fig


def plot_worked_example(queries, keys, values, scale=None, tokens=None):
    """Attention for one head, step by step, with every number printed.

    Args:
        queries (array): ``(L_q, D_h)``.
        keys (array): ``(L_k, D_h)``.
        values (array): ``(L_k, D_v)``.
        scale (float, optional): Multiplies the scores. Default:
            ``1 / sqrt(D_h)``.
        tokens (list[str], optional): Labels of the positions (used for
            queries and keys when ``L_q == L_k``). Default: indices.

    Returns:
        matplotlib.figure.Figure: Two rows, the inputs ``Q``, ``K``, ``V``,
        then ``Q Kᵀ`` → ``· scale`` → ``softmax`` → ``weights @ V``.
    """
    q, k, v = (mx.array(a) if not isinstance(a, mx.array) else a for a in (queries, keys, values))
    for name, a in (("queries", q), ("keys", k), ("values", v)):
        if a.ndim != 2:
            raise ValueError(f"{name} must be 2-D (length, features); got shape {tuple(a.shape)}.")
    if q.shape[1] != k.shape[1] or k.shape[0] != v.shape[0]:
        raise ValueError(f"queries {tuple(q.shape)}, keys {tuple(k.shape)} and values "
                         f"{tuple(v.shape)} do not fit: need (L_q, D_h), (L_k, D_h), (L_k, D_v).")
    scale = 1 / math.sqrt(q.shape[1]) if scale is None else scale
    q, k, v = (a.astype(mx.float32) for a in (q, k, v))
    scores = q @ k.T                                   # (L_q, L_k)
    weights = mx.softmax(scores * scale, axis=-1)      # (L_q, L_k)
    output = weights @ v                               # (L_q, D_v)
    L_q, L_k = scores.shape
    query_labels = list(tokens) if tokens is not None and len(tokens) == L_q else [f"q{i}" for i in range(L_q)]
    key_labels = list(tokens) if tokens is not None and len(tokens) == L_k else [f"k{j}" for j in range(L_k)]
    rows = {"Q": query_labels, "K": key_labels, "V": key_labels}
    features = {name: [f"f{i}" for i in range(a.shape[1])] for name, a in (("Q", q), ("K", k), ("V", v))}

    longest = max(len(label) for label in query_labels + key_labels)
    fig, (inputs, steps), tops = _panel_rows(
        [[q.shape, k.shape, v.shape], [scores.shape] * 3 + [output.shape]], title_inches=0.4,
        cell=0.75, label_chars=longest)
    for ax, (name, array) in zip(inputs, (("Q", q), ("K", k), ("V", v))):
        _annotated(ax, np.array(array), f"{name}  {tuple(array.shape)}", rows[name], features[name],
                   {"Q": "Blues", "K": "Oranges", "V": "Greens"}[name])
    fig.text(0.5, tops[0] - 0.01, "inputs: one row per token", ha="center", va="top", fontsize=FONT + 1)
    panels = (("Q Kᵀ", scores, key_labels, "Purples", None),
              (f"× scale ({scale:.3g})", scores * scale, key_labels, "Purples", None),
              ("softmax", weights, key_labels, "viridis", 1.0),
              ("weights @ V", output, features["V"], "Greens", None))
    for ax, (name, array, columns, cmap, vmax) in zip(steps, panels):
        _annotated(ax, np.array(array), name, query_labels, columns, cmap, vmin=vmax and 0.0, vmax=vmax)
    fig.text(0.5, tops[1] - 0.01, "scores → scaled → weights (rows sum to 1) → output: one row per query", ha="center",
             va="top", fontsize=FONT + 1)
    return fig


def _matrix_block(ax, x, y, rows, cols, colours, label, cell=0.3):
    """A ``rows × cols`` grid at ``(x, y)`` (top left), row ``r`` coloured ``colours[r]``."""
    for r in range(rows):
        for c in range(cols):
            ax.add_patch(Rectangle((x + c * cell, y - (r + 1) * cell), cell, cell,
                                   facecolor=colours[r], edgecolor="white", linewidth=0.8))
    ax.text(x + cols * cell / 2, y + 0.12, label, ha="center", va="bottom", fontsize=FONT - 1,
            family="monospace")
    return x + cols * cell, y - rows * cell


def plot_packed_in_proj(dims=4, num_heads=2):
    """PyTorch's packed ``in_proj_weight`` and MLX's three projections.

    ``torch.nn.MultiheadAttention`` stores the query, key and value weights
    stacked in one ``(3·dims, dims)`` matrix (and the biases in one
    ``(3·dims,)`` vector); MLX keeps ``query_proj``, ``key_proj`` and
    ``value_proj`` apart. Both store a linear map as ``(out, in)``, so each
    block is copied as it is, without a transpose. Inside each block head
    ``h`` owns rows ``h·D_h .. (h+1)·D_h``: lighter and darker stripes.

    Args:
        dims (int): The model width (PyTorch's ``embed_dim``). Default: ``4``.
        num_heads (int): The number of heads; must divide ``dims``.
            Default: ``2``.

    Returns:
        matplotlib.figure.Figure: The packed matrix and bias on the left,
        arrows with the row slices, MLX's weights and biases on the right.
    """
    head_dims = _check_heads(dims, num_heads)
    cell, gap = 0.5, 0.25
    shades = [0.5 + 0.5 * (h % 2) for h in range(num_heads)]

    def stripes(part):
        return [to_rgba(QKV_COLOURS[part], shades[r // head_dims]) for r in range(dims)]

    width = dims * cell
    height = 3 * dims * cell + 2 * gap
    fig, ax = _canvas(0.9 * (2 * width + 9.5), 0.9 * (height + 3.2))
    names = {"q": "query_proj", "k": "key_proj", "v": "value_proj"}
    bias_x = width + 0.5
    target_x = bias_x + cell + 4.0
    for index, part in enumerate("qkv"):
        block_top = -index * (dims * cell + gap)
        start, stop = index * dims, (index + 1) * dims
        _matrix_block(ax, 0, block_top, dims, dims, stripes(part), "", cell)
        _matrix_block(ax, bias_x, block_top, dims, 1, stripes(part), "", cell)
        _matrix_block(ax, target_x, block_top, dims, dims, stripes(part), "", cell)
        _matrix_block(ax, target_x + width + 0.5, block_top, dims, 1, stripes(part), "", cell)
        middle = block_top - width / 2
        ax.annotate("", (target_x - 0.15, middle), (bias_x + cell + 0.15, middle),
                    arrowprops={"arrowstyle": "-|>", "color": QKV_COLOURS[part], "lw": 2})
        ax.text((bias_x + cell + target_x) / 2, middle + 0.1, f"rows [{start}:{stop}]",
                ha="center", va="bottom", fontsize=FONT, family="monospace", color=QKV_COLOURS[part])
        ax.text(target_x + width + 0.5 + cell + 0.25, middle,
                f"{names[part]}.weight ({dims}, {dims})\n{names[part]}.bias ({dims},)",
                va="center", fontsize=FONT, family="monospace")
    ax.text(width / 2, 0.15, f"in_proj_weight\n({3 * dims}, {dims})", ha="center", va="bottom",
            fontsize=FONT, family="monospace")
    ax.text(bias_x + cell / 2, 0.15, f"in_proj_bias\n({3 * dims},)", ha="left", va="bottom",
            fontsize=FONT, family="monospace")
    ax.text(0, 1.2, "PyTorch nn.MultiheadAttention", fontsize=FONT + 1, weight="bold", va="bottom")
    ax.text(target_x, 1.2, "MLX nn.MultiHeadAttention", fontsize=FONT + 1, weight="bold", va="bottom")
    ax.text(0, -height - 0.3,
            "Both store a linear map as (out, in): copy each block as it is, no transpose.\n"
            f"Inside a block, head h owns rows h·D_h .. (h+1)·D_h (D_h = {head_dims}: light and dark stripes).\n"
            "out_proj.weight and out_proj.bias have the same names and layout in both.",
            va="top", fontsize=FONT)
    ax.set_xlim(-0.2, target_x + width + 6.0)
    ax.set_ylim(-height - 2.0, 1.9)
    ax.set_aspect("equal")
    return fig


def plot_induction_training(history, threshold=None):
    """The losses and the head scores of an induction-head run, step by step (lesson 09).

    Args:
        history (dict): What :func:`mhacourse.induction.train` returns: ``"step"``, ``"random"``,
            ``"repeated"``, ``"previous"`` and ``"induction"``, one value per record.
        threshold (int, optional): A step to mark with a dotted line on both panels (for example,
            where the induction score first passes one half). Default: none.

    Returns:
        matplotlib.figure.Figure: Left, the held-out loss on the random and the repeated part;
        right, the best previous-token score of the first layer and the best induction score of
        the last layer.
    """
    fig = _figure(11, 3.6)
    left, right = fig.add_axes((0.07, 0.15, 0.38, 0.72)), fig.add_axes((0.57, 0.15, 0.38, 0.72))
    steps = history["step"]
    left.plot(steps, history["random"], color="#888888", label="random part (unpredictable)")
    left.plot(steps, history["repeated"], color=QKV_COLOURS["q"], lw=2, label="repeated part")
    left.set_ylim(bottom=0)
    left.set_ylabel("held-out loss (nats)")
    left.set_title("loss", fontsize=FONT)
    right.plot(steps, history["previous"], color=QKV_COLOURS["k"], lw=2, label="previous-token score, layer 1")
    right.plot(steps, history["induction"], color=QKV_COLOURS["v"], lw=2, label="induction score, layer 2")
    right.set_ylim(0, 1)
    right.set_ylabel("best head's score")
    right.set_title("head scores", fontsize=FONT)
    for ax in (left, right):
        ax.set_xlabel("training step")
        if threshold is not None:
            ax.axvline(threshold, color="black", ls=":", lw=1)
        ax.legend(fontsize=FONT - 3, loc="lower left" if ax is left else "upper left")
    return fig


def plot_ablation(effects, labels=None):
    """A bar per head: how much the loss on the repeated part rises when that head is switched off.

    Args:
        effects (dict): What :func:`mhacourse.induction.ablation_effects` returns: ``"none"``, the
            loss with every head on, and ``(layer, head)``: the loss with that head off.
        labels (dict, optional): ``{(layer, head): text}`` added under a head's name (for example,
            ``"previous token"``). Default: none.

    Returns:
        matplotlib.figure.Figure: One bar per head, labelled with the change in nats.
    """
    labels = labels or {}
    heads = [key for key in effects if key != "none"]
    change = [effects[key] - effects["none"] for key in heads]
    fig = _figure(1.4 * len(heads) + 2.0, 3.4)
    ax = fig.add_axes((0.13, 0.22, 0.82, 0.66))
    colours = [HEAD_COLOURS[layer] for layer, _ in heads]
    bars = ax.bar(range(len(heads)), change, color=colours)
    for bar, value in zip(bars, change):
        ax.text(bar.get_x() + bar.get_width() / 2, max(value, 0) + 0.03, f"{value:+.2f}", ha="center",
                va="bottom", fontsize=FONT - 2)
    ax.set_xticks(range(len(heads)))
    ax.set_xticklabels([f"layer {layer + 1}, head {head}" + (f"\n{labels[layer, head]}" if (layer, head) in labels
                        else "") for layer, head in heads], fontsize=FONT - 3)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylim(min(0.0, *change) - 0.1, max(change) * 1.2 + 0.2)
    ax.set_ylabel("loss change on the repeated part (nats)", fontsize=FONT - 2)
    ax.set_title(f"switch one head off (all heads on: {effects['none']:.2f} nats)", fontsize=FONT)
    return fig


# What each kind of box in the overview is, and its colour (every box also says what it is in words).
OVERVIEW_PARTS = {
    "attention": OKABE_ITO["orange"],
    "norm": OKABE_ITO["sky blue"],
    "mlp": OKABE_ITO["bluish green"],
    "add": OKABE_ITO["yellow"],
    "io": "#DDDDDD",
}
QUERY_COLOUR, KEY_VALUE_COLOUR = OKABE_ITO["vermillion"], OKABE_ITO["blue"]


def _overview_box(ax, centre, width, height, text, part, font=FONT - 1):
    """A labelled box centred at ``centre``; attention boxes get a thick border."""
    x, y = centre
    attention = part == "attention"
    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.06",
                                facecolor=to_rgba(OVERVIEW_PARTS[part], 0.45 if part != "io" else 1.0),
                                edgecolor="black" if attention else "#555555", linewidth=2.2 if attention else 1.0))
    ax.text(x, y, text, ha="center", va="center", fontsize=font, weight="bold" if attention else "normal")
    return (x, y - height / 2), (x, y + height / 2)      # bottom and top middle


def _overview_arrow(ax, start, end, colour="#333333", label=None, label_at=0.5, side="left", connection=None,
                    style="-|>"):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=13, color=colour, lw=1.6,
                                 shrinkA=1, shrinkB=1, connectionstyle=connection or "arc3"))
    if label:
        x = start[0] + (end[0] - start[0]) * label_at
        y = start[1] + (end[1] - start[1]) * label_at
        ax.text(x + (-0.12 if side == "left" else 0.12), y, label, ha="right" if side == "left" else "left",
                va="center", fontsize=FONT - 3, color=colour, style="italic")


def _residual_add(ax, centre, radius=0.28):
    ax.add_patch(matplotlib.patches.Circle(centre, radius, facecolor=to_rgba(OVERVIEW_PARTS["add"], 0.8),
                                           edgecolor="#555555"))
    ax.text(*centre, "+", ha="center", va="center", fontsize=FONT + 2, weight="bold")
    return (centre[0], centre[1] - radius), (centre[0], centre[1] + radius)


def _block_column(ax, x, y):
    """A pre-norm transformer block from ``y`` upwards at ``x``; returns the top of its output arrow."""
    width = 4.2
    _overview_box(ax, (x, y), width, 0.6, "input x   (B, L, dims)", "io")
    _, norm_top = _overview_box(ax, (x, y + 1.3), 2.6, 0.6, "LayerNorm", "norm")
    _overview_arrow(ax, (x, y + 0.36), (x, y + 0.95))
    mha_bottom, mha_top = _overview_box(ax, (x, y + 2.95), width, 0.95,
                                        "multi-head attention\n(this course's layer)", "attention")
    for dx, name, colour in ((-1.3, "queries", QUERY_COLOUR), (0.0, "keys", KEY_VALUE_COLOUR),
                             (1.3, "values", KEY_VALUE_COLOUR)):
        _overview_arrow(ax, (x, norm_top[1] + 0.02), (x + dx, mha_bottom[1] - 0.06), colour=colour)
        ax.text(x + dx + (0.1 if dx >= 0 else -0.1), mha_bottom[1] - 0.2, name, fontsize=FONT - 3, color=colour,
                ha="left" if dx >= 0 else "right", va="center", style="italic")
    add1_bottom, add1_top = _residual_add(ax, (x, y + 4.35))
    _overview_arrow(ax, mha_top, add1_bottom)
    _, norm2_top = _overview_box(ax, (x, y + 5.3), 2.6, 0.6, "LayerNorm", "norm")
    _overview_arrow(ax, add1_top, (x, y + 4.96))
    mlp_bottom, mlp_top = _overview_box(ax, (x, y + 6.5), width, 0.8, "MLP\nLinear → GELU → Linear", "mlp")
    _overview_arrow(ax, norm2_top, mlp_bottom)
    add2_bottom, add2_top = _residual_add(ax, (x, y + 7.7))
    _overview_arrow(ax, mlp_top, add2_bottom)
    _overview_box(ax, (x, y + 8.7), width, 0.6, "output   (B, L, dims)", "io")
    _overview_arrow(ax, add2_top, (x, y + 8.36))
    # The residual (skip) connections go around each sub-layer.
    skip = x + width / 2 + 0.45
    for start, end, name in ((y + 0.7, y + 4.35, "residual: x + attention(norm(x))"),
                             (y + 4.7, y + 7.7, "residual: x + MLP(norm(x))")):
        ax.plot([x, skip, skip], [start, start, end], color="#333333", lw=1.4, ls="--")
        _overview_arrow(ax, (skip, end), (x + 0.3, end))
        ax.text(skip + 0.12, (start + end) / 2, name, rotation=90, ha="left", va="center", fontsize=FONT - 3)


def plot_transformer_overview():
    """Where multi-head attention sits: in a pre-norm transformer block and in an encoder–decoder.

    Left, one pre-norm block (as ``mhacourse.capstone.TransformerBlock`` computes it): LayerNorm →
    multi-head attention → residual add → LayerNorm → MLP → residual add. Right, an encoder–decoder (as
    ``mhacourse.seq2seq`` builds it): the encoder's self-attention, the decoder's masked (causal)
    self-attention, and cross-attention, whose queries come from the decoder and whose keys and values
    come from the encoder's output. Every multi-head attention is an orange box with a thick border.
    The colours are Okabe and Ito's, which stay distinct under red–green colour blindness, and every
    box and arrow is also labelled in words.

    Returns:
        matplotlib.figure.Figure: The two pictures side by side, read from the bottom up.
    """
    fig, ax = _canvas(15.5, 8.6)
    ax.set_xlim(-0.4, 26.6)
    ax.set_ylim(-1.25, 13.6)
    ax.text(3.4, 13.1, "a transformer block (pre-norm)", ha="center", fontsize=FONT + 2, weight="bold")
    _block_column(ax, 3.0, 2.4)
    ax.text(3.4, 11.95, "stacked N times; read from the bottom up", ha="center", fontsize=FONT - 2)

    ax.text(18.3, 13.1, "an encoder–decoder (translation, reversal, ...)", ha="center", fontsize=FONT + 2,
            weight="bold")
    enc, dec, w = 13.3, 21.3, 4.6
    # Encoder, bottom up.
    _overview_box(ax, (enc, 0.2), w, 0.6, "source tokens   (B, L_k)", "io")
    _, emb_top = _overview_box(ax, (enc, 1.4), w, 0.6, "embedding + positions", "io")
    _overview_arrow(ax, (enc, 0.56), (enc, 1.04))
    sa_bottom, sa_top = _overview_box(ax, (enc, 3.5), w, 1.1,
                                      "encoder self-attention\n(multi-head attention;\nqueries = keys = values)",
                                      "attention")
    _overview_arrow(ax, emb_top, sa_bottom)
    ax.text(enc + 0.15, 2.45, "mask: padding only", ha="left", fontsize=FONT - 3, style="italic")
    _, emlp_top = _overview_box(ax, (enc, 5.5), w, 0.7, "MLP", "mlp")
    _overview_arrow(ax, sa_top, (enc, 5.09))
    memory_bottom, memory_top = _overview_box(ax, (enc, 7.6), w, 0.8,
                                              "encoder output\n(B, L_k, dims)", "io")
    _overview_arrow(ax, emlp_top, memory_bottom)
    ax.add_patch(FancyBboxPatch((enc - w / 2 - 0.35, 2.1), w + 0.7, 4.2, boxstyle="round,pad=0.05", fill=False,
                                edgecolor="#777777", ls=":", lw=1.2))
    ax.text(enc - w / 2 - 0.35, 6.6, "× N encoder blocks", fontsize=FONT - 2, va="center")
    # Decoder, bottom up.
    _overview_box(ax, (dec, 0.2), w, 0.6, "target tokens so far   (B, L_q)", "io")
    _, demb_top = _overview_box(ax, (dec, 1.4), w, 0.6, "embedding + positions", "io")
    _overview_arrow(ax, (dec, 0.56), (dec, 1.04))
    msa_bottom, msa_top = _overview_box(ax, (dec, 3.5), w, 1.1,
                                        "masked self-attention\n(multi-head attention;\ncausal mask)", "attention")
    _overview_arrow(ax, demb_top, msa_bottom)
    ax.text(dec + 0.15, 2.45, "sees only earlier positions", ha="left", fontsize=FONT - 3, style="italic")
    cross_bottom, cross_top = _overview_box(ax, (dec, 6.2), w, 1.1,
                                            "cross-attention\n(multi-head attention:\nL_q queries, L_k keys)",
                                            "attention")
    _overview_arrow(ax, msa_top, (dec - 0.9, cross_bottom[1] - 0.06), colour=QUERY_COLOUR,
                    label="queries from the decoder", label_at=0.45, side="left")
    _overview_arrow(ax, (memory_top[0] + w / 2 + 0.05, memory_top[1] - 0.4), (dec - w / 2 - 0.08, 6.0),
                    colour=KEY_VALUE_COLOUR, connection="arc3,rad=-0.15")
    ax.text((enc + dec) / 2 + 0.1, 7.55, "keys and values\nfrom the encoder", ha="center", va="bottom",
            fontsize=FONT - 3, color=KEY_VALUE_COLOUR, style="italic")
    _, dmlp_top = _overview_box(ax, (dec, 8.3), w, 0.7, "MLP", "mlp")
    _overview_arrow(ax, cross_top, (dec, 7.89))
    ax.add_patch(FancyBboxPatch((dec - w / 2 - 0.35, 2.1), w + 0.7, 6.85, boxstyle="round,pad=0.05", fill=False,
                                edgecolor="#777777", ls=":", lw=1.2))
    ax.text(dec + w / 2 + 0.5, 5.5, "× N decoder blocks", fontsize=FONT - 2, va="center", rotation=90)
    _, head_top = _overview_box(ax, (dec, 10.0), w, 0.6, "Linear + softmax", "io")
    _overview_arrow(ax, dmlp_top, (dec, 9.64))
    _overview_box(ax, (dec, 11.2), w, 0.6, "next-token probabilities", "io")
    _overview_arrow(ax, head_top, (dec, 10.84))
    ax.text(18.3, 11.95, "in each block, every box also has a LayerNorm before it and a residual add after it",
            ha="center", fontsize=FONT - 3)
    ax.text(13.0, -1.0, "orange, thick border: one multi-head attention layer (mlx.nn.MultiHeadAttention)   ·   "
            "blue: LayerNorm   ·   green: MLP   ·   yellow +: residual add   ·   grey: inputs and outputs",
            ha="center", fontsize=FONT - 2)
    return fig
