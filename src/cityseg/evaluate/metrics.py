"""Segmentation metrics as pure functions of a confusion matrix (NumPy only, no torch).

Conventions, shared by every function here:

* ``confusion[i, j]`` counts pixels whose ground truth is class ``i`` and whose prediction is class
  ``j``. Ignored pixels (ground truth 255, void labels) never enter it.
* It may carry one extra last column: pixels of class ``i`` predicted as no class at all (a void
  labelId in a submission). They are misses (false negatives, wrong for accuracy) and count for
  no class's false positives, exactly as the official Cityscapes script counts them.
* A value whose denominator is zero is undefined: NaN in arrays, ``None`` in :func:`summarize`.
  IoU and F1 are undefined only for a class absent from both ground truth and prediction
  (``absent_classes``); precision is undefined for a class never predicted, recall for a class
  absent from the ground truth, specificity for a class that covers every pixel.
* Every mean of :func:`summarize` follows one rule (:func:`macro_mean`): it averages over the
  classes present in the ground truth or in the prediction, leaving out the classes absent from
  both; a value undefined for a class that is averaged counts as 0. This is torchmetrics' macro
  average and scikit-learn's with ``labels`` = the classes present and ``zero_division=0``.

Example:
    >>> import numpy as np
    >>> confusion = np.array([[3, 1, 0], [0, 2, 0], [0, 0, 0]])
    >>> iou(confusion).round(3).tolist()
    [0.75, 0.667, nan]
    >>> round(mean(iou(confusion)), 4)
    0.7083
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ClassCounts:
    """Per-class true/false positives and negatives (float64 arrays of length K)."""

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray

    @property
    def gt_pixels(self) -> np.ndarray:
        return self.tp + self.fn

    @property
    def predicted_pixels(self) -> np.ndarray:
        return self.tp + self.fp


def _square(confusion: np.ndarray) -> np.ndarray:
    confusion = np.asarray(confusion)
    rows, columns = confusion.shape
    if columns not in (rows, rows + 1):
        raise ValueError(f"confusion must be (K, K) or (K, K+1), got {confusion.shape}")
    return confusion[:, :rows]


def class_counts(confusion: np.ndarray) -> ClassCounts:
    """Split a (K, K) or (K, K+1) confusion matrix into per-class tp, fp, fn, tn."""
    confusion = np.asarray(confusion, dtype=np.float64)
    square = _square(confusion)
    tp = np.diag(square).copy()
    fp = square.sum(axis=0) - tp
    fn = confusion.sum(axis=1) - tp
    tn = confusion.sum() - tp - fp - fn
    return ClassCounts(tp=tp, fp=fp, fn=fn, tn=tn)


def safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise ``numerator / denominator``, NaN where the denominator is 0 (no warning)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def mean(values: np.ndarray) -> float:
    """Mean of the defined (non-NaN) values; NaN when none is defined."""
    values = np.asarray(values, dtype=np.float64)
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else float("nan")


def macro_mean(values: np.ndarray, confusion: np.ndarray) -> float:
    """Mean of per-class ``values`` over the classes present in the ground truth or the
    prediction of ``confusion``; an undefined (NaN) value of such a class counts as 0. NaN when
    no class is present.

    Example: ground truth [0, 0, 1, 1], prediction [0, 0, 0, 0], 3 classes: class 2 is left out;
    class 1 was never predicted, so its precision counts as 0: mean precision (0.5 + 0) / 2.

    >>> confusion = np.array([[2, 0, 0], [2, 0, 0], [0, 0, 0]])
    >>> macro_mean(precision(confusion), confusion)
    0.25
    """
    present = ~absent_classes(confusion)
    if not present.any():
        return float("nan")
    return float(np.nan_to_num(np.asarray(values, np.float64)[present], nan=0.0).mean())


def absent_classes(confusion: np.ndarray) -> np.ndarray:
    """Boolean mask of the classes absent from both ground truth and prediction."""
    counts = class_counts(confusion)
    return (counts.gt_pixels == 0) & (counts.predicted_pixels == 0)


def pixel_accuracy(confusion: np.ndarray) -> float:
    """Fraction of evaluated pixels predicted correctly (NaN for an empty matrix)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    return float(safe_divide(np.trace(_square(confusion)), confusion.sum()))


def iou(confusion: np.ndarray) -> np.ndarray:
    """Per-class intersection over union (Jaccard index): tp / (tp + fp + fn)."""
    c = class_counts(confusion)
    return safe_divide(c.tp, c.tp + c.fp + c.fn)


def precision(confusion: np.ndarray) -> np.ndarray:
    """Per-class precision: tp / (tp + fp)."""
    c = class_counts(confusion)
    return safe_divide(c.tp, c.tp + c.fp)


def recall(confusion: np.ndarray) -> np.ndarray:
    """Per-class recall (sensitivity, class accuracy): tp / (tp + fn)."""
    c = class_counts(confusion)
    return safe_divide(c.tp, c.tp + c.fn)


def specificity(confusion: np.ndarray) -> np.ndarray:
    """Per-class specificity (true-negative rate): tn / (tn + fp)."""
    c = class_counts(confusion)
    return safe_divide(c.tn, c.tn + c.fp)


def f1(confusion: np.ndarray) -> np.ndarray:
    """Per-class F1 score (Dice coefficient): 2 tp / (2 tp + fp + fn)."""
    c = class_counts(confusion)
    return safe_divide(2 * c.tp, 2 * c.tp + c.fp + c.fn)


def frequency_weighted_iou(confusion: np.ndarray) -> float:
    """IoU averaged with each class weighted by its share of ground-truth pixels."""
    c = class_counts(confusion)
    total = c.gt_pixels.sum()
    if total == 0:
        return float("nan")
    present = c.gt_pixels > 0
    return float((c.gt_pixels[present] / total * iou(confusion)[present]).sum())


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
    if cityscapes is None and num_classes == 19:
        from cityseg.labels import CLASS_NAMES

        if tuple(class_names) == CLASS_NAMES:
            from cityseg.evaluate.official import OfficialCounts

            cityscapes = OfficialCounts.from_train_confusion(confusion).scores()
    square = _square(confusion)
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
