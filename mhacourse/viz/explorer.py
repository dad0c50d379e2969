"""``AttentionExplorer``: attention weights drawn in the browser.

The explorer is an anywidget (an ipywidgets ``DOMWidget``) whose JavaScript,
``explorer.js`` next to this file, ships inside the package: nothing is
loaded from the internet. The kernel sends weights as binary buffers of
square-root codes (see :mod:`mhacourse.viz.codes`), one per layer, and the
grid's thumbnails; the browser draws them on a canvas. Up to
``ALL_AT_BUILD`` weights every layer goes when the explorer is built; beyond,
only the layer shown, and the browser asks for another when it opens it. A
layer larger than ``WHOLE_LAYER`` weights goes one head at a time: the head
on screen, and the others when they are shown.

Hovering or clicking a token, switching head, layer or view, zooming and
exporting happen in the browser alone and send nothing to the kernel. Only
the controls that need new weights (``scale``, ``mask``, ``valid_keys``) go
to the kernel, which recomputes and answers with what is shown only: the
layer on screen (or its head on screen), or the grid's thumbnails. ``view``, ``layer``,
``head``, ``query`` and ``large`` can be set from Python to steer the
browser; the browser does not report its own changes back. The neuron view
(**q·k**) asks the kernel once per head for that head's queries and keys
(:meth:`AttentionExplorer.vectors`); the lines view overlays up to eight
heads in the Okabe-Ito colours without asking anything.

Under the widget, in its own output, the explorer shows a labelled static
picture (:mod:`mhacourse.viz.picture`): what nbconvert, nbviewer and GitHub
show, redrawn when the settings change; where the widget runs, its
stylesheet hides it. :meth:`AttentionExplorer.save_html` writes a standalone
HTML file that works offline.

Three widgets share one base, :class:`ExplorerBase` (traits, validation,
export, the static picture): :class:`AttentionExplorer`, :class:`Compare`
(``AttentionExplorer.compare``) and :class:`Stepper`
(``AttentionExplorer.stepper``).
"""

import base64
import html
import json
import math
from pathlib import Path

import anywidget
import matplotlib
import numpy as np
import traitlets

from .codes import bits_for
from .picture import REFRESH, head_figure, show_picture
from .picture import pool as _pool
from .plots import CMAP, _labels, _stack_heads, plot_attention
from .state import LayerSource, WeightsSource, build_mask, explorer_state, keep_all_heads

__all__ = ["AttentionExplorer", "Compare", "Stepper", "ExplorerBase"]

HERE = Path(__file__).parent
VIEWS = ("heatmap", "lines", "grid")
# Colour maps, both safe for red-green colour blindness: viridis runs dark blue -> yellow with
# lightness rising monotonically (no red-green axis; readable in greyscale); RdBu (ColorBrewer,
# marked colour-blind safe) puts blue against red, which deuteranopes and protanopes tell apart.
DIVERGING = "RdBu_r"
MAX_COMPARE = 8 * 1024 * 1024  # weights per array: compare sends float32
STATIC_PANELS, STATIC_TOKENS = 48, 128  # the static fallback shows at most these (pooled beyond)
# Up to this many weights (all layers) every layer goes to the browser when the explorer is built,
# so switching layers needs no kernel; beyond, only the layer shown (and the grid's thumbnails).
ALL_AT_BUILD = 8 * 1024 * 1024
# A layer of up to this many weights travels whole, so switching head needs no kernel; beyond, one head
# at a time (the one on screen, or the heads the lines view overlays): 1 MB instead of 12 at 12 x 1024².
WHOLE_LAYER = 1024 * 1024
THUMB = 64  # the grid's thumbnails: at most THUMB queries (evenly spaced) x THUMB key blocks (max-pooled)


def _colour_map(name):
    """256 RGB colours, flattened, from a matplotlib colour map."""
    colours = matplotlib.colormaps[name](np.linspace(0, 1, 256))[:, :3]
    return [int(c) for c in (colours * 255 + 0.5).astype(np.uint8).ravel()]


def _float32(array):
    return np.ascontiguousarray(array, dtype=np.float32).tobytes()


