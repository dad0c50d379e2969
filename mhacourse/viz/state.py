"""What the explorer shows, as plain functions of its controls.

The widget only reads controls and draws; every number it shows comes from
:func:`explorer_state`, which can be called (and tested) without a browser.

Two sources of weights:

* :class:`LayerSource`: a layer and its inputs, ``mhacourse.MultiHeadAttention``
  or ``mlx.nn.MultiHeadAttention`` (any projections: ``Linear``, quantized or
  wrapped). :func:`~mhacourse.viz.reference.project_heads` gives the per-head
  queries and keys once; :meth:`LayerSource.weights` recomputes the weights
  with :func:`mhacourse.attention_weights` for a scale and a mask, and
  :meth:`LayerSource.codes` the widget's codes from scores kept in memory.
* :class:`WeightsSource`: weights computed elsewhere, one array per layer.
  Their logarithms are the scores up to a per-row constant, so a scale change
  (``softmax(log(w) · factor)``) and an extra mask (renormalising over the
  allowed keys) are recomputed exactly.
"""

import math
from dataclasses import dataclass, field

import mlx.core as mx
import numpy as np

from .codes import DTYPES, centred_scores, softmax_sqrt_codes, sqrt_codes
from .masking import keep_of, mask_to_numpy
from .plots import to_numpy
from .reference import _as_batch, project_heads, softmax_rows

__all__ = [
    "MASK_KINDS",
    "LayerSource",
    "WeightsSource",
    "ExplorerState",
    "build_mask",
    "explorer_state",
]

MASK_KINDS = ("none", "causal", "padding", "given")


def mask_parts(mask, n_queries, n_keys):
    """A mask as NumPy ``(keep, additive)``, each ``None`` or broadcastable to ``(H, L_q, L_k)``."""
    if mask is None:
        return None, None
    array = mask_to_numpy(mask, n_queries, n_keys, first_example=True, as_boolean=False)
    return (array, None) if array.dtype == np.bool_ else (None, array)


def _first_example(x, name):
    if x is None:
        return None
    return _as_batch(x, name)[:1]  # (1, L, D): the explorer shows batch 0


def _mask_for_first_example(mask):
    if mask is None or isinstance(mask, str):
        return mask
    if not isinstance(mask, mx.array):
        mask = mx.array(np.asarray(mask))
    if mask.ndim == 4 and mask.shape[0] > 1:
        return mask[:1]  # (1, H or 1, Lq or 1, Lk)
    return mask


