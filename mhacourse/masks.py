"""Attention masks: ``mhacourse.masks`` is stage 3, :mod:`mhacourse.attention.masks`, with
:func:`from_torch` (:mod:`mhacourse.attention.torch_masks`) for masks coming from PyTorch."""

__lesson__ = "03"  # the lesson that teaches this module: the grader binds it only for later lessons

from .attention.masks import *
from .attention.masks import __all__ as _stage_names
from .attention.torch_masks import from_torch

__all__ = [*_stage_names, "from_torch"]
