"""Tiny data sets on disk, made by the package's own scene generator (``cityseg.scenes``):
the one builder of the tests' images and labels.

The official layout has what the real data set has (photos, labelIds, instanceIds, polygons), so
the same scenes serve training, evaluation with the official scores, and the pairs format.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from cityseg.data.io import read_label_png
from cityseg.labels import LABEL_COLORS
from cityseg.scenes import generate_dataset

CITY = "testcity"


def write_scenes(
    root: Path, splits: dict[str, int], height: int = 64, width: int = 128, seed: int = 0
) -> Path:
    """Generated street scenes in the official layout (``leftImg8bit/``, ``gtFine/`` with labelIds,
    instanceIds and polygons) under ``root``: frames per split as ``splits`` says, all in the city
    ``testcity`` (``testcity_000000_000019``, ...)."""
    cities = {split: (CITY,) for split in splits}
    return generate_dataset(root, splits, height, width, seed=seed, cities=cities, color=False)


def write_pairs(
    root: Path, count: int, size: int = 64, seed: int = 0, split: str = "train"
) -> Path:
    """The Kaggle pairs format: ``root/<split>/<n>.jpg`` (n from 1), ``size`` x ``2 size``, the
    photo on the left and the official label colours on the right."""
    scenes = write_scenes(root / "scenes", {split: count}, size, size, seed)
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    for index, image_path in enumerate(sorted(scenes.glob(f"leftImg8bit/{split}/*/*.png"))):
        frame = image_path.name.removesuffix("_leftImg8bit.png")
        label_path = scenes / "gtFine" / split / image_path.parent.name
        label_ids = read_label_png(label_path / f"{frame}_gtFine_labelIds.png")
        colours = LABEL_COLORS[label_ids][..., ::-1]
        pair = np.concatenate([cv2.imread(str(image_path)), colours], axis=1)
        cv2.imwrite(str(folder / f"{index + 1}.jpg"), pair, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return root
