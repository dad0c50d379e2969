"""The explorer's static picture: what a saved notebook shows where no widget runs.

An explorer displays as two outputs: the widget, and under it a labelled
picture (``text/html`` holding an ``<img>`` with alt text, and the same PNG as
``image/png``). nbconvert and nbviewer keep the widget's output empty when its
script cannot be loaded (it would come from a CDN); the picture needs nothing
but the notebook. Where the widget runs (JupyterLab, the course website) its
stylesheet, ``explorer.css``, hides the picture.

The picture has a display id. When the explorer's settings change, from
Python or from a control the kernel answers, it is redrawn once: at the end of
the cell that made the change, or :data:`DELAY` seconds after the last browser
control, so that a dragged slider is answered first and drawn later.
"""

import asyncio
import base64
import html
import math
import uuid
import weakref

import matplotlib
import numpy as np

__all__ = ["head_figure", "show_picture", "picture_bundle", "DELAY"]

DELAY = 0.8  # seconds of quiet after a browser control before the picture is redrawn
DPI = 80
MAX_TOKENS = 256  # the heatmap is max-pooled beyond this many queries or keys
STRIP_TOKENS = 32  # each head of the strip is max-pooled to at most this
POOLED_LABELS = 32  # token labels per axis on a pooled heatmap
MASKED = "#b8b8b8"
OUTLINE = "#e69f00"  # Okabe-Ito orange: stands out on viridis for every colour vision


