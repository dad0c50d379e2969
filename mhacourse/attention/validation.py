"""Argument checks shared by the layers: each error names the argument and the numbers."""

__lesson__ = "01"  # the lesson that teaches this module: the grader binds it only for later lessons

import numbers

import mlx.core as mx
import mlx.nn as nn
import numpy as np


def check_size(name, value, default=None):
    """Return ``value`` (or ``default`` when it is None) if it is a positive integer.

    Unlike MLX's ``value or default``, an explicit 0 is an error, not the default.
    """
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value}.")
    return int(value)


def check_divisible(name, value, num_heads):
    """Raise ``ValueError`` unless ``value`` splits evenly into ``num_heads`` heads."""
    if value % num_heads != 0:
        raise ValueError(
            f"{name} ({value}) must be divisible by num_heads ({num_heads}): "
            f"{value} % {num_heads} = {value % num_heads}."
        )


def check_bias(bias):
    """Return ``bias`` as a Python bool if it is a boolean flag.

    MLX's layers test ``if bias:``, so a ``numpy.bool_`` or a one-element
    boolean ``mx.array`` works there and works here. An int such as ``1`` is
    rejected: it is more often a size passed to the wrong argument.
    """
    if isinstance(bias, (bool, np.bool_)):
        return bool(bias)
    if isinstance(bias, mx.array) and bias.dtype == mx.bool_ and bias.size == 1:
        return bool(bias.item())
    raise ValueError(f"bias must be True or False, got {bias!r} ({type(bias).__name__}).")


def projection_input_dims(proj):
    """The number of input features a projection expects, or None if it cannot tell.

    ``nn.Linear`` stores its weight as ``(output_dims, input_dims)``. A
    quantized linear layer packs each row into 32-bit words of ``32 // bits``
    values, so its weight is ``(output_dims, input_dims * bits / 32)``. Any
    other module (a LoRA wrapper, an adapter) may keep its weights anywhere:
    its inputs are checked by the projection itself.
    """
    # proj["weight"]: a Module is a dict of its parameters (faster than proj.weight).
    if isinstance(proj, nn.Linear):
        return proj["weight"].shape[-1]
    if isinstance(proj, (nn.QuantizedLinear, nn.QQLinear)):
        weight = proj["weight"]
        return weight.shape[-1] * 32 // proj.bits if weight.dtype == mx.uint32 else weight.shape[-1]
    return None


def check_features(name, x, expected, argument):
    """Raise ``ValueError`` unless ``x`` is ``(batch, length, expected)``.

    With ``expected=None`` (a size that only the projection knows) only the
    rank is checked. Anything but an ``mx.array`` (a list, a tuple, a NumPy
    array) raises ``TypeError``, the type ``mlx.nn.MultiHeadAttention`` raises
    for it.
    """
    if not isinstance(x, mx.array):
        kind = type(x).__name__ if type(x).__module__ == "builtins" else f"{type(x).__module__}.{type(x).__name__}"
        raise TypeError(f"{name} must be an mlx.core.array, got a {kind}; convert it with mx.array({name}).")
    if x.ndim != 3:
        features = "features" if expected is None else expected
        raise ValueError(
            f"{name} must have shape (batch, length, {features}); got shape {tuple(x.shape)}."
        )
    if expected is not None and x.shape[-1] != expected:
        raise ValueError(
            f"{name} have {x.shape[-1]} features in their last dimension but the "
            f"layer expects {argument} = {expected} (shape {tuple(x.shape)})."
        )
