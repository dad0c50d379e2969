"""Attention masks: ``mhacourse.masks`` is stage 3, :mod:`mhacourse.attention.masks`."""

from .attention.masks import *  # noqa: F401,F403
from .attention.masks import __all__, __doc__  # noqa: F401