class LayerSource:
    """Per-head queries and keys of a layer, from which weights are recomputed.

    Args:
        layer: An attention layer: :class:`mhacourse.MultiHeadAttention`,
            ``mlx.nn.MultiHeadAttention``, or any layer with ``query_proj``,
            ``key_proj``, ``value_proj`` and ``num_heads`` that splits heads
            as MLX's layer does. The projections may be quantized or wrapped.
        queries (array): ``(B, Lq, D)`` or ``(Lq, D)``; batch 0 is shown.
        keys (array, optional): Default: ``queries`` (self-attention).
        values (array, optional): Default: ``keys``.
        mask (array or str, optional): The mask the layer is used with.
    """

    def __init__(self, layer, queries, keys=None, values=None, mask=None):
        queries = _first_example(queries, "queries")
        if queries is None:
            raise ValueError("queries are required with a layer (the explorer runs the layer on them).")
        keys = queries if keys is None else _first_example(keys, "keys")
        values = keys if values is None else _first_example(values, "values")
        # project_heads checks the layer (TypeError naming the attribute it lacks).
        q, k, _ = project_heads(layer, queries, keys, values)  # (1, H, Lq, D_h), (1, H, Lk, D_h)
        mx.eval(q, k)
        self.q, self.k = q, k
        self.layer = layer
        self.inputs = (queries, keys, values)
        self.num_layers = 1
        self.num_heads = q.shape[1]
        self.n_queries, self.n_keys = q.shape[2], k.shape[2]
        # Both layers take the scale from the projected queries at call time.
        self.default_scale = math.sqrt(1 / q.shape[-1])
        self.given_mask = _mask_for_first_example(mask)
        self.given_label = None
        self._scores = self._work = self._centred = None
        self._forward_cache = (None, None)
        self.forward_error = None
        self.uses_forward = self._forward(None) is not None

    def _forward(self, mask):
        """The layer's own weights ``(H, Lq, Lk)`` from ``layer(q, k, v, mask=..., return_weights=True)``.

        ``None`` when the layer has no ``return_weights`` (``mlx.nn.MultiHeadAttention``)
        or its forward pass fails; :attr:`forward_error` then says why.
        """
        key = _mask_key(mask)
        if self._forward_cache[0] == key and key is not None:
            return self._forward_cache[1]
        try:
            result = self.layer(*self.inputs, mask=mask, return_weights=True)
        except TypeError as error:
            if "return_weights" in str(error):
                self.forward_error = "the layer has no return_weights"
            else:
                self.forward_error = f"its forward pass raised TypeError: {error}"
            return None
        except Exception as error:  # a learner's layer may fail in any way: say so, show the projections
            self.forward_error = f"its forward pass raised {type(error).__name__}: {error}"
            return None
        expected = (1, self.num_heads, self.n_queries, self.n_keys)
        weights = result[1] if isinstance(result, tuple) and len(result) == 2 else None
        if not isinstance(weights, mx.array) or tuple(weights.shape) != expected:
            self.forward_error = (f"return_weights=True gave {getattr(weights, 'shape', type(result).__name__)}, "
                                  f"not weights {expected}")
            return None
        self.forward_error = None
        weights = np.array(weights[0].astype(mx.float32))  # (H, Lq, Lk)
        self._forward_cache = (key, weights)
        return weights

    def from_forward(self, scale):
        """Whether the weights at ``scale`` come from the layer's own forward pass."""
        return self.uses_forward and math.isclose(scale, self.default_scale, rel_tol=1e-6)

    def note(self, scale):
        """Where the weights at ``scale`` come from, in words (the explorer's subtitle)."""
        if self.from_forward(scale):
            return "weights: the layer's own forward pass (return_weights=True)"
        if self.uses_forward:
            return (f"weights recomputed from query_proj and key_proj at scale {scale:.3g} "
                    f"(the layer's forward pass uses {self.default_scale:.3g})")
        return f"weights recomputed from query_proj and key_proj: {self.forward_error}"

    def weights(self, layer_index, scale, mask):
        """The weights ``(H, Lq, Lk)`` for a scale and a mask (``None``, ``"causal"`` or an array)."""
        from mhacourse import attention_weights

        if self.from_forward(scale):
            forward = self._forward(mask)
            if forward is not None:
                return forward
        weights = attention_weights(self.q, self.k, scale=scale, mask=mask)  # (1, H, Lq, Lk)
        return np.array(weights[0])

    def _ensure_scores(self):
        """``q · kᵀ`` of every head, ``(H, Lq, Lk)`` float32, computed once."""
        if self._scores is None:
            scores = self.q.astype(mx.float32) @ self.k.astype(mx.float32).swapaxes(-1, -2)  # (1, H, Lq, Lk)
            self._scores = np.array(scores[0])  # (H, Lq, Lk)
            self._work = np.empty_like(self._scores[0])  # (Lq, Lk): one head at a time

    def codes(self, layer_index, scale, mask, bits=16, heads=None):
        """:meth:`weights` as square-root codes (see :mod:`mhacourse.viz.codes`), computed fast.

        ``heads`` (a list of head indices) limits the work and the result to
        those heads, ``(len(heads), Lq, Lk)``; ``None`` means every head.
        """
        heads = list(range(self.num_heads)) if heads is None else list(heads)
        if self.from_forward(scale):
            forward = self._forward(mask)
            if forward is not None:
                return sqrt_codes(forward[heads], bits)
        self._ensure_scores()
        keep, additive = mask_parts(mask, self.n_queries, self.n_keys)
        codes = np.empty((len(heads), self.n_queries, self.n_keys), DTYPES[bits])
        if additive is not None or scale <= 0:
            for n, h in enumerate(heads):
                codes[n] = softmax_sqrt_codes(self._scores[h], scale, head_part(keep, h), head_part(additive, h),
                                              bits, work=self._work)
            return codes
        # A scale change under the same mask reuses each head's centred scores.
        key = None if keep is None else (keep.shape, keep.tobytes())
        if self._centred is None or self._centred[0] != key:
            self._centred = (key, {})
        centred = self._centred[1]
        for n, h in enumerate(heads):
            if h not in centred:
                centred[h] = centred_scores(self._scores[h], head_part(keep, h))
            codes[n] = softmax_sqrt_codes(centred[h], scale, bits=bits, work=self._work, centred=True)
        return codes

    def row_codes(self, layer_index, rows, scale, mask, bits=8):
        """:meth:`LayerSource.codes` at the query ``rows`` only, ``(H, len(rows), Lk)``."""
        if self.from_forward(scale):
            forward = self._forward(mask)
            if forward is not None:
                return sqrt_codes(forward[:, rows], bits)
        self._ensure_scores()
        keep, additive = mask_parts(mask, self.n_queries, self.n_keys)
        keep, additive = _rows_of(keep, rows, self.n_queries), _rows_of(additive, rows, self.n_queries)
        return softmax_sqrt_codes(self._scores[:, rows], scale, keep, additive, bits)


