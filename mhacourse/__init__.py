"""mhacourse: multi-head attention, the MLX way, built from scratch in stages."""

from typing import Any

from . import masks
from .attention.fused import MultiHeadAttention
from .attention.scaled_dot_product import (
    attention_scores,
    attention_weights,
    attention_with_weights,
    scaled_dot_product_attention,
)

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


def __getattr__(name: str) -> Any:
    # ``mhacourse.check`` without importing the grader on every ``import mhacourse``.
    if name == "check":
        from .grading import check

        return check
    raise AttributeError(f"module 'mhacourse' has no attribute {name!r}")
