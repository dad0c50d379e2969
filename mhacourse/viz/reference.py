"""MLX's own attention weights, and the steps that lead to them.

``mlx.nn.MultiHeadAttention`` calls ``mx.fast.scaled_dot_product_attention``,
which returns ``weights @ values`` and never the weights. Give that kernel the
identity matrix as values and its output *is* the weights: row ``i`` of
``weights @ I`` is row ``i`` of the weights. :func:`reference_weights` does
this with the layer's own projections and scale, so the weights come from
MLX's kernel with MLX's mask semantics, and :func:`sdpa_weights` does it for
any function with the signature of ``scaled_dot_product_attention`` (a
learner's, for instance).

:func:`attention_steps` lays out one head's computation step by step for the
explorer's stepper: scores, scaled, masked, softmax, weights @ values.
"""

import math

import mlx.core as mx
import numpy as np

__all__ = ["reference_weights", "sdpa_weights", "project_heads", "softmax_rows", "attention_steps", "STEP_NAMES"]

STEP_NAMES = ("scores", "scaled", "masked", "softmax", "weights @ V")


def _as_batch(x, name):
    if not isinstance(x, mx.array):
        raise TypeError(f"{name} must be an mx.array, got {type(x).__name__}.")
    if x.ndim == 2:
        return x[None]  # (1, L, dims)
    if x.ndim != 3:
        raise ValueError(f"{name} must be (batch, length, features) or (length, features); "
                         f"got shape {tuple(x.shape)}.")
    return x


def project_heads(layer, queries, keys=None, values=None):
    """Project the inputs of an attention layer and split them into heads.

    Always computed from the layer's ``query_proj``, ``key_proj``,
    ``value_proj`` and ``num_heads``, split as MLX's layer does, for
    ``mhacourse.MultiHeadAttention``, ``mlx.nn.MultiHeadAttention`` and any
    subclass: a method of the layer (such as a learner's own ``project``) is
    never called, so a bug in it cannot hide in the projections shown.

    Args:
        layer: The attention layer.
        queries (array): ``(B, L_q, dims)`` or ``(L_q, dims)``.
        keys (array, optional): Default: ``queries``.
        values (array, optional): Default: ``keys``.

    Returns:
        tuple(array, array, array): ``(B, H, L_q, D_h)``, ``(B, H, L_k, D_h)``
        and ``(B, H, L_k, D_v / H)``.
    """
    queries = _as_batch(queries, "queries")
    keys = queries if keys is None else _as_batch(keys, "keys")
    values = keys if values is None else _as_batch(values, "values")
    for name in ("query_proj", "key_proj", "value_proj", "num_heads"):
        if not hasattr(layer, name):
            raise TypeError(f"layer must be an attention layer such as mlx.nn.MultiHeadAttention; "
                            f"{type(layer).__name__} has no {name!r}.")
    num_heads = layer.num_heads
    q = mx.unflatten(layer.query_proj(queries), -1, (num_heads, -1)).transpose(0, 2, 1, 3)  # (B, H, L_q, D_h)
    k = mx.unflatten(layer.key_proj(keys), -1, (num_heads, -1)).transpose(0, 2, 1, 3)  # (B, H, L_k, D_h)
    v = mx.unflatten(layer.value_proj(values), -1, (num_heads, -1)).transpose(0, 2, 1, 3)  # (B, H, L_k, D_v/H)
    return q, k, v


def _identity_values(queries, keys):
    """``(B, H_kv, L_k, L_k)``: the identity as values, one per key/value head."""
    n_keys = keys.shape[2]
    eye = mx.eye(n_keys, dtype=queries.dtype)  # (L_k, L_k)
    return mx.broadcast_to(eye, (*keys.shape[:2], n_keys, n_keys))


def sdpa_weights(fn, queries, keys, *, scale, mask=None):
    """The attention weights of a scaled dot-product attention function.

    Calls ``fn(queries, keys, I, scale=scale, mask=mask)`` with the identity
    ``I`` as values: ``weights @ I`` is the weights.

    Args:
        fn (callable): ``fn(queries, keys, values, *, scale, mask=None)``,
            such as ``mx.fast.scaled_dot_product_attention`` or a learner's.
        queries (array): ``(B, H, L_q, D)``.
        keys (array): ``(B, H_kv, L_k, D)``.
        scale (float): The scale ``fn`` is called with.
        mask (array or str, optional): The mask ``fn`` is called with.

    Returns:
        array: ``(B, H, L_q, L_k)``.
    """
    for name, x in (("queries", queries), ("keys", keys)):
        if not isinstance(x, mx.array) or x.ndim != 4:
            raise ValueError(f"{name} must be an mx.array of shape (B, H, L, D); "
                             f"got {getattr(x, 'shape', type(x).__name__)}.")
    weights = fn(queries, keys, _identity_values(queries, keys), scale=scale, mask=mask)
    expected = (queries.shape[0], queries.shape[1], queries.shape[2], keys.shape[2])
    if not isinstance(weights, mx.array) or tuple(weights.shape) != expected:
        raise ValueError(f"fn must return the attention output (B, H, L_q, D_v); with the identity as "
                         f"values that is {expected}, but it returned "
                         f"{getattr(weights, 'shape', type(weights).__name__)}.")
    return weights


