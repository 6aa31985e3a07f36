"""Cityscapes class definitions and lookup tables.

Everything here is derived from ``cityscapesscripts.helpers.labels``, the dataset authors' own
table, so ids, trainIds, categories and colours cannot drift from the official definition.

Three id spaces exist and are easy to confuse:

* ``labelId``  0..33: what ``*_gtFine_labelIds.png`` stores, what the benchmark expects.
* ``trainId``  0..18: the 19 evaluated classes a model predicts; all else is ``IGNORE_INDEX``.
* colour:      the RGB of each label in ``*_gtFine_color.png`` and in the Kaggle pairs images.

Example:
    >>> from cityseg import labels
    >>> labels.CLASS_NAMES[0], labels.NUM_CLASSES, labels.IGNORE_INDEX
    ('road', 19, 255)
    >>> int(labels.LABEL_ID_TO_TRAIN_ID[26])  # car
    13
"""

from __future__ import annotations

import numpy as np
from cityscapesscripts.helpers.labels import labels as _official_labels

IGNORE_INDEX = 255
"""trainId of pixels that are not evaluated (void classes, unlabelled, padding)."""

_labelled = [label for label in _official_labels if label.id >= 0]
_trainable = sorted(
    (label for label in _labelled if 0 <= label.trainId < IGNORE_INDEX), key=lambda x: x.trainId
)

NUM_LABEL_IDS = len(_labelled)
"""The 34 Cityscapes labels with a labelId (0..33), void classes included."""

LABEL_NAMES: tuple[str, ...] = tuple(label.name for label in sorted(_labelled, key=lambda x: x.id))
"""Name of each labelId, indexed by labelId."""

NUM_CLASSES = len(_trainable)
"""The 19 training classes."""

CLASS_NAMES: tuple[str, ...] = tuple(label.name for label in _trainable)
"""Name of each trainId, indexed by trainId."""

CATEGORY_NAMES: tuple[str, ...] = tuple(
    dict.fromkeys(label.category for label in _trainable)  # ordered, unique
)
"""The 7 evaluated categories (flat, construction, object, nature, sky, human, vehicle)."""

CLASS_CATEGORY: np.ndarray = np.array(
    [CATEGORY_NAMES.index(label.category) for label in _trainable], dtype=np.int64
)
"""Category index of each trainId."""

CLASS_HAS_INSTANCES: np.ndarray = np.array([label.hasInstances for label in _trainable], dtype=bool)
"""Whether a trainId class has instance annotations (used by the instance-level iIoU)."""

PALETTE: np.ndarray = np.array([label.color for label in _trainable], dtype=np.uint8)
"""RGB colour of each trainId, shape (19, 3)."""

LABEL_COLORS: np.ndarray = np.array(
    [label.color for label in sorted(_labelled, key=lambda x: x.id)], dtype=np.uint8
)
"""RGB colour of each labelId, shape (34, 3). Several void labels share black (0, 0, 0)."""


def _lookup(pairs: dict[int, int], default: int) -> np.ndarray:
    table = np.full(256, default, dtype=np.uint8)
    for source, target in pairs.items():
        table[source] = target
    return table


LABEL_ID_TO_TRAIN_ID: np.ndarray = _lookup(
    {
        label.id: label.trainId if 0 <= label.trainId < IGNORE_INDEX else IGNORE_INDEX
        for label in _labelled
    },
    IGNORE_INDEX,
)
"""256-entry uint8 lookup: labelId -> trainId (255 for void and unknown ids)."""

TRAIN_ID_TO_LABEL_ID: np.ndarray = _lookup({label.trainId: label.id for label in _trainable}, 0)
"""256-entry uint8 lookup: trainId -> labelId (255 and unknown -> 0, 'unlabeled')."""

TRAIN_ID_TO_COLOR: np.ndarray = np.zeros((256, 3), dtype=np.uint8)
"""256x3 uint8 lookup: trainId -> RGB; 255 (ignore) is black."""
TRAIN_ID_TO_COLOR[:NUM_CLASSES] = PALETTE


def _color_to_label_id() -> dict[tuple[int, int, int], int]:
    """Colour -> labelId. Where void labels share a colour, the first (lowest) labelId wins."""
    table: dict[tuple[int, int, int], int] = {}
    for label_id, color in enumerate(LABEL_COLORS):
        table.setdefault(tuple(int(c) for c in color), label_id)
    return table


COLOR_TO_LABEL_ID: dict[tuple[int, int, int], int] = _color_to_label_id()
"""RGB colour -> labelId for all 34 labels (shared void colours map to the lowest labelId)."""

KNOWN_LABEL_IDS: np.ndarray = np.zeros(256, dtype=bool)
"""256-entry mask of the values a ``*_gtFine_labelIds.png`` may legally hold (0..33)."""
KNOWN_LABEL_IDS[:NUM_LABEL_IDS] = True


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map a labelId mask (uint8, any shape) to trainIds, 255 for every non-evaluated label."""
    return LABEL_ID_TO_TRAIN_ID[label_ids]


def train_ids_to_label_ids(train_ids: np.ndarray) -> np.ndarray:
    """Map a trainId mask to labelIds, the official submission format; 255 becomes 0."""
    return TRAIN_ID_TO_LABEL_ID[train_ids]


def colorize(train_ids: np.ndarray) -> np.ndarray:
    """Colour a trainId mask (H, W) with the Cityscapes palette, giving RGB uint8 (H, W, 3)."""
    return TRAIN_ID_TO_COLOR[train_ids]
