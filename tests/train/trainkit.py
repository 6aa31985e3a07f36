"""Helpers of the training tests: a tiny labelled dataset on disk and a tiny configuration."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cityseg.config import Config, load_config
from cityseg.labels import PALETTE

SCENE_CLASSES = (0, 2, 8, 10, 11, 13)  # road, building, vegetation, sky, person, car


def write_scenes(
    root: Path, splits: dict[str, int], height: int = 64, width: int = 128, seed: int = 0
) -> Path:
    """Random rectangles of a few classes, coloured by the class palette plus noise, written in the
    official layout (leftImg8bit + gtFine labelTrainIds): learnable by colour in a few steps."""
    rng = np.random.default_rng(seed)
    for split, count in splits.items():
        images = root / "leftImg8bit" / split / "testcity"
        labels = root / "gtFine" / split / "testcity"
        images.mkdir(parents=True, exist_ok=True)
        labels.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            label = np.zeros((height, width), np.uint8)
            label[: height // 2] = 10
            for _ in range(4):
                top, left = rng.integers(0, height - 8), rng.integers(0, width - 8)
                bottom, right = (
                    top + rng.integers(8, height // 2),
                    left + rng.integers(8, width // 2),
                )
                label[top:bottom, left:right] = rng.choice(SCENE_CLASSES)
            label[rng.random((height, width)) < 0.01] = 255
            noise = rng.integers(-20, 21, (height, width, 3))
            image = np.clip(PALETTE[np.minimum(label, 18)].astype(int) + noise, 0, 255)
            frame = f"testcity_{index:06d}_000019"
            cv2.imwrite(str(images / f"{frame}_leftImg8bit.png"), image[..., ::-1].astype(np.uint8))
            cv2.imwrite(str(labels / f"{frame}_gtFine_labelTrainIds.png"), label)
    return root


def write_pairs(root: Path, count: int, size: int = 64, seed: int = 0) -> Path:
    """The Kaggle pairs format: ``root/train/<n>.jpg``, photo on the left, colour label right."""
    scenes = write_scenes(root / "scenes", {"train": count}, size, size, seed)
    split = root / "train"
    split.mkdir(parents=True)
    for index, image_path in enumerate(sorted(scenes.glob("leftImg8bit/train/*/*.png"))):
        label_path = Path(str(image_path).replace("leftImg8bit", "gtFine", 1)).with_name(
            image_path.name.replace("leftImg8bit", "gtFine_labelTrainIds")
        )
        photo = cv2.imread(str(image_path))
        colours = PALETTE[np.minimum(cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED), 18)]
        pair = np.concatenate([photo, colours[..., ::-1]], axis=1)
        cv2.imwrite(str(split / f"{index + 1}.jpg"), pair, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return root


def tiny_config(root: Path, *overrides: str) -> Config:
    """A small fast CPU configuration over ``root``: 8-channel U-Net of depth 2, 64x128 images."""
    return load_config(
        None,
        [
            f"data.root={root}",
            "data.format=cityscapes",
            "data.size=[64, 128]",
            "data.scale=[0.8, 1.2]",
            "data.workers=0",
            "model.base_width=8",
            "model.depth=2",
            "train.epochs=2",
            "train.batch_size=4",
            "train.lr=0.01",
            "train.device=cpu",
            "train.precision=fp32",
            "train.progress=false",
            "train.deterministic=true",
            *overrides,
        ],
    )


@pytest.fixture(autouse=True)
def one_thread():
    """Train on one thread: on a shared 2-core machine, two OpenMP threads that spin-wait for each
    other made these small steps 6-10x slower (the CLI sets OMP_WAIT_POLICY=PASSIVE instead,
    which only works before torch is imported)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