def mosaic_figure(stacked, row_names, title):
    """One image of ``(rows, H, Lq, Lk)`` heatmaps side by side: quick to draw for any size.

    Matrices longer than ``STATIC_TOKENS`` are max-pooled, so sharp attention
    stays visible; a gap of blank cells separates the panels.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .plots import _colorbar, register_png_formatter, weight_norm

    n_rows, n_heads, n_q, n_k = stacked.shape
    if max(n_q, n_k) > STATIC_TOKENS:
        stacked = _pool(stacked, STATIC_TOKENS)
        title += f" (pooled to {stacked.shape[-2]} × {stacked.shape[-1]})"
    if n_rows * n_heads > STATIC_PANELS:
        n_rows = max(1, STATIC_PANELS // n_heads)
        stacked, row_names = stacked[:n_rows], row_names[:n_rows]
        title += f"; the first {n_rows} rows"
    p_q, p_k = stacked.shape[-2:]
    gap_q, gap_k = max(1, p_q // 8), max(1, p_k // 8)
    image = np.full((n_rows * (p_q + gap_q) - gap_q, n_heads * (p_k + gap_k) - gap_k), np.nan)
    for r in range(n_rows):
        for h in range(n_heads):
            image[r * (p_q + gap_q):r * (p_q + gap_q) + p_q, h * (p_k + gap_k):h * (p_k + gap_k) + p_k] = stacked[r, h]
    register_png_formatter()
    width = float(np.clip(1.6 * n_heads + 2.0, 5.0, 16.0))
    fig = Figure(figsize=(width, float(np.clip(width * image.shape[0] / image.shape[1] + 1.2, 2.5, 16.0))))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.09, 0.1, 0.78, 0.78))
    cmap = matplotlib.colormaps[CMAP].with_extremes(bad="white")
    shown = ax.imshow(np.clip(image, 0, 1), cmap=cmap, norm=weight_norm(), aspect="auto", interpolation="nearest")
    ax.set_xticks([h * (p_k + gap_k) + p_k / 2 - 0.5 for h in range(n_heads)],
                  [f"head {h}" for h in range(n_heads)], fontsize=12)
    ax.set_yticks([r * (p_q + gap_q) + p_q / 2 - 0.5 for r in range(n_rows)], row_names, fontsize=12)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(title, fontsize=13)
    _colorbar(fig, shown, ax)
    return fig


def _split_buffers(state):
    """``state`` with every binary value replaced by ``None``, the paths to them and the buffers.

    What ipywidgets does before sending a state, written out here so that
    ``save_html`` needs no private ipywidgets function.
    """
    paths, buffers = [], []

    def walk(value, path):
        if isinstance(value, (bytes, bytearray, memoryview)):
            paths.append(path)
            buffers.append(value)
            return None
        if isinstance(value, dict):
            return {k: walk(v, path + [k]) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(v, path + [i]) for i, v in enumerate(value)]
        return value

    return walk(state, []), paths, buffers


class ExplorerBase(anywidget.AnyWidget):
    """What the explorer, compare and stepper widgets share: traits, checks, export, the static picture.

    Not made directly: use :class:`AttentionExplorer`, :class:`Compare` or
    :class:`Stepper`.
    """

    _esm = HERE / "explorer.js"
    _css = HERE / "explorer.css"
    kind = "explorer"

    # Controls that need new weights: the browser sends them, the kernel answers.
    scale = traitlets.Float(1.0).tag(sync=True)
    mask = traitlets.Unicode("none").tag(sync=True)
    valid_keys = traitlets.Int(1).tag(sync=True)
    # What the browser shows: set from Python to steer it; the browser keeps its own changes.
    view = traitlets.Unicode("heatmap").tag(sync=True)
    layer = traitlets.Int(0).tag(sync=True)
    head = traitlets.Int(0).tag(sync=True)
    query = traitlets.Int(0).tag(sync=True)
    large = traitlets.Bool(False).tag(sync=True)
    # Data: labels and sizes, one buffer of codes per layer, extra buffers (compare, stepper).
    _meta = traitlets.Dict().tag(sync=True)
    _weights = traitlets.List().tag(sync=True)
    _weights_heads = traitlets.List().tag(sync=True)  # the heads in each layer's buffer, in order
    _keep = traitlets.Any(b"").tag(sync=True)
    _extra = traitlets.Dict().tag(sync=True)
    _revision = traitlets.Int(0).tag(sync=True)
    # Every browser request carries a new number, so the kernel answers even when nothing changed.
    _request = traitlets.Int(0).tag(sync=True)
    _error = traitlets.Unicode("").tag(sync=True)
    _note = traitlets.Unicode("").tag(sync=True)
    # Only what is shown travels: ``_weights`` holds the layers sent with the last answer (the others
    # are empty) and ``_thumbs`` the grid's thumbnails; each is tagged with the settings
    # (``_generation``) it was computed at. The browser says what it needs in ``_want``.
    _generation = traitlets.Int(0).tag(sync=True)
    _weights_generation = traitlets.Int(0).tag(sync=True)
    _thumbs = traitlets.Any(b"").tag(sync=True)
    _thumb_keep = traitlets.Any(b"").tag(sync=True)
    _thumbs_generation = traitlets.Int(-1).tag(sync=True)
    _want = traitlets.Unicode("").tag(sync=True)
    # The neuron view, on demand: the browser asks for one head's vectors ("layer:head"); the kernel
    # answers with that head's queries and keys as float32 (Lq x D_h, then Lk x D_h) in ``_vectors``.
    _want_vectors = traitlets.Unicode("").tag(sync=True)
    _vectors = traitlets.Any(b"").tag(sync=True)
    _vectors_meta = traitlets.Dict().tag(sync=True)

    _picture_id = None  # the display id of the static picture, once displayed

    def _start(self, source, tokens, key_tokens, *, large, view, scale_label="scale", controls=True,
               extra=None, meta=None, encode=False):
        """Everything the constructors share: labels, metadata, the first weights."""
        if view not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}, got {view!r}.")
        self.source = source
        if key_tokens is None and tokens is not None and len(tokens) == source.n_keys:
            key_tokens = tokens
        self.query_labels = _labels(tokens, source.n_queries, "tokens")
        self.key_labels = _labels(key_tokens, source.n_keys, "key_tokens")
        self._bits = bits_for(source.num_layers * source.num_heads * source.n_queries * source.n_keys)
        self._keeps = {}
        self._sent = None
        scale = source.default_scale
        given = getattr(source, "given_mask", None)
        mask_options = ["none", "causal", "padding"] + (["given"] if given is not None else [])
        mask = "given" if given is not None else "none"
        valid_keys = max(1, source.n_keys - source.n_keys // 4)
        self._per_head = source.num_heads * source.n_queries * source.n_keys > WHOLE_LAYER
        buffers, heads, keep, thumbs = [], [], b"", {}
        if encode:
            total = source.num_layers * source.num_heads * source.n_queries * source.n_keys
            layers = range(source.num_layers) if total <= ALL_AT_BUILD else [0]
            buffers, heads, keep = self._encode(scale, mask, valid_keys, layers, [0] if self._per_head else None)
            thumbs = self._thumbnails(scale, mask, valid_keys)
        note = source.note(scale) if encode and hasattr(source, "note") else ""
        given_label = getattr(source, "given_label", None) or "given (the mask= argument)"
        super().__init__(
            scale=scale, mask=mask, valid_keys=valid_keys, view=view, layer=0, head=0,
            query=source.n_queries - 1, large=bool(large), _extra=extra or {},
            _weights=buffers, _weights_heads=heads, _keep=keep, _note=note, **thumbs,
            _meta={
                "kind": self.kind, "num_layers": source.num_layers, "num_heads": source.num_heads,
                "n_queries": source.n_queries, "n_keys": source.n_keys,
                "query_labels": self.query_labels, "key_labels": self.key_labels,
                "bits": self._bits, "default_scale": scale, "scale_max": round(4 * scale, 4),
                "scale_label": scale_label, "mask_options": mask_options, "controls": controls,
                "mask_labels": {"given": given_label} if given is not None else {},
                "colormap": _colour_map(CMAP), "diverging": _colour_map(DIVERGING),
                "colormap_name": CMAP, "diverging_name": "RdBu",
                "has_vectors": self.kind == "explorer" and isinstance(source, LayerSource),
                "per_head": self._per_head,
                **self._thumb_meta(),
                **(meta or {}),
            },
        )
        self.observe(self._picture_is_stale, names=["scale", "mask", "valid_keys", "view", "layer", "head"])

    # -- validation ---------------------------------------------------------------------

    @traitlets.validate("scale")
    def _check_scale(self, proposal):
        scale = proposal["value"]
        if not np.isfinite(scale) or scale < 0:
            raise traitlets.TraitError(f"scale must be a finite number >= 0, got {scale}.")
        return scale

    @traitlets.validate("mask")
    def _check_mask(self, proposal):
        options = self._meta.get("mask_options", ["none", "causal", "padding"])
        if proposal["value"] not in options:
            raise traitlets.TraitError(f"mask must be one of {options}, got {proposal['value']!r}.")
        return proposal["value"]

    @traitlets.validate("valid_keys", "layer", "head", "query", "view")
    def _check_index(self, proposal):
        name, value = proposal["trait"].name, proposal["value"]
        if name == "view":
            if value not in VIEWS:
                raise traitlets.TraitError(f"view must be one of {VIEWS}, got {value!r}.")
            return value
        if not self._meta:
            return value  # during construction
        low, high = {"valid_keys": (1, self._meta["n_keys"]),
                     "layer": (0, self._meta["num_layers"] - 1),
                     "head": (0, self._meta["num_heads"] - 1),
                     "query": (0, self._meta["n_queries"] - 1)}[name]
        if not low <= value <= high:
            raise traitlets.TraitError(f"{name} must be in [{low}, {high}], got {value}.")
        return value

    # -- weights as codes ---------------------------------------------------------------------

    def _encode(self, scale, mask_kind, valid_keys, layers, heads=None):
        """The codes of ``heads`` (default: all) of ``layers`` (the others empty), for a scale and a mask.

        Returns:
            tuple: One buffer per layer (the heads' ``(Lq, Lk)`` codes one after
            another), the heads in each, and the keep bitmap.
        """
        s = self.source
        heads = list(range(s.num_heads)) if heads is None else sorted(set(heads))
        mask = build_mask(mask_kind, s.n_queries, s.n_keys, valid_keys, s.given_mask)
        # memoryviews: the codes go to the comm without a copy
        buffers = [memoryview(s.codes(i, scale, mask, self._bits, heads)).cast("B") if i in layers else b""
                   for i in range(s.num_layers)]
        sent = [heads if i in layers else [] for i in range(s.num_layers)]
        return buffers, sent, self._keep_bytes(mask, (mask_kind, valid_keys if mask_kind == "padding" else None))

    def _thumb_rows(self):
        """The queries the thumbnails show: all up to ``THUMB``, else ``THUMB`` evenly spaced."""
        n_q = self.source.n_queries
        return np.arange(n_q) if n_q <= THUMB else np.unique(np.linspace(0, n_q - 1, THUMB).round().astype(int))

    def _thumb_meta(self):
        s = self.source
        step = math.ceil(s.n_keys / THUMB)
        return {"thumb_rows": int(len(self._thumb_rows())), "thumb_cols": int(math.ceil(s.n_keys / step)),
                "thumb_key_block": step}

    def _thumbnails(self, scale, mask_kind, valid_keys):
        """The grid's thumbnails as traits: 8-bit codes ``(layers, H, rows, key blocks)`` and their keep.

        Each thumbnail row is a query's weights, exact, max-pooled over blocks
        of ``thumb_key_block`` keys (a sharp weight stays visible); beyond
        ``THUMB`` queries, ``THUMB`` evenly spaced queries are shown.
        """
        s = self.source
        mask = build_mask(mask_kind, s.n_queries, s.n_keys, valid_keys, s.given_mask)
        rows = self._thumb_rows()
        step = math.ceil(s.n_keys / THUMB)
        pad = -s.n_keys % step
        out = np.empty((s.num_layers, s.num_heads, len(rows), (s.n_keys + pad) // step), np.uint8)
        for layer in range(s.num_layers):
            codes = s.row_codes(layer, rows, scale, mask, 8)  # (H, rows, Lk)
            if step > 1:
                codes = np.pad(codes, [(0, 0), (0, 0), (0, pad)]).reshape(*codes.shape[:2], -1, step).max(-1)
            out[layer] = codes
        keep = b""
        if mask is not None:
            kept = keep_all_heads(mask, s.n_queries, s.n_keys)[rows]  # (rows, Lk)
            kept = np.pad(kept, [(0, 0), (0, pad)]).reshape(len(rows), -1, step).any(-1)
            keep = kept.astype(np.uint8).tobytes()
        return {"_thumbs": memoryview(out).cast("B"), "_thumb_keep": keep,
                "_thumbs_generation": self._generation if self._meta else 0}

    def _keep_bytes(self, mask, key):
        """``(Lq, Lk)`` uint8, 1 where every head may attend; empty without a mask."""
        if mask is None:
            return b""
        if key not in self._keeps:
            keep = keep_all_heads(mask, self.source.n_queries, self.source.n_keys)  # (Lq, Lk)
            self._keeps = {key: keep.astype(np.uint8).tobytes()}
        return self._keeps[key]

    # -- the numbers, without a browser -----------------------------------------------------

    def controls(self):
        """The current settings, as keyword arguments of :func:`explorer_state`."""
        return {"layer": self.layer, "head": self.head, "query": self.query, "mask": self.mask,
                "scale": self.scale, "valid_keys": self.valid_keys}

    @property
    def state(self):
        """:func:`explorer_state` at the current settings (what the heatmap and bars show)."""
        return explorer_state(self.source, **self.controls())

    def shown_weights(self, layer=None):
        """The weights ``(H, Lq, Lk)`` of a layer as the browser decodes them from the buffers."""
        from .codes import decode

        layer = self.layer if layer is None else layer
        s = self.source
        fresh = self._weights_generation == self._generation and len(self._weights_heads[layer]) == s.num_heads
        sent = self._weights[layer] if fresh else b""
        if not len(sent):  # not sent (whole) at these settings: what the browser would get when it asks
            sent = self._encode(self.scale, self.mask, self.valid_keys, [layer])[0][layer]
        codes = np.frombuffer(sent, dtype=np.uint16 if self._bits == 16 else np.uint8)
        return decode(codes, self._bits).reshape(s.num_heads, s.n_queries, s.n_keys)

    # -- export and display without a widget front-end -------------------------------------------

    def _standalone_state(self):
        """The synced state as JSON with base64 buffers (what ``save_html`` inlines)."""
        state = self.get_state()
        if self.kind == "explorer":  # no kernel to ask: every layer, at the current settings
            state["_weights"], state["_weights_heads"], _ = self._encode(self.scale, self.mask, self.valid_keys,
                                                                         range(self.source.num_layers))
            state.update(self._thumbnails(self.scale, self.mask, self.valid_keys))
            state["_weights_generation"] = state["_thumbs_generation"] = state["_generation"]
        state, paths, buffers = _split_buffers(state)
        state["_meta"] = {**state["_meta"], "offline": True}
        return {"state": state, "buffer_paths": paths,
                "buffers": [base64.b64encode(bytes(b)).decode("ascii") for b in buffers]}

    def save_html(self, path, title="Attention explorer"):
        """Write a standalone HTML file: the explorer with its data inlined, no network needed.

        The browser-side views (heatmap, lines, grid, hover, zoom, export) all
        work; the scale and mask controls need the kernel and are left out.

        Args:
            path (str or Path): Where to write, e.g. ``"attention.html"``.
            title (str): The page title.

        Returns:
            Path: The file written.
        """
        path = Path(path)
        script = (HERE / "explorer.js").read_text()
        data = json.dumps(self._standalone_state()).replace("</", "<\\/")
        page = (
            "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title>\n<style>\n{(HERE / 'explorer.css').read_text()}\n"
            "body { font-family: sans-serif; margin: 16px; }\n</style></head>\n<body>\n"
            f"<h2>{html.escape(title)}</h2>\n<div id='mha-root'></div>\n"
            f"<script type='application/json' id='mha-data'>{data}</script>\n"
            f"<script type='module'>\n{script}\n"
            "renderStandalone(JSON.parse(document.getElementById('mha-data').textContent),"
            " document.getElementById('mha-root'));\n</script>\n</body></html>\n"
        )
        path.write_text(page, encoding="utf-8")
        return path

    def static_figure(self):
        """A static picture of what the widget holds (matplotlib ``Figure``)."""
        raise NotImplementedError

    def picture_description(self):
        """What the static picture shows, in words: its alt text."""
        s = self.source
        return (f"Attention explorer ({self.kind}), static picture: {s.num_layers} layer(s) × "
                f"{s.num_heads} heads, {s.n_queries} queries × {s.n_keys} keys")

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs)
        if isinstance(bundle, tuple):
            bundle = bundle[0]
        s = self.source
        bundle["text/plain"] = (
            f"AttentionExplorer ({self.kind}): {s.num_layers} layer(s) × {s.num_heads} heads, "
            f"{s.n_queries} queries × {s.n_keys} keys (a static picture shows without a widget front-end)"
        )
        return bundle

    def _ipython_display_(self):
        """The widget, then its static picture in an output of its own (with a display id)."""
        from IPython.display import display

        display(self._repr_mimebundle_(), raw=True)
        show_picture(self)

    def _picture_is_stale(self, change):
        if self._picture_id is not None:
            REFRESH.mark(self)

    def _update_picture(self):
        """Redraw the displayed static picture at the current settings."""
        from IPython.display import update_display

        from .picture import picture_bundle

        try:
            data, metadata = picture_bundle(self)
        except Exception as error:  # the picture must never break a control: say so in its place
            data, metadata = {"text/plain": f"(the static picture failed: {type(error).__name__}: {error})"}, {}
        update_display(data, raw=True, metadata=metadata, display_id=self._picture_id)


class AttentionExplorer(ExplorerBase):
    """Explore attention weights in the browser: heatmap, lines, layer × head grid.

    Give either a layer and its inputs, or precomputed weights.

    Args:
        layer (MultiHeadAttention, optional): ``mhacourse.MultiHeadAttention``
            or ``mlx.nn.MultiHeadAttention`` (or a layer with ``query_proj``,
            ``key_proj``, ``value_proj`` and ``num_heads``). At the layer's own
            scale the weights come from its forward pass,
            ``layer(q, k, v, mask=..., return_weights=True)``; a layer without
            ``return_weights`` (MLX's), or another scale, recomputes them from
            ``query_proj`` and ``key_proj``, and the subtitle says so.
        queries (array, optional): ``(B, Lq, D)`` or ``(Lq, D)``; batch 0 is shown.
        keys (array, optional): Default: ``queries``.
        values (array, optional): Default: ``keys``.
        tokens (list[str], optional): Labels of the queries.
        key_tokens (list[str], optional): Labels of the keys. Default:
            ``tokens`` when the lengths match.
        mask (array or str, optional): The mask to start with (shown as
            "given" in the mask selector). Precomputed weights without
            ``mask`` are searched for one: weights that are exactly 0 above
            the diagonal, or in whole columns, show as a detected causal or
            padding mask.
        weights (array or list, optional): Instead of a layer: ``(H, Lq, Lk)``,
            ``(B, H, Lq, Lk)`` or a list of those, one per layer. The scale is
            then a factor on their scores.
        large (bool, optional): Presenter mode: large fonts, and the matrix,
            grid and bars sized to fit the window. Default: ``False``.
        view (str, optional): ``"heatmap"``, ``"lines"`` or ``"grid"``.
            Default: ``"heatmap"``.
    """

    kind = "explorer"

    def __init__(self, layer=None, queries=None, keys=None, values=None, *, tokens=None,
                 key_tokens=None, mask=None, weights=None, large=False, view="heatmap"):
        if (layer is None) == (weights is None):
            raise ValueError("give either layer (with queries) or weights, not both and not neither.")
        if layer is not None:
            source = LayerSource(layer, queries, keys, values, mask=mask)
        else:
            source = WeightsSource(weights, mask=mask)
        self._start(source, tokens, key_tokens, large=large, view=view, encode=True,
                    scale_label="scale" if layer is not None else "scale ×")
        self._sent = self._settings()
        self.observe(self._on_new_weights, names=["scale", "mask", "valid_keys", "_request"])
        self.observe(self._on_steer, names=["layer", "head", "view"])
        self.observe(self._on_want_vectors, names=["_want_vectors"])

    # -- the kernel's only job: new weights ----------------------------------------------------

    def _settings(self):
        return (self.scale, self.mask, self.valid_keys, self._request)

    def _on_steer(self, change):
        # Python moved the browser to a layer, head or view whose weights are not there: the browser asks.
        self._want = ""

    def _on_new_weights(self, change):
        # The browser sends a control and a new request number together: answer once.
        if self._settings() != self._sent:
            self.send_weights()

    def _wanted(self):
        """What the browser shows: ``("grid", None, None)`` or ``("layer", index, heads)``.

        The browser asks ``"grid"``, ``"layer:L"`` (every head) or ``"layer:L:h,h"``
        (those heads); without a request, what Python last set.
        """
        kind, _, rest = (self._want or "").partition(":")
        index, _, heads = rest.partition(":")
        if kind == "grid":
            return "grid", None, None
        if kind == "layer" and index.isdigit() and int(index) < self.source.num_layers:
            picked = [int(h) for h in heads.split(",") if h.isdigit() and int(h) < self.source.num_heads]
            return "layer", int(index), (picked or None) if heads else None
        if self.view == "grid":
            return "grid", None, None
        return "layer", self.layer, [self.head] if self._per_head else None

    def send_weights(self):
        """Recompute and send only what the browser shows: the heads of one layer, or the grid's thumbnails.

        A layer of more than :data:`WHOLE_LAYER` weights is sent a head at a
        time (the browser says which); a smaller one whole. A change of scale
        or mask starts a new generation: the browser drops what it holds from
        older settings and asks for each layer or head again when it shows it.
        An error is sent to the browser (shown under the controls) instead of
        leaving it waiting.
        """
        settings = (self.scale, self.mask, self.valid_keys)
        fresh = settings != self._sent[:3]
        # A change made in Python (a later cell), not asked for by the browser: the layer shown and
        # the thumbnails both go, so that switching views afterwards needs no kernel.
        from_python = self._request == self._sent[3]
        self._sent = self._settings()
        generation = self._generation + 1 if fresh else self._generation
        kind, layer, heads = self._wanted()
        try:
            update = {}
            if kind == "grid" or from_python:
                update = self._thumbnails(*settings)
                update["_thumbs_generation"] = generation
            if kind == "grid" and not from_python:
                _, _, keep = self._encode(*settings, [])
            else:
                buffers, sent, keep = self._encode(*settings, [layer], heads)
                update.update({"_weights": buffers, "_weights_heads": sent, "_weights_generation": generation})
        except Exception as error:  # shown in the browser; the kernel keeps running
            with self.hold_sync():
                self._error = f"{type(error).__name__}: {error}"
                self._revision += 1
            return
        with self.hold_sync():
            self._generation = generation
            for name, value in update.items():
                setattr(self, name, value)
            self._keep = keep
            self._note = self.source.note(self.scale)
            self._error = ""
            self._revision += 1

    def vectors(self, head=None, layer=0):
        """One head's queries and keys: what the neuron view draws behind a weight.

        The score of query ``i`` and key ``j`` is ``scale * sum_d q[i, d] * k[j, d]``:
        the view shows each product ``q[i, d] * k[j, d]``.

        Args:
            head (int, optional): Default: the head shown.
            layer (int): Only ``0``: a layer's explorer has one layer.

        Returns:
            tuple(np.ndarray, np.ndarray): ``q`` of shape ``(Lq, D_h)`` and ``k``
            of shape ``(Lk, D_h)``, float32.

        Raises:
            ValueError: For precomputed weights, which carry no vectors.
        """
        import mlx.core as mx

        s = self.source
        if not isinstance(s, LayerSource):
            raise ValueError("precomputed weights carry no queries or keys: give the layer and its inputs "
                             "to see the vectors behind a weight.")
        head = self.head if head is None else head
        if layer != 0 or not 0 <= head < s.num_heads:
            raise ValueError(f"no head {head} in layer {layer}: the explorer has 1 layer of {s.num_heads} heads.")
        group = s.num_heads // s.k.shape[1]  # grouped-query attention: head h reads key head h // group
        q = np.array(s.q[0, head].astype(mx.float32))
        k = np.array(s.k[0, head // group].astype(mx.float32))
        return q, k

    def _on_want_vectors(self, change):
        layer, _, head = (self._want_vectors or "").partition(":")
        if not (layer.isdigit() and head.isdigit()):
            return
        try:
            q, k = self.vectors(int(head), int(layer))
        except ValueError as error:
            self._vectors_meta = {"layer": int(layer), "head": int(head), "error": str(error)}
            return
        with self.hold_sync():
            self._vectors = memoryview(np.concatenate([q.ravel(), k.ravel()])).cast("B")
            self._vectors_meta = {"layer": int(layer), "head": int(head), "dims": int(q.shape[1]),
                                  "n_queries": int(q.shape[0]), "n_keys": int(k.shape[0])}

    @classmethod
    def compare(cls, yours, reference, *, tokens=None, key_tokens=None, large=False):
        """Your weights next to the reference's: see :class:`Compare`."""
        return Compare(yours, reference, tokens=tokens, key_tokens=key_tokens, large=large)

    @classmethod
    def stepper(cls, layer_or_fn, queries, keys=None, values=None, *, head=0, scale=None, mask=None,
                tokens=None, key_tokens=None, large=False):
        """One head's attention step by step: see :class:`Stepper`."""
        return Stepper(layer_or_fn, queries, keys, values, head=head, scale=scale, mask=mask,
                       tokens=tokens, key_tokens=key_tokens, large=large)

    def _mask_name(self):
        return self.mask if self.mask != "given" else self._meta["mask_labels"].get("given", "given")

    def picture_description(self):
        """What the static picture shows, in words: its alt text."""
        s = self.source
        return (f"Attention explorer: layer {self.layer} of {s.num_layers}, head {self.head} of {s.num_heads}, "
                f"{s.n_queries} queries × {s.n_keys} keys, mask: {self._mask_name()}, "
                f"scale {self.scale:.3g} (static picture of the interactive explorer)")

    def static_figure(self):
        """The picture a notebook keeps: the head shown, with token labels, a colour bar and every head.

        Returns:
            matplotlib.figure.Figure: Titled with the layer, head, mask and
            scale; masked keys are grey.
        """
        s = self.source
        # 8-bit codes: as many levels as the colour map has colours, and the source's fast path.
        mask = build_mask(self.mask, s.n_queries, s.n_keys, self.valid_keys, s.given_mask)
        codes = s.codes(self.layer, self.scale, mask, 8)  # (H, Lq, Lk)
        keep = None if mask is None else keep_all_heads(mask, s.n_queries, s.n_keys)
        layers = f"layer {self.layer} of {s.num_layers} · " if s.num_layers > 1 else ""
        title = f"Attention explorer · {layers}head {self.head} of {s.num_heads}"
        subtitle = f"mask: {self._mask_name()} · scale {self.scale:.3g}"
        note = s.note(self.scale) if hasattr(s, "note") else ""
        if note:
            subtitle += f"\n{note}"
        return head_figure(codes, self.head, self.query_labels, self.key_labels, keep=keep,
                           title=title, subtitle=subtitle, bits=8)


class Compare(ExplorerBase):
    """Your weights next to the reference's, and their difference, largest error marked.

    Each panel has a column of row sums: a softmax over the wrong axis shows
    as rows that do not sum to 1.

    Args:
        yours (array or list): ``(H, Lq, Lk)``, ``(B, H, Lq, Lk)`` (batch 0)
            or a list of those, one per layer; any values (NaN, negative).
        reference (array or list): The same shape, e.g. from
            :func:`mhacourse.viz.reference_weights`.
        tokens (list[str], optional): Labels of the queries.
        key_tokens (list[str], optional): Labels of the keys.
        large (bool, optional): Larger fonts, for a projector.

    Attributes:
        largest_error (tuple): ``(|difference|, layer, head, query, key)``.
    """

    kind = "compare"

    def __init__(self, yours, reference, *, tokens=None, key_tokens=None, large=False):
        mine = _stack_heads(yours)  # (layers, H, Lq, Lk)
        theirs = _stack_heads(reference)  # (layers, H, Lq, Lk)
        if mine.shape != theirs.shape:
            raise ValueError(f"yours and reference must have the same shape (layers, heads, n_queries, "
                             f"n_keys); got {mine.shape} and {theirs.shape}.")
        if mine.size > MAX_COMPARE:
            raise ValueError(f"compare shows at most {MAX_COMPARE} weights per array; got {mine.size}. "
                             "Pass fewer layers or heads.")
        if not np.all(np.isfinite(theirs)) or theirs.min() < 0:
            raise ValueError("reference must be attention weights: finite and non-negative.")
        difference = mine - theirs
        size = np.where(np.isfinite(difference), np.abs(difference), np.inf)
        where = np.unravel_index(int(np.argmax(size)), size.shape)
        largest = float(size[where])
        self.largest_error = (largest, *(int(i) for i in where))
        self._yours = mine
        extra = {"yours": [_float32(m) for m in mine], "reference": [_float32(t) for t in theirs]}
        self._start(WeightsSource(list(theirs), detect=False), tokens, key_tokens, large=large,
                    view="heatmap", controls=False, extra=extra,
                    meta={"largest_error": [largest if np.isfinite(largest) else None,
                                            *(int(i) for i in where)]})
        self.layer, self.head, self.query = (int(i) for i in where[:3])

    def picture_description(self):
        """What the static picture shows, in words: its alt text."""
        largest, layer, head, i, j = self.largest_error
        return (f"Attention explorer (compare): yours, the reference and |difference| for layer {layer}; "
                f"largest |difference| {largest:.3g} at head {head}, query {i}, key {j} (static picture)")

    def static_figure(self):
        """Yours, the reference and |difference| for the layer with the largest error."""
        s = self.source
        largest, layer, head, i, j = self.largest_error
        rows = [self._yours[layer], s.original[layer], np.abs(self._yours[layer] - s.original[layer])]
        names = ["yours", "reference", "|difference|"]
        title = (f"layer {layer}: largest |difference| {largest:.3g} at head {head}, "
                 f"query {i} “{self.query_labels[i]}”, key {j} “{self.key_labels[j]}”")
        return mosaic_figure(np.stack(rows), names, title)


class Stepper(ExplorerBase):
    """Step through one head's attention: Q, K, V, then scores, scaled, masked, softmax, weights @ V.

    Scores, scaled and masked share one colour scale, so scaling visibly
    shrinks the scores; the colour bar names the range of each step.

    Args:
        layer_or_fn: An attention layer (``mhacourse.MultiHeadAttention``
            or ``mlx.nn.MultiHeadAttention``), or a scaled dot-product
            attention function ``fn(queries, keys, values, *, scale,
            mask=None)`` such as your own.
        queries (array): For a layer, its inputs ``(B, Lq, dims)``; for a
            function, per-head arrays ``(B, H, Lq, D_h)``. Batch 0 is shown.
        keys (array, optional): Default: ``queries``.
        values (array, optional): Default: ``keys``.
        head (int): The head to show. Default: ``0``.
        scale (float, optional): For a function (required); a layer uses
            ``1 / sqrt(D_h)`` from its projected queries, as its forward pass does.
        mask (array or str, optional): As for the layer or function.
        tokens (list[str], optional): Labels of the queries.
        key_tokens (list[str], optional): Labels of the keys.
        large (bool, optional): Larger fonts, for a projector.

    Attributes:
        steps (list[dict]): :func:`~mhacourse.viz.attention_steps`.
        function_errors (dict or None): With a function, the largest
            difference of its weights and output from each step's.
    """

    kind = "stepper"

    def __init__(self, layer_or_fn, queries, keys=None, values=None, *, head=0, scale=None, mask=None,
                 tokens=None, key_tokens=None, large=False):
        import mlx.core as mx

        from .reference import attention_steps, project_heads, sdpa_weights

        keys = queries if keys is None else keys
        values = keys if values is None else values
        fn = None
        if hasattr(layer_or_fn, "num_heads"):
            q, k, v = project_heads(layer_or_fn, queries, keys, values)  # (B, H, L, D_h)
            # What both layers use at call time; a layer attribute named scale is never read.
            scale = math.sqrt(1 / q.shape[-1])
        elif callable(layer_or_fn):
            if scale is None:
                raise ValueError("scale is required with a function: stepper(fn, q, k, v, scale=...).")
            fn, (q, k, v) = layer_or_fn, (queries, keys, values)
            for name, x in (("queries", q), ("keys", k), ("values", v)):
                if not isinstance(x, mx.array) or x.ndim != 4:
                    raise ValueError(f"with a function, {name} must be an mx.array (B, H, L, D_h); got "
                                     f"{getattr(x, 'shape', type(x).__name__)}.")
        else:
            raise TypeError("layer_or_fn must be an attention layer or a scaled dot-product attention "
                            f"function, got {type(layer_or_fn).__name__}.")
        if not 0 <= head < q.shape[1]:
            raise ValueError(f"head must be in [0, {q.shape[1] - 1}], got {head}.")
        group = q.shape[1] // k.shape[1]  # grouped-query attention: head h reads key head h // group
        one_mask = mask
        if isinstance(mask, mx.array) and mask.ndim == 4:
            one_mask = mask[:1, head if mask.shape[1] > 1 else 0]  # (1, Lq or 1, Lk)
        qh, kh, vh = q[0, head], k[0, head // group], v[0, head // group]
        steps = attention_steps(qh, kh, vh, scale=scale, mask=one_mask)
        self.steps = steps
        self.function_errors = None
        if fn is not None:
            fn_mask = mask[:1] if isinstance(mask, mx.array) and mask.ndim == 4 else mask
            yours_w = np.array(sdpa_weights(fn, q[:1], k[:1], scale=scale, mask=fn_mask)[0, head].astype(mx.float32))
            yours_out = np.array(fn(q[:1], k[:1], v[:1], scale=scale, mask=fn_mask)[0, head].astype(mx.float32))
            self.function_errors = {
                "softmax": float(np.nanmax(np.abs(yours_w - steps[3]["matrix"]))),
                "weights @ V": float(np.nanmax(np.abs(yours_out - steps[4]["matrix"]))),
            }
        inputs = [np.array(x.astype(mx.float32)) for x in (qh, kh, vh)]  # (Lq, D_h), (Lk, D_h), (Lk, D_v)
        meta = {"head_shown": int(head), "steps": [
            {"name": s["name"], "formula": s["formula"], "shape": s["shape"],
             "rows": int(s["matrix"].shape[0]), "cols": int(s["matrix"].shape[1])} for s in steps],
            "inputs": [{"name": name, "rows": int(x.shape[0]), "cols": int(x.shape[1])}
                       for name, x in zip(("Q", "K", "V"), inputs)],
            "function_errors": self.function_errors}
        extra = {"steps": [_float32(s["matrix"]) for s in steps], "inputs": [_float32(x) for x in inputs]}
        weights = steps[3]["matrix"][None, None]  # (1, 1, Lq, Lk)
        self._start(WeightsSource(weights, detect=False), tokens, key_tokens, large=large, view="heatmap",
                    controls=False, extra=extra, meta=meta)

    def picture_description(self):
        """What the static picture shows, in words: its alt text."""
        return (f"Attention explorer (stepper): head {self._meta['head_shown']}, the softmax step, "
                f"{self.source.n_queries} queries × {self.source.n_keys} keys (static picture)")

    def static_figure(self):
        """The softmax step: the head's weights."""
        return plot_attention(self.steps[3]["matrix"], self.query_labels, self.key_labels,
                              title=f"head {self._meta['head_shown']}: softmax(scaled scores + mask)")