def head_part(array, head):
    """A mask part (``None`` or ``(H or 1, Lq or 1, Lk)`` or fewer axes) for one head: no head axis left."""
    if array is None or array.ndim < 3:
        return array
    return array[head] if array.shape[0] > 1 else array[0]


def _rows_of(array, rows, n_queries):
    """A mask part (``None`` or broadcastable to ``(…, Lq, Lk)``) restricted to the query ``rows``."""
    if array is None or array.ndim < 2 or array.shape[-2] != n_queries or n_queries == 1:
        return array
    return array[..., rows, :]


class Layers:
    """The given weights, one layer at a time: ``layers[i]`` is float32 ``(H, Lq, Lk)`` (batch 0).

    Nothing is stacked or copied up front: a layer is converted when it is
    asked for and not kept, so long inputs are never held twice.
    """

    def __init__(self, weights):
        given = list(weights) if isinstance(weights, (list, tuple)) else [weights]
        if not given:
            raise ValueError("weights is an empty list; give one (H, Lq, Lk) array per layer.")
        self.given = given
        first = None
        for index, layer in enumerate(given):
            shape = tuple(getattr(layer, "shape", None) or np.shape(layer))
            shape = shape[1:] if len(shape) == 4 else shape
            where = f"weights[{index}]" if len(given) > 1 else "weights"
            if len(shape) != 3:
                raise ValueError(f"{where} must be (heads, n_queries, n_keys) or (batch, heads, n_queries, "
                                 f"n_keys); got shape {tuple(np.shape(layer))}.")
            if first is not None and shape != first:
                raise ValueError(f"every layer must have the same shape; weights[{index}] is {shape}, "
                                 f"weights[0] is {first}.")
            first = shape
        self.shape = (len(given), *first)

    def __len__(self):
        return len(self.given)

    def __getitem__(self, index):
        layer = self.given[index]
        if getattr(layer, "ndim", np.ndim(layer)) == 4:
            layer = layer[0]  # batch 0: (H, Lq, Lk)
        return np.ascontiguousarray(to_numpy(layer), dtype=np.float32)

    def take(self, index, picks, axis):
        """Layer ``index`` at the indices ``picks`` along ``axis`` of ``(H, Lq, Lk)``: sliced before converting.

        ``take(i, rows, axis=1)`` gives some queries of every head (the grid's
        thumbnails), ``take(i, heads, axis=0)`` some heads (what one view shows).
        """
        layer = self.given[index]
        if getattr(layer, "ndim", np.ndim(layer)) == 4:
            layer = layer[0]
        if isinstance(layer, mx.array):
            layer = mx.take(layer, mx.array(np.asarray(picks, dtype=np.int32)), axis=axis)
        else:
            layer = np.take(np.asarray(layer), np.asarray(picks, dtype=np.intp), axis=axis)
        return np.ascontiguousarray(to_numpy(layer), dtype=np.float32)


