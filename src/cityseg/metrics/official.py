"""The official Cityscapes pixel-level scores, IoU and instance-level iIoU, vectorised (NumPy only).

Mirrors ``cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling`` (2.x) number for number,
with a ``bincount`` per frame instead of the script's per-instance Python loop:

* a 34x34 confusion over labelIds (rows ground truth, columns prediction); any value outside
  0..33 is an error, in the ground truth, the prediction or the instanceIds;
* class IoU for the 19 labels with ``ignoreInEval == False``: fp counts only pixels whose ground
  truth is another evaluated label, fn counts every prediction on the class's pixels, void labelIds
  included; a class without ground truth and never predicted there is NaN and left out of the mean;
* iIoU: each ground-truth instance (instanceId > 1000, labelId = instanceId // 1000) weighs its tp
  and fn pixels by ``average class size / instance size`` (the script's ``avgClassSize``);
  caravan and trailer instances are skipped (``ignoreInEval``), fp is as for the IoU;
* categories: IoU over the evaluated labelIds of each category; the iIoU of ``human`` and
  ``vehicle`` (the categories whose labels all have instances) counts predicted labelIds over the
  whole category, caravan (29) and trailer (30) included, for its tp and its fp, as the script does.

Relation to the 19x19 trainId confusion of :mod:`cityseg.metrics.confusion`: its rows and columns
are the evaluated labelIds in trainId order, so for trainId predictions mapped to labelIds the
official class and category IoU equal those computed from the trainId matrix (see
:meth:`OfficialCounts.from_train_confusion`). They differ only for submissions that predict void
labelIds: such pixels are misses of the ground-truth class here, which a square trainId matrix
cannot hold, so :meth:`OfficialCounts.train_confusion` returns them as an extra last column that
:mod:`cityseg.metrics.scores` also counts as misses; and, for the vehicle iIoU, predictions of
caravan or trailer on non-vehicle pixels, which exist only in labelId space.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from cityscapesscripts.helpers.labels import category2labels
from cityscapesscripts.helpers.labels import labels as _official_labels

from cityseg.metrics.scores import mean, safe_divide

NUM_LABEL_IDS = 34

AVERAGE_INSTANCE_SIZE = {  # the official script's args.avgClassSize, in pixels
    "bicycle": 4672.3249222261,
    "caravan": 36771.8241758242,
    "motorcycle": 6298.7200839748,
    "rider": 3930.4788056518,
    "bus": 35732.1511111111,
    "train": 67583.7075812274,
    "car": 12794.0202738185,
    "person": 3462.4756337644,
    "truck": 27855.1264367816,
    "trailer": 16926.9763313609,
}

_LABELS = sorted((label for label in _official_labels if label.id >= 0), key=lambda x: x.id)
LABEL_NAMES = tuple(label.name for label in _LABELS)
EVALUATED = np.array([not label.ignoreInEval for label in _LABELS])
EVALUATED_IDS = np.flatnonzero(EVALUATED)
"""The 19 evaluated labelIds, ascending, which is also trainId order."""
INSTANCE_CLASS = np.array([label.hasInstances and not label.ignoreInEval for label in _LABELS])
_AVERAGE_SIZE = np.array([AVERAGE_INSTANCE_SIZE.get(name, np.nan) for name in LABEL_NAMES])

CATEGORIES = tuple(category2labels)
"""All 8 categories, ``void`` first; ``void`` has no evaluated label and is never reported."""
CATEGORY_OF_LABEL = np.array([CATEGORIES.index(label.category) for label in _LABELS])
INSTANCE_CATEGORY = np.array(
    [all(label.hasInstances for label in category2labels[c] if label.id >= 0) for c in CATEGORIES]
)
_INSTANCE_CATEGORY_LUT = np.full(256, -1, dtype=np.int64)
_INSTANCE_CATEGORY_LUT[:NUM_LABEL_IDS] = np.where(
    INSTANCE_CATEGORY[CATEGORY_OF_LABEL], CATEGORY_OF_LABEL, -1
)


class LabelIdError(ValueError):
    """An image holds values that are not Cityscapes labelIds (or instanceIds)."""

    def __init__(self, source: str, values: np.ndarray) -> None:
        self.source = source
        self.values = [int(v) for v in values]
        shown = ", ".join(map(str, self.values[:8])) + (", ..." if len(self.values) > 8 else "")
        super().__init__(f"{source} holds values {shown} that are not Cityscapes labelIds (0..33)")


def _as_uint8(label_ids: np.ndarray, source: str) -> np.ndarray:
    if label_ids.dtype == np.uint8:
        return label_ids
    if not np.issubdtype(label_ids.dtype, np.integer):
        raise TypeError(f"{source} must hold integer labelIds, got {label_ids.dtype}")
    outside = (label_ids < 0) | (label_ids >= NUM_LABEL_IDS)
    if outside.any():
        raise LabelIdError(source, np.unique(label_ids[outside]))
    return label_ids.astype(np.uint8)


def _pair_histogram(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """256x256 counts of the (first, second) uint8 value pairs.

    NumPy's bincount, not OpenCV's calcHist: this runs in forked workers, where OpenCV's
    thread pool, inherited from the parent, can hang.
    """
    pairs = (first.astype(np.uint16) << 8) | second
    return np.bincount(pairs.ravel(), minlength=256 * 256).reshape(256, 256)


def label_id_confusion(pred_label_ids: np.ndarray, gt_label_ids: np.ndarray) -> np.ndarray:
    """The 34x34 labelId confusion of one frame (int64, rows ground truth, columns prediction)."""
    if pred_label_ids.shape != gt_label_ids.shape:
        raise ValueError(f"prediction {pred_label_ids.shape} and ground truth {gt_label_ids.shape}")
    gt = _as_uint8(gt_label_ids, "ground truth")
    pred = _as_uint8(pred_label_ids, "prediction")
    counts = _pair_histogram(gt, pred)
    for source, totals in (("ground truth", counts.sum(1)), ("prediction", counts.sum(0))):
        if totals[NUM_LABEL_IDS:].any():
            raise LabelIdError(source, NUM_LABEL_IDS + np.flatnonzero(totals[NUM_LABEL_IDS:]))
    return counts[:NUM_LABEL_IDS, :NUM_LABEL_IDS].astype(np.int64)


def instance_counts(
    pred_label_ids: np.ndarray, gt_instance_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Size-weighted tp and fn of one frame's instances, per labelId (34,) and per category (8,).

    Instances of labels that are not evaluated instance classes are skipped (the official script
    skips ``ignoreInEval`` ones and would fail on the others, which real ground truth never has).
    """
    if pred_label_ids.shape != gt_instance_ids.shape:
        raise ValueError(f"prediction {pred_label_ids.shape} and instances {gt_instance_ids.shape}")
    if gt_instance_ids.dtype.kind not in "iu":
        raise TypeError(f"instanceIds must be integers, got {gt_instance_ids.dtype}")
    pred_label_ids = _as_uint8(pred_label_ids, "prediction")
    in_instance = gt_instance_ids > 1000
    instance_ids = gt_instance_ids[in_instance].astype(np.int64)
    pixel_labels = instance_ids // 1000
    if pixel_labels.size and pixel_labels.max() >= NUM_LABEL_IDS:
        raise LabelIdError("instanceIds", np.unique(pixel_labels[pixel_labels >= NUM_LABEL_IDS]))
    pred = pred_label_ids[in_instance]
    sizes = np.bincount(instance_ids, minlength=1)
    hits = np.bincount(instance_ids[pred == pixel_labels], minlength=sizes.size)
    pixel_category = _INSTANCE_CATEGORY_LUT[pixel_labels]
    in_category = (_INSTANCE_CATEGORY_LUT[pred] == pixel_category) & (pixel_category >= 0)
    category_hits = np.bincount(instance_ids[in_category], minlength=sizes.size)

    present = np.flatnonzero(sizes)
    label = present // 1000
    kept = INSTANCE_CLASS[label]
    present, label = present[kept], label[kept]
    weight = _AVERAGE_SIZE[label] / sizes[present]
    size, tp, category_tp = sizes[present], hits[present], category_hits[present]

    def per(index: np.ndarray, values: np.ndarray, length: int) -> np.ndarray:
        return np.bincount(index, weights=values, minlength=length).astype(np.float64)

    category = CATEGORY_OF_LABEL[label]
    return (
        per(label, tp * weight, NUM_LABEL_IDS),
        per(label, (size - tp) * weight, NUM_LABEL_IDS),
        per(category, category_tp * weight, len(CATEGORIES)),
        per(category, (size - category_tp) * weight, len(CATEGORIES)),
    )


