"""int8 ONNX: a tiny trained network quantises, runs in `cityseg predict --onnx` and reports its
drop against the float model; a network whose drop is over the threshold is refused, leaving
nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cityseg.cli import main
from cityseg.data.io import read_label_png
from cityseg.export import export_checkpoint
from cityseg.predict import OnnxSegmenter
from cityseg.predict.files import read_photo
from cityseg.quantize import compare_predictions, report_path
from tests.helpers.checkpoints import save_tiny_checkpoint
from tests.helpers.commands import in_process
from tests.helpers.scenes import write_scenes


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return write_scenes(tmp_path_factory.mktemp("scenes"), {"train": 8, "val": 4})


@pytest.fixture(scope="module")
def trained(scenes, tmp_path_factory) -> Path:
    """A U-Net of width 8 and depth 2 trained 20 epochs on 8 generated scenes (a few seconds)."""
    run = tmp_path_factory.mktemp("run") / "run"
    settings = [
        "data.format=cityscapes", "data.size=[64, 128]", "data.workers=0", "model.base_width=8",
        "model.depth=2", "train.epochs=20", "train.batch_size=4", "train.lr=0.01",
        "train.device=cpu", "train.precision=fp32", "train.progress=false",
        "train.deterministic=true",
    ]  # fmt: skip
    assert in_process("train", "--out", str(run), f"data.root={scenes}", *settings) == 0
    return run / "checkpoint_last.pt"


def test_a_trained_network_quantises_runs_and_reports_its_drop(scenes, trained, tmp_path, capsys):
    photos = scenes / "leftImg8bit" / "val"
    out = tmp_path / "int8" / "model.onnx"
    args = ["export", str(trained), "--out", str(out), "--quantize", "int8"]
    args += ["--calibration", str(photos), "--data", str(scenes), "--format", "cityscapes"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "pixel agreement" in printed and "mIoU on 4 labelled images" in printed

    report = json.loads(report_path(out).read_text())
    assert report_path(out).name == "model.int8.json"
    assert report["accepted"] and report["calibration"]["photos"] == 4
    assert report["size_bytes"]["int8"] < report["size_bytes"]["float"]
    assert out.stat().st_size == report["size_bytes"]["int8"]
    assert report["speed"]["float_ms"] > 0 and report["speed"]["int8_ms"] > 0
    labelled = report["labelled"]
    assert labelled["drop"] == pytest.approx(labelled["miou_float"] - labelled["miou_int8"])
    assert abs(labelled["drop"]) <= 0.02

    # The figures are what the two models give: the float export, made again, agrees.
    float_model = export_checkpoint(trained, tmp_path / "float.onnx", verify=False).path
    images = [read_photo(path) for path in sorted(photos.rglob("*.png"))]
    int8 = OnnxSegmenter(out, "cpu")
    measured = compare_predictions(OnnxSegmenter(float_model, "cpu"), int8, images)
    assert measured["agreement"] == pytest.approx(report["agreement"])
    assert 0.98 <= report["agreement"] < 1.0  # int8 changes a few pixels, not many
    assert measured["miou_vs_float"] == pytest.approx(report["miou_vs_float"])
    assert (
        json.loads(int8.session.get_modelmeta().custom_metadata_map["quantization"])["photos"] == 4
    )

    # `cityseg predict --onnx` runs it like any export.
    predictions = tmp_path / "predictions"
    predict = ["predict", "--onnx", str(out), str(photos), "--out", str(predictions)]
    assert main([*predict, "--outputs", "trainIds", "--no-progress"]) == 0
    written = sorted(predictions.rglob("*_trainIds.png"))
    assert len(written) == len(images)
    np.testing.assert_array_equal(read_label_png(written[0]), int8.predict(images[0]))


def test_a_drop_over_the_threshold_is_refused_and_leaves_nothing(scenes, tmp_path, capsys):
    untrained = save_tiny_checkpoint(tmp_path / "untrained.pt", (64, 128), 0, 4, 2)
    out = tmp_path / "new" / "folder" / "model.onnx"
    args = ["export", str(untrained), "--out", str(out), "--quantize", "int8"]
    args += ["--calibration", str(scenes / "leftImg8bit" / "val")]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--allow-drop" in error and "agrees with the float" in error
    assert not (tmp_path / "new").exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["untrained.pt"]

    assert main([*args, "--allow-drop"]) == 0
    report = json.loads(report_path(out).read_text())
    assert not report["accepted"] and 1 - report["agreement"] > report["max_drop"]
    assert "accepted with --allow-drop" in capsys.readouterr().out


def test_quantize_needs_photos_to_calibrate_on(tiny_checkpoint, tmp_path, capsys):
    args = ["export", str(tiny_checkpoint), "--out", str(tmp_path / "m.onnx"), "--quantize", "int8"]
    assert main(args) == 2
    assert "needs --calibration DIR" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([*args, "--calibration", str(empty)]) == 2
    assert "no PNG or JPEG image found" in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["empty"]
