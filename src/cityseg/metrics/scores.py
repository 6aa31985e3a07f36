"""Segmentation metrics as pure functions of a confusion matrix (NumPy only, no torch).

Conventions, shared by every function here:

* ``confusion[i, j]`` counts pixels whose ground truth is class ``i`` and whose prediction is class
  ``j``. Ignored pixels (ground truth 255, void labels) never enter it.
* It may carry one extra last column: pixels of class ``i`` predicted as no class at all (a void
  labelId in a submission). They are misses (false negatives, wrong for accuracy) and count for
  no class's false positives, exactly as the official Cityscapes script counts them.
* A value whose denominator is zero is undefined: NaN in arrays, ``None`` in the summary
  (:func:`cityseg.metrics.summary.summarize`). IoU and F1 are undefined only for a class absent
  from both ground truth and prediction (``absent_classes``); precision is undefined for a class
  never predicted, recall for a class absent from the ground truth, specificity for a class that
  covers every pixel.
* Every mean of the summary follows one rule (:func:`macro_mean`): it averages over the classes
  present in the ground truth or in the prediction, leaving out the classes absent from both; a
  value undefined for a class that is averaged counts as 0. This is torchmetrics' macro
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

from dataclasses import dataclass

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


def square_matrix(confusion: np.ndarray) -> np.ndarray:
    """The (K, K) part of a (K, K) or (K, K+1) matrix (without the column of unassigned pixels)."""
    confusion = np.asarray(confusion)
    rows, columns = confusion.shape
    if columns not in (rows, rows + 1):
        raise ValueError(f"confusion must be (K, K) or (K, K+1), got {confusion.shape}")
    return confusion[:, :rows]


def class_counts(confusion: np.ndarray) -> ClassCounts:
    """Split a (K, K) or (K, K+1) confusion matrix into per-class tp, fp, fn, tn."""
    confusion = np.asarray(confusion, dtype=np.float64)
    square = square_matrix(confusion)
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
    return float(safe_divide(np.trace(square_matrix(confusion)), confusion.sum()))


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
