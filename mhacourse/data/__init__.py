"""Measurements shipped with the course, each with its provenance.

>>> from mhacourse.data import load_gpu_figures
>>> figures = load_gpu_figures()
>>> figures["provenance"]["device"]
'one NVIDIA H100 80GB'
"""

import json
from importlib import resources

__all__ = ["load_gpu_figures"]

GPU_FIGURES = "gpu_fused_h100.json"


def load_gpu_figures():
    """The explicit-vs-fused attention timings measured on one H100.

    Returns:
        dict: ``"provenance"`` (how and where the numbers were measured),
        ``"columns"`` (what each field means) and ``"rows"``, one dict per
        configuration with ``head_dims``, ``L``, ``causal`` and, for
        ``explicit``, ``fused`` and ``torch``, ``*_ms``, ``*_tflops`` and
        (not for ``torch``) ``*_peak_gb``.
    """
    text = resources.files(__name__).joinpath(GPU_FIGURES).read_text(encoding="utf-8")
    return json.loads(text)
