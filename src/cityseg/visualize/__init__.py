"""Pictures of segmentations: colour masks, overlays, error maps, charts and the HTML report.

Colour helpers (numpy only) are imported here; the matplotlib charts and the report load on first
use, so ``import cityseg.visualize`` stays light.

Example:
    >>> from cityseg.visualize import colorize, overlay, error_map  # numpy only
    >>> from cityseg.visualize import plot_confusion_matrix, write_report  # loaded on first use
"""

from __future__ import annotations

import importlib

from cityseg.visualize.colors import (
    color_mask_with_legend,
    colorize,
    error_map,
    legend_entries,
    overlay,
)

_LAZY = {
    "evaluation_charts": "plots",
    "plot_comparison_grid": "plots",
    "plot_confusion_matrix": "plots",
    "plot_per_class_iou": "plots",
    "plot_training_curves": "plots",
    "read_metrics_jsonl": "plots",
    "write_report": "report",
}

__all__ = [
    "color_mask_with_legend",
    "colorize",
    "error_map",
    "legend_entries",
    "overlay",
    *_LAZY,
]


def __getattr__(name: str) -> object:
    if name in _LAZY:
        module = importlib.import_module(f"cityseg.visualize.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'cityseg.visualize' has no attribute {name!r}")