def pool(weights, size, fill=-1.0):
    """Max-pool the last two axes down to at most ``size`` each (peaks stay visible); ``fill`` pads."""
    *lead, n_q, n_k = weights.shape
    step_q, step_k = math.ceil(n_q / size), math.ceil(n_k / size)
    if step_q == step_k == 1:
        return weights
    pad_q, pad_k = -n_q % step_q, -n_k % step_k
    if pad_q or pad_k:
        weights = np.pad(weights, [(0, 0)] * len(lead) + [(0, pad_q), (0, pad_k)], constant_values=fill)
    blocks = weights.reshape(*lead, (n_q + pad_q) // step_q, step_q, (n_k + pad_k) // step_k, step_k)
    return blocks.max(axis=(-3, -1))


def pooled(weights, size, keep=None, bits=None):
    """Weights (or their square-root codes) max-pooled to at most ``size`` per axis, as float32.

    Args:
        weights (np.ndarray): ``(…, Lq, Lk)`` weights, or unsigned square-root
            codes of ``bits`` bits (see :mod:`mhacourse.viz.codes`): pooled
            before decoding, since a larger code is a larger weight.
        size (int): At most this many rows and columns.
        keep (np.ndarray, optional): ``(Lq, Lk)`` booleans, False where the
            mask blocks a key: a block with no kept key becomes NaN (grey).
        bits (int, optional): Given when ``weights`` are codes.

    Returns:
        np.ndarray: ``(…, ⌈Lq / step⌉, ⌈Lk / step⌉)`` float32.
    """
    from .codes import decode

    out = pool(weights, size, fill=0)
    out = decode(out, bits) if bits else np.array(out, dtype=np.float32)
    if keep is not None:
        kept = pool(np.asarray(keep, dtype=bool), size, fill=False)
        out = np.where(kept, out, np.float32(np.nan))
    return out


def head_figure(weights, head, query_labels, key_labels, *, keep=None, title="", subtitle="", bits=None):
    """One head's heatmap with token labels, a colour bar and a strip of every head of the layer.

    Args:
        weights (np.ndarray): ``(H, Lq, Lk)``, one layer: weights, or their
            square-root codes when ``bits`` is given.
        head (int): The head drawn large (outlined in the strip).
        query_labels (list[str]): ``Lq`` labels.
        key_labels (list[str]): ``Lk`` labels.
        keep (np.ndarray, optional): ``(Lq, Lk)`` booleans, False where the
            mask blocks a key: drawn grey, with a "masked" swatch.
        title (str): The figure's title.
        subtitle (str): A line under the title.
        bits (int, optional): ``8`` or ``16`` when ``weights`` are codes.

    Returns:
        matplotlib.figure.Figure: The picture (Agg canvas, no pyplot).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle

    from .plots import CMAP, LABEL_SIZE, MAX_LABELS, _set_ticks, weight_norm

    n_heads, n_q, n_k = weights.shape
    shown = pooled(weights[head], MAX_TOKENS, keep, bits)  # NaN where masked: grey
    step_q, step_k = math.ceil(n_q / MAX_TOKENS), math.ceil(n_k / MAX_TOKENS)
    if step_q > 1 or step_k > 1:
        query_labels, key_labels = query_labels[::step_q], key_labels[::step_k]
        subtitle += f" · max-pooled over blocks of {step_q} × {step_k}"
    strip = pooled(weights, STRIP_TOKENS, keep, bits)  # (H, sq, sk)
    s_q, s_k = strip.shape[1:]
    gap = max(1, s_q // 6)

    cmap = matplotlib.colormaps[CMAP].with_extremes(bad=MASKED, under=MASKED)
    fig = Figure(figsize=(11.0, 8.6))
    FigureCanvasAgg(fig)
    fig.text(0.5, 0.975, title, ha="center", va="top", fontsize=17, weight="bold")
    fig.text(0.5, 0.935, subtitle, ha="center", va="top", fontsize=11, color="#333")
    main = fig.add_axes((0.15, 0.2, 0.52, 0.66))
    image = main.imshow(shown, cmap=cmap, norm=weight_norm(),
                        aspect="auto", interpolation="nearest")
    # Pooled, a label stands for a block of tokens: 32 per axis are enough, and each costs drawing time.
    _set_ticks(main, query_labels, key_labels, max_labels=POOLED_LABELS if step_q > 1 or step_k > 1 else MAX_LABELS)
    main.set_xlabel("key", fontsize=LABEL_SIZE)
    main.set_ylabel("query", fontsize=LABEL_SIZE)
    bar_axes = fig.add_axes((0.69, 0.2, 0.018, 0.66))
    bar = fig.colorbar(image, cax=bar_axes)
    bar.set_ticks([0, 0.05, 0.2, 0.5, 1.0])
    bar.ax.tick_params(labelsize=11)
    bar.set_label("attention weight (square-root scale)", fontsize=12)
    if keep is not None and not np.all(keep):
        fig.legend(handles=[Patch(facecolor=MASKED, edgecolor="#666", label="masked")],
                   loc="upper left", bbox_to_anchor=(0.655, 0.185), fontsize=11, frameon=False)
    side = fig.add_axes((0.82, 0.2, 0.1, 0.66))
    for h in range(n_heads):  # one image per head, blank gaps between them
        top = h * (s_q + gap)
        side.imshow(strip[h], cmap=cmap, norm=weight_norm(), aspect="auto", interpolation="nearest",
                    extent=(-0.5, s_k - 0.5, top + s_q - 0.5, top - 0.5))
    side.set_xlim(-0.5, s_k - 0.5)
    side.set_ylim(n_heads * (s_q + gap) - gap - 0.5, -0.5)
    side.set_xticks([])
    side.set_yticks([h * (s_q + gap) + s_q / 2 - 0.5 for h in range(n_heads)],
                    [f"head {h}" for h in range(n_heads)], fontsize=float(np.clip(160 / n_heads, 7, 11)))
    side.yaxis.tick_right()
    side.tick_params(length=0)
    for spine in side.spines.values():
        spine.set_visible(False)
    side.set_title("every head", fontsize=11)
    side.add_patch(Rectangle((-0.5, head * (s_q + gap) - 0.5), s_k, s_q, fill=False, edgecolor=OUTLINE,
                             linewidth=2.5, clip_on=False))
    return fig


def picture_bundle(explorer):
    """The picture's output: ``(data, metadata)`` with ``text/html``, ``image/png`` and ``text/plain``."""
    from .plots import figure_to_png

    fig = explorer.static_figure()
    png = base64.b64encode(figure_to_png(fig, dpi=DPI)).decode("ascii")
    width, height = (int(round(v * DPI)) for v in fig.get_size_inches())
    alt = explorer.picture_description()
    page = (f'<img class="mha-static-picture" src="data:image/png;base64,{png}" width="{width}" '
            f'height="{height}" style="max-width:100%;height:auto" alt="{html.escape(alt)}" '
            f'title="{html.escape(alt)}">')
    return ({"text/html": page, "image/png": png, "text/plain": alt},
            {"image/png": {"width": width, "height": height}})


class _Refresh:
    """Redraws the pictures of displayed explorers whose settings changed, once per change burst."""

    def __init__(self):
        self.stale = weakref.WeakSet()
        self.hooked = None
        self.timer = None

    def mark(self, explorer):
        self.stale.add(explorer)
        from IPython import get_ipython

        shell = get_ipython()
        if shell is None:
            return
        if self.hooked is not shell:  # a change made by a cell: redrawn when the cell ends
            shell.events.register("post_execute", self.after_cell)
            self.hooked = shell
        try:  # a browser control (between cells): redrawn after a pause
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self.timer is not None:
            self.timer.cancel()
        self.timer = loop.call_later(DELAY, self.flush)

    def after_cell(self):
        # ``comm`` triggers post_execute after every widget message too: a browser control. Its
        # picture waits for the timer, or the kernel would draw it (hundreds of ms at 1024 tokens)
        # between this control's answer and the next control.
        if self.timer is not None and _answering_a_widget_message():
            return
        self.flush()

    def flush(self):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for explorer in list(self.stale):
            self.stale.discard(explorer)
            explorer._update_picture()


def _answering_a_widget_message():
    """Whether the kernel is handling a comm message (a browser control), not running a cell."""
    from IPython import get_ipython

    kernel = getattr(get_ipython(), "kernel", None)
    try:
        parent = kernel.get_parent("shell") if kernel is not None else None
    except Exception:  # another kernel: treat it as a cell
        return False
    return isinstance(parent, dict) and parent.get("header", {}).get("msg_type") == "comm_msg"


REFRESH = _Refresh()


def show_picture(explorer):
    """Display ``explorer``'s picture with its display id (made on first use)."""
    from IPython.display import display

    if explorer._picture_id is None:
        explorer._picture_id = f"mha-picture-{uuid.uuid4().hex}"
    data, metadata = picture_bundle(explorer)
    display(data, raw=True, metadata=metadata, display_id=explorer._picture_id)
