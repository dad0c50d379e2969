"""Argument checks shared by the layers: each error names the argument and the numbers."""

import numbers


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


def check_features(name, x, expected, argument):
    """Raise ``ValueError`` unless ``x`` is ``(batch, length, expected)``."""
    if x.ndim != 3:
        raise ValueError(
            f"{name} must have shape (batch, length, {expected}); got shape {tuple(x.shape)}."
        )
    if x.shape[-1] != expected:
        raise ValueError(
            f"{name} have {x.shape[-1]} features in their last dimension but the "
            f"layer expects {argument} = {expected} (shape {tuple(x.shape)})."
        )
