"""Old name of :mod:`mhacourse.viz.plots` (matplotlib pictures), kept for imports outside ``viz``.

``mhacourse.bench``, ``diagrams.py`` and the diagram tests import
``figure_to_png``, ``register_png_formatter`` and ``to_numpy`` from here; new
code imports :mod:`mhacourse.viz.plots`.
"""

from .plots import *  # noqa: F401,F403
from .plots import __all__, figure_to_png, register_png_formatter, to_numpy  # noqa: F401
