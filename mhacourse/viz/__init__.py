"""Pictures of attention: matplotlib plots (:mod:`.plots`) and the ``AttentionExplorer`` widget.

>>> from mhacourse.viz import plot_attention, plot_heads, plot_mask, AttentionExplorer
"""

from .diagrams import (  # noqa: F401, E501
    plot_matrices,
    plot_packed_in_proj,
    plot_reshape_mistake,
    plot_shape_flow,
    plot_split_merge_heads,
    plot_worked_example,
)
from .plots import figure_to_png, plot_attention, plot_heads, plot_mask
from .reference import attention_steps, reference_weights, sdpa_weights
from .state import ExplorerState, LayerSource, WeightsSource, build_mask, explorer_state

__all__ = [
    "plot_attention",
    "plot_heads",
    "plot_mask",
    "AttentionExplorer",
    "reference_weights",
    "sdpa_weights",
    "attention_steps",
    "explorer_state",
    "ExplorerState",
    "LayerSource",
    "WeightsSource",
    "build_mask",
    "figure_to_png",
]


def __getattr__(name):
    # The widget loads anywidget and ipywidgets: only when it is asked for, not for the plots.
    if name == "AttentionExplorer":
        from .explorer import AttentionExplorer

        return AttentionExplorer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
