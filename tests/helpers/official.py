"""Run the official Cityscapes evaluator in-process, and make predictions to feed it.

cityscapesscripts 2.3 calls ``np.in1d``, which NumPy 2.4 removed: it is lent ``np.isin`` for the
duration of a call, and the script runs on its own copy of its global ``args`` with the JSON export
off, so nothing is written outside the test's folders.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from cityseg.labels import LABEL_ID_TO_TRAIN_ID, TRAIN_ID_TO_LABEL_ID

GT_DIR = Path("gtFine")


@contextlib.contextmanager
def in1d_shim() -> Iterator[None]:
    had_in1d = "in1d" in np.__dict__
    if not had_in1d:
        np.in1d = np.isin
    try:
        yield
    finally:
        if not had_in1d:
            del np.in1d


def run_official(
    pred_paths: Sequence[Path], gt_paths: Sequence[Path], instances: bool = True
) -> dict:
    """The official script's result dict for paired prediction / *_gtFine_labelIds.png files."""
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official

    args = copy.copy(official.args)
    args.quiet = True
    args.JSONOutput = False
    args.evalPixelAccuracy = False
    args.evalInstLevelScore = instances
    with in1d_shim():
        return official.evaluateImgLists(
            [str(p) for p in pred_paths], [str(p) for p in gt_paths], args
        )


def perturb(label_ids: np.ndarray, rng: np.random.Generator, blocks: int = 12) -> np.ndarray:
    """A plausible wrong prediction: the ground truth shifted, with blocks of random labelIds.

    The blocks use every labelId 0..33, void ones and caravan/trailer included, and some copy
    another part of the frame.
    """
    height, width = label_ids.shape
    shift = (int(rng.integers(-height // 40, height // 40 + 1)), int(rng.integers(-8, 9)))
    pred = np.roll(label_ids, shift, axis=(0, 1))
    for _ in range(blocks):
        h = int(rng.integers(1, height // 4))
        w = int(rng.integers(1, width // 4))
        y, x = int(rng.integers(0, height - h)), int(rng.integers(0, width - w))
        if rng.random() < 0.3:
            sy, sx = int(rng.integers(0, height - h)), int(rng.integers(0, width - w))
            pred[y : y + h, x : x + w] = label_ids[sy : sy + h, sx : sx + w]
        else:
            pred[y : y + h, x : x + w] = rng.integers(0, 34)
    return pred


def as_train_id_prediction(label_ids: np.ndarray) -> np.ndarray:
    """A prediction a model could make: labelIds of the 19 classes only (void becomes road)."""
    train_ids = LABEL_ID_TO_TRAIN_ID[label_ids]
    train_ids[train_ids == 255] = 0
    return TRAIN_ID_TO_LABEL_ID[train_ids]


def read(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def write_frame(
    out_root: Path,
    split: str,
    frame_id: str,
    label_ids: np.ndarray,
    instance_ids: np.ndarray | None,
) -> Path:
    """Write a gtFine frame (labelIds, instanceIds) into ``out_root``; return the labelIds path."""
    city = frame_id.split("_")[0]
    folder = out_root / GT_DIR / split / city
    folder.mkdir(parents=True, exist_ok=True)
    label_path = folder / f"{frame_id}_gtFine_labelIds.png"
    cv2.imwrite(str(label_path), label_ids)
    if instance_ids is not None:
        cv2.imwrite(str(folder / f"{frame_id}_gtFine_instanceIds.png"), instance_ids)
    return label_path


def downscaled(image: np.ndarray, factor: int) -> np.ndarray:
    height, width = image.shape
    size = (width // factor, height // factor)
    return cv2.resize(image, size, interpolation=cv2.INTER_NEAREST)
