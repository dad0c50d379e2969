"""Stage 2: many heads in parallel.

The projected features are split into ``num_heads`` slices, each slice
attends on its own (stage 1), and the heads are merged back and projected.

The reshapes name only the number of heads and let MLX infer the rest
(``mx.unflatten(x, -1, (H, -1))``, ``x.flatten(-2, -1)``), as
``mlx.nn.MultiHeadAttention`` does. No Python size is baked into the graph, so
a function compiled or exported with ``shapeless=True`` runs at any length.

The steps are module functions (:func:`project`, :func:`attend`,
:func:`forward`), not methods: the layer, like MLX's, stores only
``num_heads`` and its four projections and defines only ``__call__``, so a
subclass may store or define any other name (``scale``, ``project``, ...)
without changing what the layer computes.
"""

from __future__ import annotations

from collections.abc import Callable

__lesson__ = "02"  # the lesson that teaches this module: the grader binds it only for later lessons

import mlx.core as mx
import mlx.nn as nn

from .scaled_dot_product import attention_with_weights, head_scale
from .validation import check_divisible, check_features, check_size, projection_input_dims


def split_heads(x: mx.array, num_heads: int) -> mx.array:
    """Split the features of ``x`` into heads.

    Args:
        x (array): ``(B, L, dims)`` with ``dims`` divisible by ``num_heads``.
        num_heads (int): The number of heads ``H``.

    Returns:
        array: ``(B, H, L, D_h)`` with ``D_h = dims // H``.
    """
    if x.ndim != 3:
        raise ValueError(f"x must have shape (batch, length, features); got {tuple(x.shape)}.")
    check_divisible("the last dimension of x", x.shape[-1], num_heads)
    x = mx.unflatten(x, -1, (num_heads, -1))  # (B, L, H, D_h)
    return x.transpose(0, 2, 1, 3)  # (B, H, L, D_h)


def merge_heads(x: mx.array) -> mx.array:
    """Concatenate the heads of ``x`` back into one feature dimension.

    Args:
        x (array): ``(B, H, L, D_h)``.

    Returns:
        array: ``(B, L, H * D_h)``.
    """
    if x.ndim != 4:
        raise ValueError(f"x must have shape (batch, heads, length, head_dims); got {tuple(x.shape)}.")
    x = x.transpose(0, 2, 1, 3)  # (B, L, H, D_h)
    return x.flatten(-2, -1)  # (B, L, H * D_h)


def _heads(name, proj, x, num_heads):
    # Project x with proj and split the result into heads. The input size was
    # checked up front where it could be read off proj; otherwise proj tells.
    try:
        x = proj(x)  # (B, L, features)
    except ValueError as error:
        raise ValueError(f"{name} of shape {tuple(x.shape)} do not fit the layer's projection: {error}") from error
    check_divisible(f"the number of projected {name} features", x.shape[-1], num_heads)
    return split_heads(x, num_heads)  # (B, H, L, features / H)


def project(layer: nn.Module, queries: mx.array, keys: mx.array,
            values: mx.array) -> tuple[mx.array, mx.array, mx.array]:
    """Check the inputs, project them with the layer's projections and split them into heads.

    It reads only what ``mlx.nn.MultiHeadAttention`` itself reads: ``num_heads``,
    ``query_proj``, ``key_proj`` and ``value_proj``.

    Args:
        layer (MultiHeadAttention): The layer whose projections to use (the
            course's or MLX's).
        queries (array): ``(B, L_q, query_input_dims)``.
        keys (array): ``(B, L_k, key_input_dims)``.
        values (array): ``(B, L_k, value_input_dims)``.

    Returns:
        tuple(array, array, array): queries ``(B, H, L_q, D_h)``, keys
        ``(B, H, L_k, D_h)`` and values ``(B, H, L_k, D_v/H)``.
    """
    check_features("queries", queries, projection_input_dims(layer.query_proj), "query_input_dims")
    check_features("keys", keys, projection_input_dims(layer.key_proj), "key_input_dims")
    check_features("values", values, projection_input_dims(layer.value_proj), "value_input_dims")
    if keys.shape[:2] != values.shape[:2]:
        raise ValueError(
            f"keys and values must have the same batch size and length; "
            f"got keys {tuple(keys.shape)} and values {tuple(values.shape)}."
        )
    if queries.shape[0] != keys.shape[0]:
        raise ValueError(
            f"queries and keys must have the same batch size; "
            f"got queries {tuple(queries.shape)} and keys {tuple(keys.shape)}."
        )
    num_heads = layer.num_heads
    queries = _heads("queries", layer.query_proj, queries, num_heads)  # (B, H, L_q, D_h)
    keys = _heads("keys", layer.key_proj, keys, num_heads)  # (B, H, L_k, D_h)
    values = _heads("values", layer.value_proj, values, num_heads)  # (B, H, L_k, D_v/H)
    if keys.shape[-1] != queries.shape[-1]:
        raise ValueError(
            f"queries and keys must be projected to the same size per head; got "
            f"{queries.shape[-1]} (query_proj) and {keys.shape[-1]} (key_proj)."
        )
    return queries, keys, values