def _zeros(length: int, dtype: type = np.float64) -> Any:
    return field(default_factory=lambda: np.zeros(length, dtype=dtype))


@dataclass
class OfficialCounts:
    """What the official script accumulates over frames; frames add up with ``+=``.

    Example:
        >>> counts = OfficialCounts()
        >>> counts.add_frame(pred_label_ids, gt_label_ids, gt_instance_ids)  # doctest: +SKIP
        >>> counts.scores()["classes_iou"]  # doctest: +SKIP
    """

    label_confusion: np.ndarray = field(
        default_factory=lambda: np.zeros((NUM_LABEL_IDS, NUM_LABEL_IDS), dtype=np.int64)
    )
    instance_tp: np.ndarray = _zeros(NUM_LABEL_IDS)
    instance_fn: np.ndarray = _zeros(NUM_LABEL_IDS)
    category_tp: np.ndarray = _zeros(len(CATEGORIES))
    category_fn: np.ndarray = _zeros(len(CATEGORIES))
    frames: int = 0
    frames_with_instances: int = 0

    def add_frame(
        self,
        pred_label_ids: np.ndarray,
        gt_label_ids: np.ndarray,
        gt_instance_ids: np.ndarray | None = None,
    ) -> None:
        """Add one frame: labelId prediction, labelId ground truth, instanceIds if available.

        Nothing is added when the frame is refused (``LabelIdError``, ``ValueError``).
        """
        confusion = label_id_confusion(pred_label_ids, gt_label_ids)
        if gt_instance_ids is not None:
            tp, fn, category_tp, category_fn = instance_counts(pred_label_ids, gt_instance_ids)
        self.label_confusion += confusion
        self.frames += 1
        if gt_instance_ids is not None:
            self.instance_tp += tp
            self.instance_fn += fn
            self.category_tp += category_tp
            self.category_fn += category_fn
            self.frames_with_instances += 1

    def __iadd__(self, other: OfficialCounts) -> OfficialCounts:
        self.label_confusion += other.label_confusion
        self.instance_tp += other.instance_tp
        self.instance_fn += other.instance_fn
        self.category_tp += other.category_tp
        self.category_fn += other.category_fn
        self.frames += other.frames
        self.frames_with_instances += other.frames_with_instances
        return self

    @classmethod
    def from_train_confusion(cls, confusion: np.ndarray) -> OfficialCounts:
        """Counts of a (19, 19) or (19, 20) trainId confusion (no instances, so no iIoU).

        The extra column, pixels predicted as no class, becomes predictions of labelId 0.
        """
        confusion = np.asarray(confusion, dtype=np.int64)
        if confusion.shape not in ((19, 19), (19, 20)):
            raise ValueError(
                f"expected a (19, 19) or (19, 20) trainId matrix, got {confusion.shape}"
            )
        counts = cls()
        counts.label_confusion[np.ix_(EVALUATED_IDS, EVALUATED_IDS)] = confusion[:, :19]
        counts.label_confusion[EVALUATED_IDS, 0] += confusion[:, 19:].sum(axis=1)
        return counts

    def train_confusion(self) -> np.ndarray:
        """The (19, 20) trainId confusion: evaluated rows and columns, then void predictions."""
        square = self.label_confusion[np.ix_(EVALUATED_IDS, EVALUATED_IDS)]
        unassigned = self.label_confusion[EVALUATED_IDS].sum(axis=1) - square.sum(axis=1)
        return np.concatenate([square, unassigned[:, None]], axis=1)

    @property
    def has_instances(self) -> bool:
        return self.frames > 0 and self.frames_with_instances == self.frames

    def scores(self) -> dict[str, Any]:
        """The official numbers: class and category IoU and iIoU, per item and averaged."""
        confusion = self.label_confusion
        ids = EVALUATED_IDS
        tp = confusion[ids, ids]
        fp = confusion[np.ix_(ids, ids)].sum(axis=0) - tp
        fn = confusion[ids].sum(axis=1) - tp
        class_iou = safe_divide(tp, tp + fp + fn)
        itp, ifn = self.instance_tp[ids], self.instance_fn[ids]
        class_iiou = np.where(INSTANCE_CLASS[ids], safe_divide(itp, itp + fp + ifn), np.nan)

        category_iou = np.full(len(CATEGORIES), np.nan)
        category_iiou = np.full(len(CATEGORIES), np.nan)
        for index in range(len(CATEGORIES)):
            in_category = CATEGORY_OF_LABEL == index
            members = np.flatnonzero(in_category & EVALUATED)
            others = np.flatnonzero(EVALUATED & ~in_category)
            if members.size == 0:
                continue
            tp_k = confusion[np.ix_(members, members)].sum()
            fn_k = confusion[members].sum() - tp_k
            fp_k = confusion[np.ix_(others, members)].sum()
            category_iou[index] = safe_divide(tp_k, tp_k + fp_k + fn_k)
            if INSTANCE_CATEGORY[index]:
                fp_all = confusion[np.ix_(others, np.flatnonzero(in_category))].sum()
                itp_k, ifn_k = self.category_tp[index], self.category_fn[index]
                category_iiou[index] = safe_divide(itp_k, itp_k + fp_all + ifn_k)

        note = None
        if not self.has_instances:
            class_iiou[:] = np.nan
            category_iiou[:] = np.nan
            note = (
                f"iIoU not computed: it needs gtFine instanceIds for every frame "
                f"({self.frames_with_instances} of {self.frames} frames had them)"
                if self.frames
                else "iIoU not computed: it needs gtFine instanceIds, not only a confusion matrix"
            )
        reported = [i for i in range(len(CATEGORIES)) if EVALUATED[CATEGORY_OF_LABEL == i].any()]
        return cityscapes_block(
            {LABEL_NAMES[i]: (class_iou[k], class_iiou[k]) for k, i in enumerate(ids)},
            {CATEGORIES[i]: (category_iou[i], category_iiou[i]) for i in reported},
            note,
        )


