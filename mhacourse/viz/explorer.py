"""``AttentionExplorer``: an ipywidgets view of attention weights.

Every control (layer, head, query token, mask, valid keys, scale) calls
:meth:`AttentionExplorer.update`, which asks :func:`explorer_state` for the
numbers and repaints a PNG. Nothing is loaded from the internet: the widgets
are the stock ipywidgets 8 controls and the picture is an ``Image`` widget.
Where no widget front-end runs (nbval, nbconvert, GitHub) the explorer
displays as a static PNG grid of all heads instead.
"""

import base64
import html

import ipywidgets as widgets
import numpy as np

from .render import HeatmapFrame
from .state import LayerSource, WeightsSource, explorer_state
from .static import (
    _draw_grid,
    _heatmap,
    _labels,
    _colorbar,
    _side_inches,
    figure_to_png,
    plot_heads,
)

__all__ = ["AttentionExplorer"]

ALL_HEADS = -1
DPI = 80
GRID_DPI = 64  # the grid has many panels: fewer pixels keep its redraw within ~20 ms

_CSS = """<style>
.mha-explorer .widget-label, .mha-explorer .widget-readout,
.mha-explorer .widget-toggle-button, .mha-explorer select,
.mha-explorer .widget-button { font-size: var(--mha-font, 14px); }
.mha-explorer .widget-toggle-button { height: auto; padding: 2px 6px; }
.mha-explorer .mha-bars td { padding: 0 4px; white-space: nowrap; }
</style>"""


