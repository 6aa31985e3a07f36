"""`cityseg evaluate`: end to end on generated and real data, and its user errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cityseg.cli import main
from cityseg.cli._arguments import parse_resize, parse_scales
from cityseg.cli._arguments import size as parse_size
from tests.helpers import save_tiny_checkpoint as save_checkpoint
from tests.helpers import write_pairs, write_scenes
from tests.helpers.evaluation import check_metrics


def evaluate(*args: str) -> int:
    return main(["evaluate", *args, "--no-progress", "--workers", "0"])


def test_official_layout_slide_writes_metrics_and_charts(tmp_path, capsys):
    checkpoint = save_checkpoint(tmp_path / "model.pt")
    root = write_scenes(tmp_path / "cityscapes", {"val": 3})
    out = tmp_path / "eval"
    code = evaluate(
        str(checkpoint),
        "--data",
        str(root),
        "--out",
        str(out),
        "--mode",
        "slide",
        "--tile",
        "64x64",
        "--stride",
        "32x48",
    )
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    check_metrics(metrics, images=3)
    assert metrics["mode"] == "slide" and metrics["inference"]["tile"] == [64, 64]
    assert (out / "confusion_matrix.png").is_file() and (out / "class_iou.png").is_file()
    printed = capsys.readouterr().out
    assert "road" in printed and "Score Average" in printed and "metrics.json" in printed


def test_pairs_whole_resize_with_report_and_default_out_dir(tmp_path):
    checkpoint = save_checkpoint(tmp_path / "best.pt")
    root = write_pairs(tmp_path / "pairs", 2, split="val")
    code = evaluate(
        str(checkpoint),
        "--data",
        str(root),
        "--resize",
        "train",
        "--tta",
        "--scales",
        "1",
        "--report",
    )
    assert code == 0
    out = tmp_path / "eval_val"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["inference"]["resize"] == [64, 128] and metrics["format"] == "pairs"
    assert (out / "report.html").is_file()


def test_missing_checkpoint_exits_2_with_one_line_naming_it(tmp_path, capsys):
    root = write_pairs(tmp_path / "pairs", 1, split="val")
    assert evaluate(str(tmp_path / "nope.pt"), "--data", str(root)) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "nope.pt: checkpoint not found" in error


def test_corrupt_checkpoint_exits_2(tmp_path, capsys):
    root = write_pairs(tmp_path / "pairs", 1, split="val")
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    assert evaluate(str(tmp_path / "broken.pt"), "--data", str(root)) == 2
    assert "broken.pt: not a readable cityseg checkpoint" in capsys.readouterr().err


def test_missing_data_root_or_split_exits_2(tmp_path, capsys):
    checkpoint = save_checkpoint(tmp_path / "model.pt")
    assert evaluate(str(checkpoint), "--data", str(tmp_path / "absent")) == 2
    assert "absent: data folder not found" in capsys.readouterr().err
    root = write_pairs(tmp_path / "pairs", 1, split="val")
    assert evaluate(str(checkpoint), "--data", str(root), "--split", "test") == 2
    assert "split 'test' not found" in capsys.readouterr().err


def test_bad_tiling_exits_2(tmp_path, capsys):
    checkpoint = save_checkpoint(tmp_path / "model.pt")
    root = write_pairs(tmp_path / "pairs", 1, split="val")
    args = ["--data", str(root), "--mode", "slide", "--tile", "64x64", "--stride", "80x20"]
    assert evaluate(str(checkpoint), *args) == 2
    assert "stride 80x20 is larger than the tile" in capsys.readouterr().err


def test_option_parsers():
    assert parse_size("512x1024") == (512, 1024) and parse_size("256") == (256, 256)
    assert parse_resize("train") == "train" and parse_resize("0.5") == 0.5
    assert parse_resize("64X128") == (64, 128)
    assert parse_scales("0.75,1,1.25") == (0.75, 1.0, 1.25)
    for parser, text in ((parse_size, "big"), (parse_resize, "-1"), (parse_scales, "0,1")):
        with pytest.raises(Exception, match="e.g."):
            parser(text)


def test_real_cityscapes_val(tmp_path, cityscapes_root):
    checkpoint = save_checkpoint(tmp_path / "model.pt")
    out = tmp_path / "eval"
    assert evaluate(str(checkpoint), "--data", str(cityscapes_root), "--out", str(out)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    check_metrics(metrics, images=1)
    assert metrics["cityscapes"]["classes_iiou"] is not None


def test_real_pairs_through_the_installed_command(tmp_path, pairs_root):
    checkpoint = save_checkpoint(tmp_path / "model.pt", input_size=(128, 128))
    out = tmp_path / "eval"
    command = [
        sys.executable,
        "-m",
        "cityseg",
        "evaluate",
        str(checkpoint),
        "--data",
        str(pairs_root),
        "--split",
        "train",
        "--max-images",
        "4",
        "--mode",
        "slide",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--workers",
        "1",
    ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    check_metrics(metrics, images=4)
    assert metrics["format"] == "pairs" and metrics["pixels"] > 0.5 * 4 * 256 * 256
