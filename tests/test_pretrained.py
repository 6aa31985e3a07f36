"""The shipped model ``cityseg/pretrained/pairs.pt``: small, safe to load, and usable at once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cityseg import labels
from cityseg.checkpoint.loading import load_model
from cityseg.cli import main
from cityseg.data.pairs import decode_label_colors, read_pair
from cityseg.inference.options import InferenceOptions
from cityseg.predict import Segmenter
from cityseg.pretrained import pretrained_path
from cityseg.scenes.render import render_scene


@pytest.fixture(scope="module")
def shipped() -> Path:
    return pretrained_path("pairs")


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter.from_pretrained("pairs", "cpu", InferenceOptions(resize="train"))


def test_the_shipped_checkpoint_is_small_half_precision_and_loads_safely(shipped):
    assert shipped.stat().st_size < 10 * 2**20
    state = torch.load(shipped, map_location="cpu", weights_only=True)
    assert not {"optimizer", "scheduler", "scaler", "rng"} & state.keys()
    assert {w.dtype for w in state["model"].values() if w.is_floating_point()} == {torch.float16}
    assert state["class_names"] == list(labels.CLASS_NAMES)
    assert 0.0 < state["training"]["mean_iou"] < 1.0
    assert set(state["training"]["class_iou"]) == set(labels.CLASS_NAMES)
    model, meta = load_model(shipped)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert meta["training"] == state["training"] and not model.training


def test_it_segments_a_generated_scene(segmenter):
    scene = render_scene(0, 256, 256)
    prediction = segmenter.predict(scene.image)
    assert prediction.shape == (256, 256) and prediction.dtype == np.uint8
    assert prediction.max() < labels.NUM_CLASSES


def test_it_segments_a_real_pairs_photo(segmenter, pairs_root):
    photo, label_colors = read_pair(pairs_root / "train" / "1.jpg")
    label = decode_label_colors(label_colors)
    prediction = segmenter.predict(photo)
    assert prediction.shape == photo.shape[:2]
    known = label != labels.IGNORE_INDEX
    assert (prediction[known] == label[known]).mean() > 0.6  # road, cars, buildings, sky, ...


def test_evaluate_pretrained_scores_a_pairs_folder(shipped, pairs_root, tmp_path, capsys):
    (tmp_path / "data" / "val").mkdir(parents=True)
    for name in ("1.jpg", "2.jpg", "3.jpg"):
        (tmp_path / "data" / "val" / name).symlink_to(pairs_root / "train" / name)
    out = tmp_path / "eval"
    args = ["--data", str(tmp_path / "data"), "--split", "val", "--out", str(out)]
    assert main(["evaluate", "--pretrained", "pairs", *args, "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"] == 3 and metrics["pixel_accuracy"] > 0.6
    training_size = torch.load(shipped, weights_only=True)["input_size"]
    assert metrics["inference"]["resize"] == list(training_size)  # its scale by default
    assert "mIoU" in capsys.readouterr().out


def test_evaluate_takes_a_checkpoint_or_pretrained_but_not_both(shipped, tmp_path, capsys):
    for args in ([], [str(shipped), "--pretrained", "pairs"]):
        assert main(["evaluate", *args, "--data", str(tmp_path), "--out", str(tmp_path)]) != 0
        assert "give either a CHECKPOINT or --pretrained NAME" in capsys.readouterr().err


def test_pretrained_models_run_at_their_training_size_unless_told_otherwise():
    from cityseg.predict import Segmenter

    default = Segmenter.from_pretrained("pairs", device="cpu").predictor.settings()
    assert default["resize"] == [128, 256]
    native = InferenceOptions.from_flags(resize="native")
    assert Segmenter.from_pretrained("pairs", "cpu", native).predictor.settings()["resize"] is None
