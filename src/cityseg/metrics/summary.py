"""Every metric of a confusion matrix as one JSON-ready dict, and as a text table (NumPy only).

Example:
    >>> import numpy as np
    >>> from cityseg.metrics.summary import summarize
    >>> summarize(np.array([[3, 1], [0, 2]]), ["road", "sky"])["mean_iou"]
    0.7083333333333333
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cityseg.labels import CLASS_NAMES
from cityseg.metrics.official import OfficialCounts
from cityseg.metrics.scores import (
    absent_classes,
    f1,
    frequency_weighted_iou,
    iou,
    macro_mean,
    pixel_accuracy,
    precision,
    recall,
    specificity,
    square_matrix,
)


def _json_number(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def summarize(
    confusion: np.ndarray,
    class_names: Sequence[str],
    cityscapes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every metric of a confusion matrix as a JSON-ready dict (fractions in [0, 1], or None).

    Args:
        confusion: (K, K) or (K, K+1) pixel counts, rows ground truth, columns prediction.
        class_names: the K class names, in row order.
        cityscapes: the official Cityscapes block (``OfficialCounts.scores()``), when known. By
            default it is derived from the matrix when the classes are the 19 Cityscapes ones
            (IoU only: the instance-level iIoU needs instanceIds).

    Returns:
        ``pixel_accuracy``, ``mean_accuracy``, ``mean_iou``, ``frequency_weighted_iou``,
        ``mean_precision``, ``mean_recall``, ``mean_specificity``, ``mean_f1``, ``pixels``,
        ``classes`` (name -> iou, precision, recall, specificity, f1, pixels), ``absent_classes``,
        ``confusion_matrix`` (K x K), ``unassigned`` (per class: pixels predicted as no class)
        and ``cityscapes``.
    """
    confusion = np.asarray(confusion, dtype=np.int64)
    num_classes = confusion.shape[0]
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for a {num_classes}-class matrix")
    per_class = {
        "iou": iou(confusion),
        "precision": precision(confusion),
        "recall": recall(confusion),
        "specificity": specificity(confusion),
        "f1": f1(confusion),
    }
    gt_pixels = confusion.sum(axis=1)
    classes = {
        name: {key: _json_number(values[index]) for key, values in per_class.items()}
        | {"pixels": int(gt_pixels[index])}
        for index, name in enumerate(class_names)
    }
    if cityscapes is None and tuple(class_names) == CLASS_NAMES:
        cityscapes = OfficialCounts.from_train_confusion(confusion).scores()
    square = square_matrix(confusion)
    return {
        "pixel_accuracy": _json_number(pixel_accuracy(confusion)),
        "mean_accuracy": _json_number(macro_mean(per_class["recall"], confusion)),
        "mean_iou": _json_number(macro_mean(per_class["iou"], confusion)),
        "frequency_weighted_iou": _json_number(frequency_weighted_iou(confusion)),
        "mean_precision": _json_number(macro_mean(per_class["precision"], confusion)),
        "mean_recall": _json_number(macro_mean(per_class["recall"], confusion)),
        "mean_specificity": _json_number(macro_mean(per_class["specificity"], confusion)),
        "mean_f1": _json_number(macro_mean(per_class["f1"], confusion)),
        "pixels": int(confusion.sum()),
        "classes": classes,
        "absent_classes": [
            name
            for name, absent in zip(class_names, absent_classes(confusion), strict=True)
            if absent
        ],
        "confusion_matrix": square.tolist(),
        "unassigned": (gt_pixels - square.sum(axis=1)).tolist(),
        "cityscapes": cityscapes,
    }


def _cell(value: float | None, width: int = 7) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.3f}"


def format_table(metrics: dict[str, Any]) -> str:
    """A per-class text table of a :func:`summarize` result, absent classes marked, then means."""
    columns = ("iou", "precision", "recall", "specificity", "f1")
    name_width = max([len("class"), *(len(name) for name in metrics["classes"])])
    header = f"{'class':<{name_width}}" + "".join(f"{c:>12}" for c in columns) + f"{'pixels':>13}"
    lines = [header, "-" * len(header)]
    absent = metrics["absent_classes"]
    for name, values in metrics["classes"].items():
        cells = "".join(_cell(values[c], 12) for c in columns)
        note = "  absent" if name in absent else ""
        lines.append(f"{name:<{name_width}}{cells}{values['pixels']:>13,}{note}")
    lines.append("-" * len(header))
    means = ("mean_iou", "mean_precision", "mean_recall", "mean_specificity", "mean_f1")
    lines.append(f"{'mean':<{name_width}}" + "".join(_cell(metrics[m], 12) for m in means))
    lines.append(
        f"pixel accuracy {_cell(metrics['pixel_accuracy'], 0).strip()}"
        f"   mean accuracy {_cell(metrics['mean_accuracy'], 0).strip()}"
        f"   frequency-weighted IoU {_cell(metrics['frequency_weighted_iou'], 0).strip()}"
    )
    if absent:
        lines.append(f"absent from ground truth and prediction (not averaged): {', '.join(absent)}")
    return "\n".join(lines)