def reference_weights(layer, queries, keys=None, values=None, mask=None):
    """The weights ``mlx.nn.MultiHeadAttention`` uses, computed by MLX's kernel.

    The layer's projections and scale (``sqrt(1 / D_h)``), then
    ``mx.fast.scaled_dot_product_attention`` with the identity as values.
    Then ``weights @ v``, merged and passed through ``out_proj``, is the
    layer's output.

    Args:
        layer: ``mlx.nn.MultiHeadAttention`` (or ``mhacourse.MultiHeadAttention``).
        queries (array): ``(B, L_q, dims)`` or ``(L_q, dims)``.
        keys (array, optional): Default: ``queries``.
        values (array, optional): Default: ``keys``. Only checked: the weights
            do not depend on the values.
        mask (array or str, optional): As for the layer: additive, boolean
            (True = attend) or ``"causal"``.

    Returns:
        array: ``(B, H, L_q, L_k)``, float32.
    """
    q, k, _ = project_heads(layer, queries, keys, values)  # (B, H, L_q, D_h), (B, H, L_k, D_h)
    q, k = q.astype(mx.float32), k.astype(mx.float32)
    scale = math.sqrt(1 / q.shape[-1])  # what MLX's layer uses
    return sdpa_weights(mx.fast.scaled_dot_product_attention, q, k, scale=scale, mask=mask)


def _keep_for(mask, n_queries, n_keys):
    """A mask as ``(L_q, L_k)`` booleans or additive values for one head, batch 0."""
    if mask is None:
        return None
    from .masking import mask_to_numpy

    array = mask_to_numpy(mask, n_queries, n_keys, as_boolean=False)
    while array.ndim > 2:
        array = array[0]  # batch 0, head 0: (L_q or 1, L_k)
    return np.broadcast_to(array, (n_queries, n_keys))


def softmax_rows(scores):
    """Softmax over the last axis of NumPy scores, ``-inf`` where a key is blocked.

    A row with no allowed key is uniform, as MLX's kernel gives for a boolean
    mask. Returns float32.
    """
    top = np.max(scores, axis=-1, keepdims=True)
    exp = np.exp(scores - np.where(np.isfinite(top), top, 0.0))
    total = exp.sum(axis=-1, keepdims=True)
    return np.where(total > 0, exp / np.where(total > 0, total, 1), 1 / scores.shape[-1]).astype(np.float32)


def attention_steps(queries, keys, values, *, scale, mask=None):
    """One head's attention, step by step, as NumPy arrays.

    Args:
        queries (array): ``(L_q, D_h)``.
        keys (array): ``(L_k, D_h)``.
        values (array): ``(L_k, D_v)``.
        scale (float): Multiplies the scores.
        mask (array or str, optional): Boolean (True = attend), additive or
            ``"causal"``; batch 0 and head 0 of a larger mask are used.

    Returns:
        list[dict]: One dict per step of :data:`STEP_NAMES` with ``name``,
        ``formula``, ``matrix`` (float32) and ``shape`` (letters and sizes).
    """
    q, k, v = (np.asarray(np.array(x.astype(mx.float32)), dtype=np.float32) for x in (queries, keys, values))
    n_q, n_k = q.shape[0], k.shape[0]
    scores = q @ k.T  # (L_q, L_k)
    scaled = scores * np.float32(scale)  # (L_q, L_k)
    keep = _keep_for(mask, n_q, n_k)
    if keep is None:
        masked = scaled
    elif keep.dtype == np.bool_:
        masked = np.where(keep, scaled, -np.inf).astype(np.float32)
    else:
        masked = (scaled + keep).astype(np.float32)
    weights = softmax_rows(masked)  # (L_q, L_k)
    output = weights @ v  # (L_q, D_v)
    rows = ("L_q", n_q)
    return [
        {"name": "scores", "formula": "q · kᵀ", "matrix": scores, "shape": [rows, ("L_k", n_k)]},
        {"name": "scaled", "formula": f"q · kᵀ × scale ({scale:.4g})", "matrix": scaled,
         "shape": [rows, ("L_k", n_k)]},
        {"name": "masked", "formula": "scaled + mask (blocked: −∞)" if mask is not None
         else "no mask: unchanged", "matrix": masked, "shape": [rows, ("L_k", n_k)]},
        {"name": "softmax", "formula": "softmax over the keys: each row sums to 1", "matrix": weights,
         "shape": [rows, ("L_k", n_k)]},
        {"name": "weights @ V", "formula": "weights · v: each output row mixes the value rows",
         "matrix": output, "shape": [rows, ("D_v", v.shape[1])]},
    ]