class WeightsSource:
    """Precomputed weights, one ``(H, Lq, Lk)`` or ``(B, H, Lq, Lk)`` array per layer.

    The scale is a factor on the original scores: 1 shows the weights as given.
    Without ``mask``, the mask is read from the weights' exact zeros when
    ``detect`` (see :func:`detect_mask`). The weights stay as given (see
    :class:`Layers`); at most one layer's scores are kept in memory.
    """

    def __init__(self, weights, mask=None, detect=True):
        layers = Layers(weights)
        for index in range(len(layers)):  # one layer at a time: no (layers, H, Lq, Lk) temporary
            layer = layers[index]
            if not np.all(np.isfinite(layer)) or layer.min() < 0:
                raise ValueError("weights must be finite and non-negative (attention weights, not scores).")
        self.original = layers
        self.num_layers, self.num_heads, self.n_queries, self.n_keys = layers.shape
        self.default_scale = 1.0
        self.given_mask = _mask_for_first_example(mask)
        self.given_label = None
        if mask is None and detect:
            self.given_mask, self.given_label = detect_mask(layers)
        self._logs = {}

    def note(self, scale):
        """Where the weights come from, in words (the explorer's subtitle)."""
        if scale == 1.0:
            return "precomputed weights, as given"
        return f"precomputed weights, their scores (log w) × {scale:.3g}"

    @staticmethod
    def _logs_of(weights):
        keep = weights > 0
        with np.errstate(divide="ignore"):
            return np.log(np.where(keep, weights, 1.0)).astype(np.float32), keep

    def _log_weights(self, layer_index, head):
        """``(log w, w > 0)`` of one head of a layer; zero weights were masked and stay masked.

        Only the last layer asked for is kept, head by head.
        """
        if self._logs.get("layer") != layer_index:
            self._logs = {"layer": layer_index}
        if head not in self._logs:
            self._logs[head] = self._logs_of(self.original.take(layer_index, [head], axis=0)[0])
        return self._logs[head]

    def weights(self, layer_index, scale, mask):
        if scale == 1.0 and mask is None:
            return self.original[layer_index]  # as given
        heads = [self._log_weights(layer_index, h) for h in range(self.num_heads)]
        scores = np.stack([log_weights for log_weights, _ in heads]) * scale  # (H, Lq, Lk)
        keep = np.stack([kept for _, kept in heads])  # (H, Lq, Lk)
        if mask is not None:
            keep = keep & keep_matrix(mask, self.n_queries, self.n_keys)
        return softmax_rows(np.where(keep, scores, -np.inf))  # (H, Lq, Lk)

    def codes(self, layer_index, scale, mask, bits=16, heads=None):
        """:meth:`weights` as square-root codes; the weights as given when nothing changes them.

        ``heads`` (a list of head indices) limits the work and the result to
        those heads, ``(len(heads), Lq, Lk)``; ``None`` means every head.
        """
        heads = list(range(self.num_heads)) if heads is None else list(heads)
        if scale == 1.0 and mask is None:
            return sqrt_codes(self.original.take(layer_index, heads, axis=0), bits)
        allowed = None if mask is None else keep_matrix(mask, self.n_queries, self.n_keys)
        codes = np.empty((len(heads), self.n_queries, self.n_keys), DTYPES[bits])
        for n, h in enumerate(heads):
            log_weights, keep = self._log_weights(layer_index, h)
            if allowed is not None:
                keep = keep & head_part(allowed, h)
            codes[n] = softmax_sqrt_codes(log_weights, scale, keep, None, bits)
        return codes

    def row_codes(self, layer_index, rows, scale, mask, bits=8):
        """:meth:`codes` at the query ``rows`` only, ``(H, len(rows), Lk)`` (the grid's thumbnails)."""
        weights = self.original.take(layer_index, rows, axis=1)
        if scale == 1.0 and mask is None:
            return sqrt_codes(weights, bits)
        log_weights, keep = self._logs_of(weights)
        if mask is not None:
            keep = keep & _rows_of(keep_matrix(mask, self.n_queries, self.n_keys), rows, self.n_queries)
        return softmax_sqrt_codes(log_weights, scale, keep, None, bits)


def _mask_key(mask):
    if mask is None or isinstance(mask, str):
        return ("", mask)
    return None  # arrays: not cached (cheap to tell apart only by value)


def detect_mask(stacked):
    """The mask precomputed weights ``(layers, H, Lq, Lk)`` were made with, read from their zeros.

    A cell that is exactly 0 in every layer and head was blocked. The zeros
    are recognised as a causal mask or as padded keys (whole columns); any
    other pattern (or none) gives ``(None, None)``.

    Returns:
        tuple: ``(mask, label)``: ``"causal"`` or a boolean ``mx.array``
        ``(1, 1, 1, Lk)``, and a sentence saying how it was found.
    """
    n_layers, _, n_q, n_k = stacked.shape
    zero = np.ones((n_q, n_k), dtype=bool)
    for layer in range(n_layers):  # one layer at a time: no (layers, H, Lq, Lk) temporary
        zero &= np.all(stacked[layer] == 0, axis=0)
        if not zero.any():
            return None, None
    from mhacourse.masks import causal

    if np.array_equal(zero, ~np.array(causal(n_q, n_k))):
        return "causal", "causal (detected: every weight above the diagonal is 0)"
    columns = zero.all(axis=0)  # (Lk,)
    if np.array_equal(zero, np.broadcast_to(columns, zero.shape)):
        return (mx.array(~columns)[None, None, None],
                f"padding (detected: {int(columns.sum())} keys get weight 0 from every query)")
    return None, None


def keep_matrix(mask, n_queries, n_keys):
    """Any mask as booleans ``(…, Lq, Lk)`` that broadcast over heads (True = attend)."""
    return keep_of(mask, n_queries, n_keys)