def _single_frame(query_labels, key_labels, dpi=DPI):
    """A one-head heatmap, drawn once, ready for repainting."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n_q, n_k = len(query_labels), len(key_labels)
    fig = Figure(figsize=(_side_inches(n_k) + 1.2, _side_inches(n_q)), dpi=dpi,
                 layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = _heatmap(ax, np.zeros((n_q, n_k)), query_labels, key_labels, None)
    _colorbar(fig, image, ax)
    return HeatmapFrame(fig, [image])


def _grid_frame(num_heads, query_labels, key_labels, dpi=GRID_DPI):
    """An all-heads grid, drawn once, ready for repainting."""
    zeros = np.zeros((1, num_heads, len(query_labels), len(key_labels)))
    fig, images = _draw_grid(zeros, query_labels, key_labels, None)
    fig.set_dpi(dpi)
    return HeatmapFrame(fig, images)


class AttentionExplorer(widgets.VBox):
    """Explore the attention weights of a layer, head by head and token by token.

    Give either a layer and its inputs, or precomputed weights.

    Args:
        layer (MultiHeadAttention, optional): A layer with ``project``,
            ``num_heads`` and ``scale``; the explorer recomputes its weights
            from the scores when the mask or the scale changes.
        queries (array, optional): ``(B, Lq, D)`` or ``(Lq, D)``; batch 0 is shown.
        keys (array, optional): Default: ``queries``.
        values (array, optional): Default: ``keys``.
        tokens (list[str], optional): Labels of the queries.
        key_tokens (list[str], optional): Labels of the keys. Default:
            ``tokens`` when the lengths match.
        mask (array or str, optional): The mask to start with (shown as
            "given" in the mask selector).
        weights (array or list, optional): Instead of a layer: ``(H, Lq, Lk)``,
            ``(B, H, Lq, Lk)`` or a list of those, one per layer (a layer
            selector appears). The scale is then a factor on their scores.
        large (bool, optional): Larger controls and fonts, for a projector.
            Default: ``False``.
    """

    def __init__(self, layer=None, queries=None, keys=None, values=None, *,
                 tokens=None, key_tokens=None, mask=None, weights=None, large=False):
        if (layer is None) == (weights is None):
            raise ValueError("give either layer (with queries) or weights, not both and not neither.")
        if layer is not None:
            self.source = LayerSource(layer, queries, keys, values, mask=mask)
        else:
            self.source = WeightsSource(weights, mask=mask)
        source = self.source
        if key_tokens is None and tokens is not None and len(tokens) == source.n_keys:
            key_tokens = tokens
        label = "70px" if large else "50px"  # width of the controls' descriptions
        self.query_labels = _labels(tokens, source.n_queries, "tokens")
        self.key_labels = _labels(key_tokens, source.n_keys, "key_tokens")
        self.large = bool(large)
        self._frames = {}
        self.state = None

        self.layer_selector = widgets.Dropdown(
            options=[(f"layer {i}", i) for i in range(source.num_layers)], value=0,
            description="layer", layout=widgets.Layout(width="180px"))
        self.head_selector = widgets.ToggleButtons(
            options=[("all", ALL_HEADS)] + [(str(h), h) for h in range(source.num_heads)],
            value=0, description="head", tooltips=["every head side by side"]
            + [f"head {h}" for h in range(source.num_heads)],
            style={"button_width": "44px" if not large else "56px", "description_width": label})
        self.query_selector = widgets.Dropdown(
            options=[(f"{i}: {t}", i) for i, t in enumerate(self.query_labels)],
            value=source.n_queries - 1, description="query",
            layout=widgets.Layout(width="300px"), style={"description_width": label})
        mask_options = ["none", "causal", "padding"] + (["given"] if source.given_mask is not None else [])
        self.mask_selector = widgets.ToggleButtons(
            options=mask_options, value="given" if "given" in mask_options else "none",
            description="mask", style={"button_width": "90px" if not large else "120px",
                                       "description_width": label})
        self.valid_keys_slider = widgets.IntSlider(
            value=max(1, source.n_keys - source.n_keys // 4), min=1, max=source.n_keys,
            description="valid keys", continuous_update=True,
            layout=widgets.Layout(width="420px"), style={"description_width": "120px" if large else "90px"})
        scale = source.default_scale
        self.scale_slider = widgets.FloatSlider(
            value=scale, min=0.0, max=round(4 * scale, 4), step=round(scale / 20, 5),
            description="scale" if layer is not None else "scale ×", readout_format=".3f",
            continuous_update=True, layout=widgets.Layout(width="460px"),
            style={"description_width": label})
        self.reset_button = widgets.Button(description="reset scale",
                                           tooltip=f"back to the default scale {scale:.3f}")

        self.title = widgets.HTML()
        self.image = widgets.Image(format="png")
        self.bars = widgets.HTML(layout=widgets.Layout(max_height="640px", overflow="auto"))
        self.numbers = widgets.HTML()
        font = 20 if large else 14
        style = widgets.HTML(_CSS.replace("var(--mha-font, 14px)", f"{font}px"))

        rows = [widgets.HBox([self.layer_selector, self.head_selector])
                if source.num_layers > 1 else self.head_selector,
                widgets.HBox([self.query_selector, self.mask_selector]),
                widgets.HBox([self.scale_slider, self.reset_button, self.valid_keys_slider])]
        side = widgets.VBox([self.numbers, self.bars], layout=widgets.Layout(width="340px" if not large else "420px"))
        super().__init__([style, self.title, *rows, widgets.HBox([self.image, side])])
        self.add_class("mha-explorer")

        for control in (self.layer_selector, self.head_selector, self.query_selector,
                        self.mask_selector, self.valid_keys_slider, self.scale_slider):
            control.observe(self._on_change, names="value")
        self.reset_button.on_click(self._on_reset)
        self.update()

    # -- the update path ---------------------------------------------------------

    def controls(self):
        """The current settings, as keyword arguments of :func:`explorer_state`."""
        head = self.head_selector.value
        return {
            "layer": self.layer_selector.value,
            "head": None if head == ALL_HEADS else head,
            "query": self.query_selector.value,
            "mask": self.mask_selector.value,
            "scale": self.scale_slider.value,
            "valid_keys": self.valid_keys_slider.value,
        }

    def _on_change(self, change):
        self.update()

    def _on_reset(self, button):
        self.scale_slider.value = self.source.default_scale

    def _frame(self, all_heads):
        key = "grid" if all_heads else "single"
        if key not in self._frames:
            if all_heads:
                self._frames[key] = _grid_frame(self.source.num_heads, self.query_labels,
                                                self.key_labels, GRID_DPI * (1.25 if self.large else 1))
            else:
                self._frames[key] = _single_frame(self.query_labels, self.key_labels,
                                                  DPI * (1.25 if self.large else 1))
        return self._frames[key]

    def render(self, state):
        """The PNG of a state: one head's heatmap or the grid, the query row outlined."""
        frame = self._frame(state.head is None)
        arrays = list(state.weights) if state.head is None else [state.weights[state.head]]
        return frame.render(arrays, highlight_row=state.query)

    def update(self):
        """Recompute the state from the controls and redraw; returns the state."""
        state = explorer_state(self.source, **self.controls())
        self.state = state
        self.valid_keys_slider.disabled = state.mask != "padding"
        self.image.value = self.render(state)
        self.title.value = self._title_html(state)
        self.bars.value = self._bars_html(state)
        self.numbers.value = self._numbers_html(state)
        return state

    # -- text ------------------------------------------------------------------------

    def _font(self, small=False):
        return (16 if small else 22) if self.large else (12 if small else 16)

    def _title_html(self, state):
        parts = []
        if self.source.num_layers > 1:
            parts.append(f"layer {state.layer}")
        parts.append("all heads" if state.head is None else f"head {state.head}")
        parts.append(f"mask: {state.mask}" + (f" ({state.valid_keys} valid keys)" if state.mask == "padding" else ""))
        parts.append(f"scale {state.scale:.3f}")
        return (f"<div class='mha-title' style='font-size:{self._font() + 4}px;font-weight:bold'>"
                f"{html.escape(' · '.join(parts))}</div>")

    def _bars_html(self, state):
        query = html.escape(self.query_labels[state.query])
        which = "mean over heads" if state.head is None else f"head {state.head}"
        size = self._font(small=True)
        lines = [f"<div style='font-size:{size + 2}px'><b>query {state.query} “{query}”</b> "
                 f"({which}) attends to:</div>",
                 f"<table class='mha-bars' style='font-size:{size}px;border-collapse:collapse'>"]
        for j, weight in enumerate(state.row):
            label = html.escape(self.key_labels[j])
            if state.keep[state.query, j]:
                bar = (f"<div style='background:#3b6fb6;height:{size - 2}px;"
                       f"width:{max(0.0, float(weight)) * 160:.1f}px'></div>")
                value = f"{weight:.3f}"
            else:
                bar, value = "<span style='color:#999'>masked</span>", "0"
            lines.append(f"<tr><td style='text-align:right'>{j}: {label}</td>"
                         f"<td style='width:164px'>{bar}</td><td>{value}</td></tr>")
        lines.append("</table>")
        return "".join(lines)

    def _numbers_html(self, state):
        sums = state.row_sums if state.head is None else state.row_sums[state.head]
        h, i, j = state.argmax
        size = self._font(small=True) + 2
        return (f"<div class='mha-numbers' style='font-size:{size}px'>"
                f"row sums: min <b>{sums.min():.4f}</b>, max <b>{sums.max():.4f}</b><br>"
                f"max weight: <b class='mha-max'>{state.max_weight:.4f}</b> "
                f"(head {h}, “{html.escape(self.query_labels[i])}” → "
                f"“{html.escape(self.key_labels[j])}”)<br>"
                f"this row: max <b>{state.row.max():.4f}</b>, sum <b>{state.row.sum():.4f}</b></div>")

    # -- display without a widget front-end -----------------------------------------

    def static_figure(self):
        """The static grid of every head (every layer) at the current settings."""
        controls = self.controls()
        layers = []
        for layer in range(self.source.num_layers):
            controls["layer"] = layer
            layers.append(explorer_state(self.source, **controls).weights)
        state = self.state
        title = f"mask: {state.mask} · scale {state.scale:.3f}"
        return plot_heads(layers if len(layers) > 1 else layers[0], self.query_labels,
                          self.key_labels, title=title)

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs)
        png = figure_to_png(self.static_figure(), dpi=DPI)
        bundle["image/png"] = base64.b64encode(png).decode("ascii")
        s = self.source
        bundle["text/plain"] = (
            f"AttentionExplorer: {s.num_layers} layer(s) × {s.num_heads} heads, "
            f"{s.n_queries} queries × {s.n_keys} keys (the static grid shows without a widget front-end)"
        )
        return bundle
