"""`cityseg demo` end to end, shrunk: data tree, checkpoint, evaluation report, predictions."""

from __future__ import annotations

import json

import pytest

from cityseg.cli import main
from cityseg.labels import NUM_CLASSES

PREDICTION_OUTPUTS = ("labelIds", "trainIds", "color", "overlay")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    arguments = ["demo", "--out", str(out), "--preset", "quick", "--size", "64x128"]
    arguments += ["--train-images", "8", "--val-images", "4", "--epochs", "1"]
    arguments += ["train.progress=false", "train.batch_size=4"]
    assert main(arguments) == 0
    return out


@pytest.mark.slow
def test_demo_writes_data_checkpoint_report_and_predictions(demo_run):
    data = demo_run / "data"
    assert len(list((data / "leftImg8bit" / "train").rglob("*_leftImg8bit.png"))) == 8
    assert len(list((data / "gtFine" / "val").rglob("*_gtFine_labelIds.png"))) == 4
    assert (demo_run / "run" / "checkpoint_best.pt").is_file()
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