def keep_all_heads(mask, n_queries, n_keys):
    """``(Lq, Lk)`` booleans: True where every head may attend (all True without a mask)."""
    if mask is None:
        return np.ones((n_queries, n_keys), dtype=bool)
    keep = keep_matrix(mask, n_queries, n_keys)  # (…, Lq or 1, Lk)
    keep = np.broadcast_to(keep, keep.shape[:-2] + (n_queries, n_keys))
    return keep.reshape(-1, n_queries, n_keys).all(axis=0)  # (Lq, Lk)


def build_mask(kind, n_queries, n_keys, valid_keys=None, given=None):
    """The mask for a choice of the mask selector.

    Args:
        kind (str): ``"none"``, ``"causal"``, ``"padding"`` (the first
            ``valid_keys`` keys are real) or ``"given"`` (the explorer's mask).
        n_queries (int): Number of queries.
        n_keys (int): Number of keys.
        valid_keys (int, optional): For ``"padding"``. Default: all keys.
        given (array or str, optional): For ``"given"``.

    Returns:
        None, ``"causal"`` or an ``mx.array`` mask.
    """
    if kind not in MASK_KINDS:
        raise ValueError(f"mask must be one of {MASK_KINDS}, got {kind!r}.")
    if kind == "none":
        return None
    if kind == "causal":
        return "causal"
    if kind == "given":
        if given is None:
            raise ValueError("mask 'given' needs the explorer to be created with mask=...")
        return given
    valid = n_keys if valid_keys is None else int(valid_keys)
    if not 1 <= valid <= n_keys:
        raise ValueError(f"valid_keys must be in [1, {n_keys}], got {valid}.")
    from mhacourse.masks import padding_mask

    return padding_mask([valid], n_keys)  # (1, 1, 1, Lk)


@dataclass
class ExplorerState:
    """Everything one view of the explorer shows.

    ``weights`` is ``(H, Lq, Lk)`` for the chosen layer; ``row`` is the chosen
    query's weights over the keys for the chosen head (or the mean over heads
    when ``head`` is ``None``, the "all heads" view).
    """

    layer: int
    head: object
    query: int
    mask: str
    scale: float
    valid_keys: int
    weights: np.ndarray
    row: np.ndarray
    keep: np.ndarray
    row_sums: np.ndarray = field(repr=False)
    max_weight: float = 0.0
    argmax: tuple = ()

    @property
    def shown(self):
        """The ``(Lq, Lk)`` heatmap(s) on screen: one head, or all of them."""
        return self.weights if self.head is None else self.weights[self.head]


def _check_index(name, value, size):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}.")
    if not 0 <= value < size:
        raise ValueError(f"{name} must be in [0, {size - 1}], got {value}.")
    return int(value)


def explorer_state(source, *, layer=0, head=0, query=0, mask="none", scale=None, valid_keys=None):
    """Compute what the explorer shows for one setting of its controls.

    Args:
        source (LayerSource or WeightsSource): Where the weights come from.
        layer (int): The layer (for several layers of precomputed weights).
        head (int or None): The head, or ``None`` for the "all heads" grid.
        query (int): The query token whose row is shown as bars.
        mask (str): ``"none"``, ``"causal"``, ``"padding"`` or ``"given"``.
        scale (float, optional): Multiplies the queries (a layer) or the
            original scores (precomputed weights). Default: the source's own.
        valid_keys (int, optional): Real keys for the padding mask.

    Returns:
        ExplorerState: The weights, the row, the row sums and the largest weight.
    """
    layer = _check_index("layer", layer, source.num_layers)
    if head is not None:
        head = _check_index("head", head, source.num_heads)
    query = _check_index("query", query, source.n_queries)
    scale = source.default_scale if scale is None else float(scale)
    if not np.isfinite(scale) or scale < 0:
        raise ValueError(f"scale must be a finite number >= 0, got {scale}.")
    valid_keys = source.n_keys if valid_keys is None else int(valid_keys)
    mask_array = build_mask(mask, source.n_queries, source.n_keys, valid_keys, source.given_mask)

    weights = source.weights(layer, scale, mask_array)  # (H, Lq, Lk)
    keep = keep_all_heads(mask_array, source.n_queries, source.n_keys)  # (Lq, Lk)
    row = weights[:, query].mean(axis=0) if head is None else weights[head, query]  # (Lk,)
    shown = weights if head is None else weights[head][None]  # (H or 1, Lq, Lk)
    position = np.unravel_index(int(np.argmax(shown)), shown.shape)
    argmax = (head if head is not None else int(position[0]), int(position[1]), int(position[2]))
    return ExplorerState(
        layer=layer, head=head, query=query, mask=mask, scale=scale, valid_keys=valid_keys,
        weights=weights, row=row, keep=keep, row_sums=weights.sum(axis=-1),
        max_weight=float(shown.max()), argmax=argmax,
    )
