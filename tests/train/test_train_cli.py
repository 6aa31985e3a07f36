"""`cityseg train`: the interface outside checks rely on, resume, and one-line user errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cityseg.cli import main
from tests.helpers import write_pairs, write_scenes

TINY = str(Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml")
FAST = [
    "model.base_width=8",
    "model.depth=2",
    "data.size=[64,128]",
    "data.workers=0",
    "train.batch_size=4",
    "train.progress=false",
]


def epochs_recorded(run: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_train_then_resume_on_the_official_layout(tmp_path, capsys):
    root = write_scenes(tmp_path / "data", {"train": 10, "val": 2})
    run = tmp_path / "run"
    argv = ["train", "--config", TINY, "--out", str(run), f"data.root={root}"]
    argv += ["data.format=cityscapes", "train.epochs=1", "data.max_images=8", *FAST]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "8 training images, 2 validation (split 'val')" in out
    assert epochs_recorded(run) == [1]
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["data"]["max_images"] == 8 and resolved["model"]["base_width"] == 8

    assert main(["train", "--resume", str(run), "train.epochs=2"]) == 0
    assert epochs_recorded(run) == [1, 2]
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"] == 2


def test_pairs_format_with_a_held_out_fraction(tmp_path, capsys):
    root = write_pairs(tmp_path / "pairs", count=10)
    run = tmp_path / "run"
    argv = ["train", "--config", TINY, "--out", str(run), f"data.root={root}", "data.format=pairs"]
    argv += ["train.epochs=1", "data.val_fraction=0.2", "train.precision=fp32", *FAST]
    argv += ["train.channels_last=false"]
    assert main(argv) == 0
    assert (
        "8 training images, 2 validation (2 held out of 'train', seed 0)" in capsys.readouterr().out
    )
    assert (run / "checkpoint_best.pt").is_file()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--out", "RUN", "train.lr_max=1"], "unknown key train.lr_max; valid keys of train: ["),
        (["--out", "RUN", "train.epochs=lots"], "train.epochs: expected an integer, got 'lots'"),
        (["--out", "RUN", "data.root=MISSING"], "MISSING: no such folder"),
        (["train.epochs=1"], "--out RUN_DIR is required"),
        (["--resume", "RUN", "--config", TINY], "drop --config/--out"),
        (["--resume", "NOWHERE"], "config.yaml: not found"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("cityseg train: error:")
    assert "Traceback" not in err


@pytest.mark.parametrize("side", ["before", "after"])
def test_overrides_are_read_on_both_sides_of_the_options(tmp_path, capsys, side):
    bad, good = "nosuch.key=1", "data.workers=0"
    before, after = (bad, good) if side == "before" else (good, bad)
    assert main(["train", before, "--out", str(tmp_path / "run"), after]) == 2
    assert "override 'nosuch.key=1': unknown section 'nosuch'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # an option nobody knows is still argparse's error
        main(["train", "--out", str(tmp_path / "run"), "--nosuch", good])
    assert "unrecognized arguments: --nosuch" in capsys.readouterr().err
