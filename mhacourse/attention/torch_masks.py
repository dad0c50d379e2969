"""PyTorch's ``nn.MultiheadAttention`` masks in MLX's convention (stage 3, for code coming from PyTorch).

PyTorch's boolean masks say True where attention is *blocked*; MLX's say True
where it is *allowed*. Lesson 03 uses this conversion; lesson 06 asks the
learner to write it (so the grader never binds this module there).
"""

from __future__ import annotations

from typing import Any

__lesson__ = "03"  # the lesson that teaches this module: the grader binds it only for later lessons

import mlx.core as mx

from .masks import _as_array, combine

__all__ = ["from_torch"]


def from_torch(attn_mask: Any = None, key_padding_mask: Any = None,
               num_heads: int | None = None) -> mx.array | None:
    """Convert PyTorch ``nn.MultiheadAttention`` masks to one MLX mask.

    In PyTorch a boolean ``True`` means *blocked*; in MLX it means *attend*.
    Float masks are additive in both and are kept as they are.

    Args:
        attn_mask (array-like, optional): ``(L, S)``, or ``(B * num_heads, L, S)``
            as PyTorch stacks it.
        key_padding_mask (array-like, optional): ``(B, S)``, True = padding.
        num_heads (int, optional): Needed to unstack a 3-D ``attn_mask``.

    Returns:
        array or None: A mask broadcastable to ``(B, num_heads, L, S)``.
    """
    converted = []
    if attn_mask is not None:
        attn_mask = _as_array(attn_mask, "attn_mask")
        if attn_mask.ndim == 3:
            if num_heads is None:
                raise ValueError("a 3-D attn_mask is (B * num_heads, L, S): pass num_heads to unstack it.")
            BH, L, S = attn_mask.shape
            attn_mask = attn_mask.reshape(BH // num_heads, num_heads, L, S)  # (B, H, L, S)
        elif attn_mask.ndim != 2:
            raise ValueError(f"attn_mask must be (L, S) or (B * num_heads, L, S), got shape {tuple(attn_mask.shape)}.")
        converted.append(~attn_mask if attn_mask.dtype == mx.bool_ else attn_mask)
    if key_padding_mask is not None:
        key_padding_mask = _as_array(key_padding_mask, "key_padding_mask")
        if key_padding_mask.ndim != 2:
            raise ValueError(f"key_padding_mask must be (B, S), got shape {tuple(key_padding_mask.shape)}.")
        key_padding_mask = key_padding_mask[:, None, None, :]  # (B, 1, 1, S)
        if key_padding_mask.dtype == mx.bool_:
            key_padding_mask = ~key_padding_mask
        converted.append(key_padding_mask)
    return combine(*converted)
