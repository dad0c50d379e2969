"""mhacourse: multi-head attention, the MLX way, built from scratch in stages."""

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = [
    "MultiHeadAttention",
    "scaled_dot_product_attention",
    "attention_weights",
    "attention_scores",
    "attention_with_weights",
    "masks",
    "check",
]


# Loaded on first use, so that ``import mhacourse`` (and ``mhacourse doctor``, which must run where MLX
# is missing or broken, to say how to fix it) does not import MLX or the grader.
_EXPORTS = {
    "MultiHeadAttention": "mhacourse.attention.fused",
    "scaled_dot_product_attention": "mhacourse.attention.scaled_dot_product",
    "attention_weights": "mhacourse.attention.scaled_dot_product",
    "attention_scores": "mhacourse.attention.scaled_dot_product",
    "attention_with_weights": "mhacourse.attention.scaled_dot_product",
    "masks": "mhacourse.masks",
    "check": "mhacourse.grading",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mhacourse' has no attribute {name!r}")
    module = importlib.import_module(_EXPORTS[name])
    value = module if module.__name__.endswith("." + name) else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
