"""evaluate_checkpoint / evaluate_dataset on generated datasets of both formats and on real data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cityseg import labels
from cityseg.data.sample import Sample
from cityseg.errors import CheckpointError, DataError
from cityseg.evaluate.evaluator import evaluate_checkpoint, evaluate_dataset
from cityseg.inference.options import InferenceOptions
from cityseg.inference.predictor import Predictor
from cityseg.normalization import IMAGENET_NORMALIZATION
from tests.helpers import save_tiny_checkpoint, write_pairs, write_scenes
from tests.helpers.evaluation import OFFICIAL_KEYS, check_metrics

MEAN, STD = IMAGENET_NORMALIZATION["mean"], IMAGENET_NORMALIZATION["std"]


def test_official_layout_gives_every_metric_and_official_iiou(tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path / "model.pt")
    root = write_scenes(tmp_path / "cityscapes", {"val": 3})
    out = tmp_path / "eval"
    metrics = evaluate_checkpoint(checkpoint, root, "val", out, progress=False)
    check_metrics(metrics, images=3)
    for key in OFFICIAL_KEYS:
        assert 0 <= metrics["cityscapes"][key] <= 1, key  # iIoU too: instanceIds exist
    # trainIds mapped to labelIds score the same IoU in the official script as in our matrix
    assert metrics["cityscapes"]["classes_iou"] == pytest.approx(metrics["mean_iou"])
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["mean_iou"] == metrics["mean_iou"] and saved["split"] == "val"
    assert saved["checkpoint"] == str(checkpoint) and saved["mode"] == "whole"
    for name in ("confusion_matrix.png", "class_iou.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG")


def test_pairs_format_slide_tta_with_report(tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path / "model.pt")
    root = write_pairs(tmp_path / "pairs", 4, split="val")
    out = tmp_path / "eval"
    metrics = evaluate_checkpoint(
        checkpoint,
        root,
        "val",
        out,
        InferenceOptions.from_flags("slide", tta=True, scales=(1.0,)),
        report=True,
        progress=False,
    )
    check_metrics(metrics, images=4)
    assert metrics["format"] == "pairs" and metrics["inference"]["flip"] is True
    assert metrics["cityscapes"]["classes_iiou"] is None  # no instanceIds in pairs
    assert (out / "report.html").stat().st_size > 1000
    assert len(list((out / "images").glob("best_*.png"))) == 3
    assert len(list((out / "images").glob("worst_*.png"))) == 1  # the 4th, not a best again


def test_predictor_from_checkpoint_takes_its_normalisation_and_training_size(tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path / "model.pt", (96, 160))
    predictor = Predictor.from_checkpoint(
        checkpoint, "cpu", InferenceOptions(mode="slide", resize="train")
    )
    assert predictor.meta["class_names"] == list(labels.CLASS_NAMES)
    assert predictor.tile == (96, 160) and predictor.stride == (64, 106)
    assert predictor.options.resize == (96, 160)
    torch.testing.assert_close(predictor.normalize.std.flatten(), torch.tensor(STD))
    assert "model" not in predictor.meta


def test_max_images_limits_the_evaluation(tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path / "model.pt")
    root = write_scenes(tmp_path / "cityscapes", {"val": 3})
    metrics = evaluate_checkpoint(checkpoint, root, max_images=2, progress=False)
    assert metrics["images"] == 2


class ColourOracle(nn.Module):
    """Predicts the class written in the red channel (trainId * 10) of the un-normalised image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = (x[:, 0] * STD[0] + MEAN[0]) * 255
        classes = torch.arange(labels.NUM_CLASSES, dtype=x.dtype)[None, :, None, None] * 10
        return -((red[:, None] - classes) ** 2)


class InMemoryDataset:
    """Images whose red channel encodes the target (so ColourOracle is right), except on the left
    half of image ``wrong_index``, where it encodes car."""

    def __init__(self, targets: list[np.ndarray], wrong_index: int | None = None) -> None:
        self.targets, self.wrong_index = targets, wrong_index
        self.samples = [Sample(Path(f"{i}.png"), None, str(i), "trainIds") for i in range(3)]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        target = self.targets[index]
        image = np.zeros((*target.shape, 3), np.uint8)
        image[..., 0] = np.where(target == 255, 0, target.astype(np.int64) * 10)
        if index == self.wrong_index:
            image[:, : target.shape[1] // 2, 0] = 13 * 10
        return image, target


def test_a_perfect_model_scores_one_and_counts_every_labelled_pixel():
    rng = np.random.default_rng(0)
    targets = [rng.choice([0, 2, 13, 255], size=(33, 47)).astype(np.uint8) for _ in range(3)]
    targets[2][:] = 10  # an image of sky only
    predictor = Predictor(ColourOracle(), MEAN, STD, "cpu", InferenceOptions())
    result = evaluate_dataset(predictor, InMemoryDataset(targets), progress=False)
    labelled = sum(int((t != 255).sum()) for t in targets)
    assert result.confusion.sum() == np.trace(result.confusion) == labelled
    assert result.confusion[13, 13] == sum(int((t == 13).sum()) for t in targets)
    assert [image.mean_iou for image in result.images] == [1.0, 1.0, 1.0]


def test_per_image_mean_iou_ranks_a_worse_image_lower():
    dataset = InMemoryDataset([np.zeros((32, 32), np.uint8)] * 3, wrong_index=1)
    predictor = Predictor(ColourOracle(), MEAN, STD, "cpu", InferenceOptions())
    ranked = evaluate_dataset(predictor, dataset, progress=False).ranked()
    # image 1: road everywhere, predicted car on the left half: road IoU 0.5, car IoU 0
    assert ranked[-1].frame_id == "1" and ranked[-1].mean_iou == pytest.approx(0.25)
    assert [image.mean_iou for image in ranked[:2]] == [1.0, 1.0]


def test_missing_checkpoint_data_root_and_split_are_user_errors(tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path / "model.pt")
    root = write_scenes(tmp_path / "cityscapes", {"val": 3})
    with pytest.raises(CheckpointError, match="missing.pt: checkpoint not found"):
        evaluate_checkpoint(tmp_path / "missing.pt", root, progress=False)
    with pytest.raises(DataError, match="nowhere: data folder not found"):
        evaluate_checkpoint(checkpoint, tmp_path / "nowhere", progress=False)
    with pytest.raises(DataError, match="split 'test' not found"):
        evaluate_checkpoint(checkpoint, root, "test", progress=False)


def test_real_cityscapes_val_frame_with_official_scores(tmp_path, cityscapes_root):
    checkpoint = save_tiny_checkpoint(tmp_path / "model.pt")
    metrics = evaluate_checkpoint(checkpoint, cityscapes_root, "val", tmp_path, progress=False)
    check_metrics(metrics, images=1)
    assert metrics["per_image"][0]["frame_id"] == "frankfurt_000000_000294"
    assert metrics["pixels"] > 0.5 * 256 * 128
    assert all(0 <= metrics["cityscapes"][key] <= 1 for key in OFFICIAL_KEYS)