def _number(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def cityscapes_block(
    classes: dict[str, tuple[float, float]],
    categories: dict[str, tuple[float, float]],
    note: str | None,
) -> dict[str, Any]:
    """The JSON-ready ``cityscapes`` block from per-item (IoU, iIoU) pairs, NaN for undefined."""

    def averages(items: dict[str, tuple[float, float]]) -> tuple[float | None, float | None]:
        values = np.array(list(items.values()), dtype=np.float64).reshape(-1, 2)
        return _number(mean(values[:, 0])), _number(mean(values[:, 1]))

    classes_iou, classes_iiou = averages(classes)
    categories_iou, categories_iiou = averages(categories)
    return {
        "classes_iou": classes_iou,
        "classes_iiou": classes_iiou,
        "categories_iou": categories_iou,
        "categories_iiou": categories_iiou,
        "per_class": {n: {"iou": _number(a), "iiou": _number(b)} for n, (a, b) in classes.items()},
        "per_category": {
            n: {"iou": _number(a), "iiou": _number(b)} for n, (a, b) in categories.items()
        },
        "note": note,
    }


def format_official(block: dict[str, Any]) -> str:
    """The ``cityscapes`` block as the official script prints it (classes, then categories)."""

    def value(number: float | None) -> str:
        return "  nan" if number is None else f"{number:>5.3f}"

    lines: list[str] = []
    for title, key, mean_iou, mean_iiou in (
        ("classes", "per_class", "classes_iou", "classes_iiou"),
        ("categories", "per_category", "categories_iou", "categories_iiou"),
    ):
        lines += [f"{title:<17}IoU      nIoU", "-" * 32]
        for name, scores in block[key].items():
            lines.append(f"{name:<14}: {value(scores['iou'])}    {value(scores['iiou'])}")
        lines += [
            "-" * 32,
            f"Score Average : {value(block[mean_iou])}    {value(block[mean_iiou])}",
        ]
        lines += ["-" * 32, ""]
    if block.get("note"):
        lines.append(block["note"])
    return "\n".join(lines).rstrip() + "\n"