def attend(queries: mx.array, keys: mx.array, values: mx.array, mask: mx.array | str | None = None,
           return_weights: bool = True) -> tuple[mx.array, mx.array | None]:
    """Attention over the heads, written out (stage 1) with scale ``1 / sqrt(D_h)``.

    The scale is read from the projected queries, as MLX's layer reads it, so
    it is ``sqrt(1 / D_h)`` whatever the layer or a subclass stores.

    Args:
        queries (array): ``(B, H, L_q, D_h)``.
        keys (array): ``(B, H, L_k, D_h)``.
        values (array): ``(B, H, L_k, D_v/H)``.
        mask (array or str, optional): As for the layer. Default: ``None``.
        return_weights (bool, optional): Unused here (the explicit path always
            has the weights); it is part of the signature every ``attend`` of
            :func:`forward` shares. Default: ``True``.

    Returns:
        tuple(array, array): the output ``(B, H, L_q, D_v/H)`` and the weights
        ``(B, H, L_q, L_k)``.
    """
    return attention_with_weights(queries, keys, values, scale=head_scale(queries), mask=mask)


def forward(layer: nn.Module, queries: mx.array, keys: mx.array, values: mx.array, mask: mx.array | str | None = None,
            return_weights: bool = False,
            attend: Callable[..., tuple[mx.array, mx.array | None]] = attend) -> mx.array | tuple[mx.array, mx.array]:
    """The whole layer: project, split, attend, merge, project out.

    A module-level function rather than methods, so that nothing the layer
    computes goes through a name a subclass of ``mlx.nn.MultiHeadAttention``
    might define for itself (``project``, ``attend``, ``scale``, ...). It reads
    from ``layer`` only what MLX's layer reads: ``num_heads`` and the four
    projections.

    Args:
        layer (MultiHeadAttention): The layer.
        queries, keys, values, mask: As for the layer's ``__call__``.
        return_weights (bool, optional): Also return the weights. Default: ``False``.
        attend (callable, optional): ``attend(queries, keys, values, mask,
            return_weights) -> (output, weights or None)`` on the heads.
            Default: the explicit :func:`attend`.

    Returns:
        array: ``(B, L_q, value_output_dims)``, or ``(output, weights)``.
    """
    queries, keys, values = project(layer, queries, keys, values)
    output, weights = attend(queries, keys, values, mask, return_weights)  # (B, H, L_q, D_v/H)
    output = layer.out_proj(merge_heads(output))  # (B, L_q, value_output_dims)
    return (output, weights) if return_weights else output


class MultiHeadAttention(nn.Module):
    """Multi-head attention where every size equals ``dims``.

    Like ``mlx.nn.MultiHeadAttention`` it stores only ``num_heads`` and the
    four projections, and defines no method beyond ``__call__``: the steps are
    the module's functions (:func:`project`, :func:`attend`, :func:`forward`),
    so a subclass may use any other name for itself.

    Args:
        dims (int): The model dimensions: inputs, projections and output.
        num_heads (int): The number of attention heads; must divide ``dims``.
    """

    def __init__(self, dims: int, num_heads: int) -> None:
        super().__init__()
        check_size("dims", dims)
        check_size("num_heads", num_heads)
        check_divisible("dims", dims, num_heads)
        self.num_heads = num_heads
        self.query_proj = nn.Linear(dims, dims, bias=False)
        self.key_proj = nn.Linear(dims, dims, bias=False)
        self.value_proj = nn.Linear(dims, dims, bias=False)
        self.out_proj = nn.Linear(dims, dims, bias=False)

    def __call__(self, queries: mx.array, keys: mx.array, values: mx.array, mask: mx.array | str | None = None, *,
                 return_weights: bool = False) -> mx.array | tuple[mx.array, mx.array]:
        """Attend from ``queries`` to ``keys`` and ``values``.

        The attention scale is ``sqrt(1 / D_h)`` with ``D_h`` the width of a
        projected query head, as in MLX; the layer keeps no ``scale``
        attribute, so a subclass or a user may store one without effect.

        Args:
            queries (array): ``(B, L_q, query_input_dims)``.
            keys (array): ``(B, L_k, key_input_dims)``.
            values (array): ``(B, L_k, value_input_dims)``.
            mask (array or str, optional): An additive or boolean (True =
                attend) mask broadcastable to ``(B, num_heads, L_q, L_k)``, or
                ``"causal"``. Default: ``None``.
            return_weights (bool, optional): Also return the attention weights
                ``(B, num_heads, L_q, L_k)``. Default: ``False``.

        Returns:
            array: ``(B, L_q, value_output_dims)``, or ``(output, weights)``.
        """
        return forward(self, queries, keys, values, mask, return_weights)
