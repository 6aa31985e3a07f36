"""`cityseg demo` end to end, shrunk: data tree, checkpoint, evaluation report, predictions."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from cityseg.cli import main
from cityseg.labels import NUM_CLASSES

PREDICTION_OUTPUTS = ("labelIds", "trainIds", "color", "overlay")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    arguments = ["demo", "--out", str(out), "--preset", "quick", "--size", "64x128"]
    arguments += [
        "--train-images",
        "8",
        "--val-images",
        "4",
        "--half-size-epochs",
        "1",
        "--epochs",
        "1",
    ]
    arguments += ["train.progress=false", "train.batch_size=4"]
    assert main(arguments) == 0
    return out


@pytest.mark.slow
def test_demo_writes_data_checkpoint_report_and_predictions(demo_run):
    data = demo_run / "data"
    assert len(list((data / "leftImg8bit" / "train").rglob("*_leftImg8bit.png"))) == 8
    assert len(list((data / "gtFine" / "val").rglob("*_gtFine_labelIds.png"))) == 4
    assert (demo_run / "run" / "checkpoint_best.pt").is_file()
    half_size = torch.load(demo_run / "run_half_size" / "checkpoint_last.pt", weights_only=True)
    assert half_size["input_size"] == [32, 64] and half_size["epoch"] == 1
    first = yaml.safe_load((demo_run / "run_half_size" / "config.yaml").read_text())
    assert first["train"]["init_from"] == "pairs"  # the shipped model, by default
    final = yaml.safe_load((demo_run / "run" / "config.yaml").read_text())
    assert final["train"]["init_from"] == str(demo_run / "run_half_size" / "checkpoint_last.pt")
    assert final["data"]["size"] == [64, 128]
    assert (demo_run / "evaluation" / "report.html").is_file()
    predictions = sorted(p.name for p in (demo_run / "predictions").iterdir())
    assert len(predictions) == 4 * len(PREDICTION_OUTPUTS)
    for output in PREDICTION_OUTPUTS:
        assert sum(name.endswith(f"_{output}.png") for name in predictions) == 4


@pytest.mark.slow
def test_demo_metrics_are_in_range(demo_run):
    metrics = json.loads((demo_run / "evaluation" / "metrics.json").read_text())
    assert 0.0 <= metrics["mean_iou"] <= 1.0
    assert 0.05 < metrics["pixel_accuracy"] <= 1.0, "even one epoch beats guessing one class"
    assert len(metrics["classes"]) == NUM_CLASSES


def test_demo_options_reach_the_settings(monkeypatch, tmp_path):
    import cityseg.demo

    seen = {}
    monkeypatch.setattr(
        cityseg.demo,
        "run_demo",
        lambda settings, overrides: seen.update(settings=settings, overrides=overrides),
    )
    arguments = ["demo", "--out", str(tmp_path), "--from-scratch", "--half-size-epochs", "0"]
    assert main([*arguments, "--epochs", "3", "--size", "64x96", "train.lr=0.01"]) == 0
    settings = seen["settings"]
    assert settings.init_from is None and settings.half_size_epochs == 0 and settings.epochs == 3
    assert (settings.height, settings.width) == (64, 96) and seen["overrides"] == ["train.lr=0.01"]
    assert main(["demo", "--out", str(tmp_path), "--preset", "quick"]) == 0
    assert seen["settings"].init_from == "pairs" and seen["settings"].train_images == 64
