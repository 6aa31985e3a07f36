"""Done-when check: training on two real Cityscapes frames fits them (pixel accuracy above 0.9)."""

from __future__ import annotations

import json
import time

import cv2
import pytest

from cityseg.data import open_dataset
from cityseg.data.transforms import resize_pair
from cityseg.train.engine import train
from tests.helpers import tiny_config

COPIES = 8  # each frame several times per epoch: an epoch of 8 steps, not 1


def write_two_frames(source, out, height: int = 128, width: int = 256):
    """The first two aachen frames, downscaled, as train (repeated) and val (once) of a new root."""
    dataset = open_dataset(source, "train", "cityscapes")
    for index in range(2):
        image, train_ids = resize_pair(*dataset[index], (height, width))
        for split, copies in (("train", COPIES), ("val", 1)):
            for copy in range(copies):
                frame = f"aachen_{index:03d}{copy:03d}_000019"
                images, labels = (
                    out / "leftImg8bit" / split / "aachen",
                    out / "gtFine" / split / "aachen",
                )
                images.mkdir(parents=True, exist_ok=True)
                labels.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(images / f"{frame}_leftImg8bit.png"), image[..., ::-1])
                cv2.imwrite(str(labels / f"{frame}_gtFine_labelTrainIds.png"), train_ids)
    return out


@pytest.mark.slow
def test_two_real_frames_are_learnt(cityscapes_root, tmp_path):
    root = write_two_frames(cityscapes_root, tmp_path / "data")
    config = tiny_config(
        root,
        "data.size=[128, 256]",
        "data.scale=[1, 1]",
        "data.hflip=0",
        "model.base_width=16",
        "model.depth=4",
        "train.batch_size=2",
        "train.epochs=16",
        "train.lr=0.01",
        "train.warmup_iterations=10",
        "train.schedule=poly",
        "train.deterministic=false",
    )
    started = time.perf_counter()
    train(config, tmp_path / "run")
    elapsed = time.perf_counter() - started
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    accuracies = [round(r["pixel_accuracy"], 3) for r in records]
    print(f"pixel accuracy per epoch {accuracies}, {elapsed:.0f} s")
    assert accuracies[-1] > 0.9, accuracies  # measured: 0.94 after 16 epochs (128 steps), ~40 s
