"""Matplotlib pictures of attention: one head, a grid of heads (and layers), a mask.

The figures are plain ``matplotlib.figure.Figure`` objects, built without
``pyplot``: nothing is shown twice in a notebook, nothing piles up in
pyplot's figure list when the explorer redraws, and everything works with the
``Agg`` backend (tests, nbval, nbconvert). In Jupyter a returned figure shows
as a PNG.

All weight views share one colour scale, 0 to 1 on a square-root ramp, so the
same colour means the same weight in every lesson and small weights (a uniform
row over 32 keys is 0.03) still show.
"""

import io
import math

import matplotlib
import mlx.core as mx
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap, PowerNorm
from matplotlib.figure import Figure

from .masking import mask_to_numpy as _mask_to_numpy

__all__ = ["plot_attention", "plot_heads", "plot_mask", "figure_to_png", "weight_norm"]

# viridis: perceptually uniform and monotonic in lightness, so it reads the same for red-green
# colour blindness (deuteranopia, protanopia) and in greyscale; it has no red-green axis at all.
CMAP = "viridis"
TITLE_SIZE = 18
LABEL_SIZE = 15
MAX_LABELS = 64


def weight_norm():
    """The colour normalisation shared by every weight view: 0..1, square root."""
    return PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0)


def figure_to_png(fig, dpi=None):
    """Render a figure with Agg and return the PNG bytes."""
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def register_png_formatter():
    """Show matplotlib Figures made without pyplot as PNGs in IPython.

    They only get a PNG repr once the inline backend has registered one; this
    registers it when IPython runs without it, and does nothing outside IPython.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    formatter = shell.display_formatter.formatters["image/png"]
    try:
        formatter.lookup_by_type(Figure)
    except KeyError:
        formatter.for_type(Figure, figure_to_png)


def to_numpy(x, name="weights"):
    """An ``mx.array``, NumPy array or nested list as a float NumPy array."""
    if isinstance(x, mx.array):
        if x.dtype in (mx.bool_, mx.float32):
            return np.asarray(x)  # a view of MLX's buffer, no copy
        return np.array(x.astype(mx.float32))
    try:
        return np.asarray(x, dtype=np.float32) if not _is_bool(x) else np.asarray(x)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be an mx.array or array-like, got {type(x).__name__}.") from error


def _is_bool(x):
    return isinstance(x, np.ndarray) and x.dtype == np.bool_


def _labels(tokens, n, name):
    """Tick labels for ``n`` positions: the tokens, or their indices."""
    if tokens is None:
        return [str(i) for i in range(n)]
    if isinstance(tokens, str):
        raise TypeError(f"{name} must be a list of strings, one per position, not a single string.")
    tokens = [str(t) for t in tokens]
    if len(tokens) != n:
        raise ValueError(f"{name} has {len(tokens)} entries but the weights have {n} positions.")
    return tokens


def tick_font_size(n):
    """A tick label size that stays readable and does not overlap up to 64 labels."""
    return float(np.clip(380 / max(n, 1), 7, LABEL_SIZE))


def _set_ticks(ax, query_labels, key_labels, font_size=None, max_labels=MAX_LABELS):
    n_q, n_k = len(query_labels), len(key_labels)
    q_step = max(1, math.ceil(n_q / max_labels))
    k_step = max(1, math.ceil(n_k / max_labels))
    ax.set_yticks(range(0, n_q, q_step), query_labels[::q_step],
                  fontsize=font_size or tick_font_size(n_q))
    ax.set_xticks(range(0, n_k, k_step), key_labels[::k_step],
                  fontsize=font_size or tick_font_size(n_k), rotation=90)
    ax.tick_params(length=2, pad=2)


def _heatmap(ax, weights, query_labels, key_labels, title, ticks=True, font_size=None):
    image = ax.imshow(weights, cmap=CMAP, norm=weight_norm(), aspect="auto",
                      interpolation="nearest")
    if ticks:
        _set_ticks(ax, query_labels, key_labels, font_size)
        ax.set_xlabel("key", fontsize=LABEL_SIZE)
        ax.set_ylabel("query", fontsize=LABEL_SIZE)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=TITLE_SIZE if ticks else LABEL_SIZE)
    return image


def _colorbar(fig, image, axes):
    bar = fig.colorbar(image, ax=axes, fraction=0.05, pad=0.03)
    bar.set_ticks([0, 0.05, 0.2, 0.5, 1.0])
    bar.ax.tick_params(labelsize=LABEL_SIZE - 2)
    bar.set_label("attention weight", fontsize=LABEL_SIZE)
    return bar


def _side_inches(n):
    return float(np.clip(3.5 + 0.09 * n, 5.0, 10.0))


def _as_2d(weights, name="weights"):
    weights = to_numpy(weights, name)
    squeezed = np.squeeze(weights)
    if weights.ndim == 2:
        return weights
    if squeezed.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (n_queries, n_keys) after squeezing; got shape {weights.shape}. "
            "Use plot_heads for (heads, n_queries, n_keys)."
        )
    return squeezed


def plot_attention(weights, query_tokens=None, key_tokens=None, title=None, ax=None):
    """A heatmap of one head's attention weights.

    Args:
        weights (array): ``(n_queries, n_keys)``; size-1 axes are squeezed,
            so ``(1, 1, Lq, Lk)`` works too.
        query_tokens (list[str], optional): Labels of the rows. Default:
            their indices.
        key_tokens (list[str], optional): Labels of the columns. Default:
            ``query_tokens`` when the sizes match, else indices.
        title (str, optional): The title, e.g. ``"layer 0 · head 3"``.
        ax (matplotlib.axes.Axes, optional): Draw into these axes instead of
            a new figure.

    Returns:
        matplotlib.figure.Figure: The figure (``ax.figure`` when ``ax`` is given).
    """
    weights = _as_2d(weights)
    n_q, n_k = weights.shape
    if key_tokens is None and query_tokens is not None and len(query_tokens) == n_k:
        key_tokens = query_tokens
    query_labels = _labels(query_tokens, n_q, "query_tokens")
    key_labels = _labels(key_tokens, n_k, "key_tokens")
    if ax is None:
        register_png_formatter()
        fig = Figure(figsize=(_side_inches(n_k) + 1.2, _side_inches(n_q)), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
    fig = ax.figure
    image = _heatmap(ax, weights, query_labels, key_labels, title)
    _colorbar(fig, image, ax)
    return fig


def _stack_heads(weights):
    """``(H, Lq, Lk)``, ``(B, H, Lq, Lk)`` or a list of those -> ``(layers, H, Lq, Lk)``."""
    layers = list(weights) if isinstance(weights, (list, tuple)) else [weights]
    if not layers:
        raise ValueError("weights is an empty list; give one (H, Lq, Lk) array per layer.")
    stacked = []
    for index, layer in enumerate(layers):
        layer = to_numpy(layer)
        if layer.ndim == 4:
            layer = layer[0]  # batch 0: (H, Lq, Lk)
        if layer.ndim != 3:
            where = f"weights[{index}]" if len(layers) > 1 else "weights"
            raise ValueError(
                f"{where} must be (heads, n_queries, n_keys) or (batch, heads, n_queries, "
                f"n_keys); got shape {layer.shape}."
            )
        if stacked and layer.shape != stacked[0].shape:
            raise ValueError(
                f"every layer must have the same shape; weights[{index}] is {layer.shape}, "
                f"weights[0] is {stacked[0].shape}."
            )
        stacked.append(layer)
    return np.stack(stacked)  # (layers, H, Lq, Lk)


def grid_shape(num_layers, num_heads):
    """Rows and columns of the grid: one row per layer, or a near-square grid of heads."""
    if num_layers > 1:
        return num_layers, num_heads
    if num_heads <= 4:
        cols = num_heads
    elif num_heads <= 16:
        cols = 3 if num_heads in (5, 6, 9) else 4
    else:
        cols = math.ceil(math.sqrt(num_heads))
    return math.ceil(num_heads / cols), cols


def _draw_grid(stacked, query_labels, key_labels, title):
    """Draw the grid and return ``(figure, [AxesImage per (layer, head)])``."""
    num_layers, num_heads, n_q, n_k = stacked.shape
    rows, cols = grid_shape(num_layers, num_heads)
    cell = float(np.clip(2.2 + 0.04 * max(n_q, n_k), 2.4, 4.0))
    fig = Figure(figsize=(cols * cell + 1.5, rows * cell + 0.8 + 0.4 * bool(title)),
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
    label_ticks = max(n_q, n_k) <= 16
    images = []
    total = num_layers * num_heads
    for index, ax in enumerate(axes.flat):
        if index >= total:
            ax.set_visible(False)
            continue
        layer, head = divmod(index, num_heads)
        name = f"layer {layer} · head {head}" if num_layers > 1 else f"head {head}"
        images.append(_heatmap(ax, stacked[layer, head], query_labels, key_labels, name,
                               ticks=False))
        if label_ticks:
            # Short sequences: label the outer edges of the grid with the tokens.
            if index % cols == 0:
                ax.set_yticks(range(n_q), query_labels, fontsize=11)
            if index + cols >= total:
                ax.set_xticks(range(n_k), key_labels, fontsize=11, rotation=90)
    if title:
        fig.suptitle(title, fontsize=TITLE_SIZE)
    _colorbar(fig, images[0], axes)
    return fig, images


def plot_heads(weights, query_tokens=None, key_tokens=None, title=None):
    """A grid of heatmaps, one per head (and one row per layer).

    Args:
        weights (array or list): ``(H, Lq, Lk)``, ``(B, H, Lq, Lk)`` (batch 0
            is shown), or a list of those, one per layer.
        query_tokens (list[str], optional): Labels of the rows.
        key_tokens (list[str], optional): Labels of the columns. Default:
            ``query_tokens`` when the sizes match.
        title (str, optional): A title above the grid.

    Returns:
        matplotlib.figure.Figure: The figure; every panel is titled with its
        head (and layer), and all share one colour bar.
    """
    stacked = _stack_heads(weights)  # (layers, H, Lq, Lk)
    n_q, n_k = stacked.shape[-2:]
    if key_tokens is None and query_tokens is not None and len(query_tokens) == n_k:
        key_tokens = query_tokens
    query_labels = _labels(query_tokens, n_q, "query_tokens")
    key_labels = _labels(key_tokens, n_k, "key_tokens")
    register_png_formatter()
    fig, _ = _draw_grid(stacked, query_labels, key_labels, title)
    return fig


def mask_to_numpy(mask, n_queries=None, n_keys=None):
    """A mask as a NumPy array: booleans (True = attend) or additive values (see :mod:`.masking`)."""
    return _mask_to_numpy(mask, n_queries, n_keys)


def plot_mask(mask, query_tokens=None, key_tokens=None, title=None):
    """Show which keys each query may attend to.

    Args:
        mask (array): A boolean mask (True = attend) or an additive one
            (0 = attend, ``-inf`` or a very negative number = blocked), 2-D
            after squeezing, e.g. ``(1, 1, Lq, Lk)``. An additive mask with
            other values (a bias) is shown with its values.
        query_tokens (list[str], optional): Labels of the rows.
        key_tokens (list[str], optional): Labels of the columns.
        title (str, optional): The title. Default: ``"mask"``.

    Returns:
        matplotlib.figure.Figure: Attend in yellow, blocked in dark blue.
    """
    n_q = len(query_tokens) if query_tokens is not None and not isinstance(query_tokens, str) else None
    n_k = len(key_tokens) if key_tokens is not None and not isinstance(key_tokens, str) else n_q
    array = mask_to_numpy(mask, n_q, n_k)
    squeezed = np.squeeze(array)
    if squeezed.ndim < 2:
        squeezed = squeezed.reshape(1, -1)  # one row of keys, e.g. a padding mask (B, 1, 1, Lk)
    if squeezed.ndim != 2:
        raise ValueError(f"mask must be 2-D (n_queries, n_keys) after squeezing; got shape {array.shape}.")
    n_q, n_k = squeezed.shape
    if key_tokens is None and query_tokens is not None and len(query_tokens) == n_k:
        key_tokens = query_tokens
    query_labels = _labels(query_tokens, n_q, "query_tokens")
    key_labels = _labels(key_tokens, n_k, "key_tokens")

    register_png_formatter()
    height = _side_inches(n_q) if n_q > 1 else 2.5
    fig = Figure(figsize=(_side_inches(n_k) + 1.2, height), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if squeezed.dtype == np.bool_:
        colours = ListedColormap([matplotlib.colormaps[CMAP](0.0), matplotlib.colormaps[CMAP](1.0)])
        image = ax.imshow(squeezed.astype(np.float32), cmap=colours, vmin=0, vmax=1,
                          aspect="auto", interpolation="nearest")
        bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.03, ticks=[0.25, 0.75])
        bar.set_ticklabels(["blocked", "attend"], fontsize=LABEL_SIZE)
    else:
        finite = np.where(np.isfinite(squeezed), squeezed, np.nan)
        image = ax.imshow(finite, cmap=CMAP, aspect="auto", interpolation="nearest")
        bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.03)
        bar.set_label("added to the scores", fontsize=LABEL_SIZE)
        bar.ax.tick_params(labelsize=LABEL_SIZE - 2)
    _set_ticks(ax, query_labels, key_labels)
    ax.set_xlabel("key", fontsize=LABEL_SIZE)
    ax.set_ylabel("query", fontsize=LABEL_SIZE)
    ax.set_title(title or "mask", fontsize=TITLE_SIZE)
    return fig
