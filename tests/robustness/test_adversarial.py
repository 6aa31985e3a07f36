"""What an adversarial user tries, each family at its cause: every file read is bounded (regular
files, a size limit, a pixel limit before decoding), every numeric option is checked before any
work with one line naming the key, every output location is checked before the work, a file that
is not a checkpoint is one line wherever it is given, and a model of other classes is refused."""

from __future__ import annotations

import errno
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cityseg import limits
from cityseg.checkpoint import io as ckpt
from cityseg.checkpoint.io import load_checkpoint
from cityseg.checkpoint.loading import load_model
from cityseg.config import load_config
from cityseg.data.io import read_label_png, read_rgb, read_unchanged
from cityseg.errors import CheckpointError, ConfigError, DataError
from cityseg.metrics.confusion import ConfusionMatrix
from tests.helpers import in_process, train_args, write_pairs, write_scenes

READERS = [read_rgb, read_label_png, read_unchanged]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return write_scenes(tmp_path_factory.mktemp("scenes"), {"train": 8, "val": 2}, 32, 64)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# --- every read is bounded ---------------------------------------------------------------------


@pytest.mark.parametrize("reader", READERS)
def test_a_link_to_a_device_is_refused_before_reading(reader, tmp_path):
    link = tmp_path / "y.jpg"
    link.symlink_to("/dev/zero")
    with pytest.raises(DataError, match=r"y.jpg: not a regular file"):
        reader(link)


@pytest.mark.parametrize("reader", READERS)
def test_too_many_pixels_are_refused_before_decoding(reader, tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    cv2.imwrite(str(path), np.zeros((64, 80), np.uint8))
    monkeypatch.setenv("CITYSEG_MAX_PIXELS", "5000")
    decoded = []
    monkeypatch.setattr(cv2, "imdecode", lambda *a: decoded.append(1))
    with pytest.raises(DataError, match=r"big.png: 80x64 pixels, more than the 5,000 pixel limit"):
        reader(path)
    assert not decoded


def test_a_too_large_file_is_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "large.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    monkeypatch.setattr(limits, "MAX_IMAGE_BYTES", 1024)
    with pytest.raises(DataError, match=r"large.png: .*MiB, more than the .* limit"):
        read_rgb(path)


def test_training_names_a_device_in_the_pairs_folder(tmp_path, capsys):
    data = write_pairs(tmp_path / "pairs", 8)
    (data / "train" / "3.jpg").unlink()
    (data / "train" / "3.jpg").symlink_to("/dev/zero")
    args = train_args(data, tmp_path / "run", "data.format=pairs", "data.val_fraction=0.25")
    assert in_process(*args) == 2
    assert "3.jpg: not a regular file" in capsys.readouterr().err


@pytest.mark.parametrize("what", ["config", "checkpoint", "weights"])
def test_devices_as_config_checkpoint_or_weights(what, tmp_path):
    link = tmp_path / f"zero.{'yaml' if what == 'config' else 'pt'}"
    link.symlink_to("/dev/zero")
    with pytest.raises((ConfigError, CheckpointError), match="not a regular file"):
        if what == "config":
            load_config(link)
        elif what == "checkpoint":
            load_checkpoint(link)
        else:
            from cityseg.model.encoders.weights import read_state_dict

            read_state_dict(link)


# --- numeric options: checked before any work, one line naming the key --------------------------


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.lr=nan", "train.lr"),
        ("train.lr=.inf", "train.lr"),
        ("data.scale=[0.5, .nan]", "data.scale"),
        ("train.weight_decay=-1", "train.weight_decay"),
        ("train.momentum=1.5", "train.momentum"),
        ("train.max_iterations=0", "train.max_iterations"),
        ("train.warmup_iterations=-3", "train.warmup_iterations"),
        ("train.min_lr=1", "train.min_lr"),
        ("train.clip_grad_norm=0", "train.clip_grad_norm"),
        ("train.early_stopping=0", "train.early_stopping"),
        ("train.encoder_lr_mult=-0.1", "train.encoder_lr_mult"),
        ("loss.class_weights=[-1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]",
         "loss.class_weights"),
        ("loss.label_smoothing=1", "loss.label_smoothing"),
        ("loss.ohem_min_kept=0", "loss.ohem_min_kept"),
        ("data.rotation=400", "data.rotation"),
        ("data.max_images=0", "data.max_images"),
        ("data.crop=[512, 1024]", "data.crop"),
        ("model.num_classes=34", "model.num_classes=34"),
        ("model.num_classes=5", "model.num_classes=5"),
        ("model.in_channels=1", "model.in_channels=1"),
        ("model.depth=8", "model.depth=8"),
        ("model.dropout=1", "model.dropout"),
        ("model.encoder_weights=imagenet", "model.encoder_weights=imagenet"),
    ],
)  # fmt: skip
def test_nonsense_values_are_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError) as error:
        load_config(None, ["data.size=[64, 128]", override])
    assert all("\n" not in problem for problem in error.value.problems)
    assert any(problem.startswith(key) or f" {key}" in problem for problem in error.value.problems)


@pytest.mark.parametrize(
    "override", ["model.in_channels=1", "model.num_classes=5", "model.depth=8", "train.lr=nan"]
)
def test_training_refuses_them_at_once(scenes, tmp_path, capsys, override):
    assert in_process(*train_args(scenes, tmp_path / "run", override)) == 2
    assert not (tmp_path / "run").exists()
    assert override.split("=")[0] in one_error_line(capsys)


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1", "1,nan", "100"])
def test_tta_scales_must_be_sensible(tiny_checkpoint, scenes, tmp_path, capsys, value):
    args = ["evaluate", str(tiny_checkpoint), "--data", str(scenes), "--tta", "--scales", value]
    with pytest.raises(SystemExit) as exit_:
        in_process(*args, "--out", str(tmp_path / "e"))
    assert exit_.value.code == 2
    assert "is not a list of scales" in capsys.readouterr().err


# --- every output location is checked before the work ------------------------------------------


@pytest.mark.parametrize("command", ["score", "export", "evaluate", "predict", "prepare"])
def test_unwritable_outputs_fail_before_the_work(command, tiny_checkpoint, scenes, capsys):
    out = Path("/proc/cityseg-unwritable/out")  # a read-only file system, even for root
    photo = str(next(scenes.glob("leftImg8bit/val/*/*.png")))
    args = {
        "score": ["score", str(scenes), "--gt", str(scenes), "--out", f"{out}.json"],
        "export": ["export", str(tiny_checkpoint), "--out", f"{out}.onnx"],
        "evaluate": ["evaluate", str(tiny_checkpoint), "--data", str(scenes), "--out", str(out)],
        "predict": ["predict", str(tiny_checkpoint), photo, "--out", str(out)],
        "prepare": ["data", "prepare", str(scenes), "--out", str(out), "--size", "32x64"],
    }[command]
    assert in_process(*args) == 2
    err = one_error_line(capsys)
    assert "/proc/cityseg-unwritable" in err and "cannot write into /proc" in err


# --- checkpoints: anything that is not one is one line -----------------------------------------


def test_a_text_file_as_a_checkpoint_everywhere(scenes, tmp_path, capsys):
    text = tmp_path / "notes.pt"
    text.write_text("this is not a checkpoint\n" * 10)
    photo = str(next(scenes.glob("leftImg8bit/val/*/*.png")))
    commands = [
        ["evaluate", str(text), "--data", str(scenes), "--out", str(tmp_path / "e")],
        ["predict", str(text), photo, "--out", str(tmp_path / "p")],
        train_args(scenes, tmp_path / "run", f"train.init_from={text}"),
    ]
    for args in commands:
        assert in_process(*args) == 2
        assert "notes.pt: not a readable cityseg checkpoint" in one_error_line(capsys)


def test_a_model_of_other_classes_is_refused_with_the_difference(tiny_checkpoint, tmp_path):
    state = torch.load(tiny_checkpoint, weights_only=True)
    from cityseg.model import UNet

    model = UNet(**{**state["model_config"], "num_classes": 34})
    state = {**state, "model_config": model.config, "model": model.state_dict(),
             "class_names": [f"class_{i}" for i in range(34)]}  # fmt: skip
    path = tmp_path / "classes34.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"a model of 34 classes .*19 Cityscapes classes"):
        load_model(path)


# --- a full disk ---------------------------------------------------------------------------------


class Usage:
    def __init__(self, free: int) -> None:
        self.free = free


def test_torch_s_own_write_error_on_a_full_disk_is_an_os_error(tmp_path, monkeypatch):
    def full_disk(state, file):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0")

    monkeypatch.setattr(ckpt.torch, "save", full_disk)
    monkeypatch.setattr(ckpt.shutil, "disk_usage", lambda path: Usage(free=0))
    with pytest.raises(OSError) as error:
        ckpt.save_checkpoint(tmp_path / "checkpoint_last.pt", {"a": 1})
    assert error.value.errno == errno.ENOSPC
    assert not list(tmp_path.iterdir())


def test_curves_that_cannot_be_drawn_do_not_stop_training(scenes, tmp_path, monkeypatch, capsys):
    from cityseg.train import history

    def disk_full(records, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(history, "plot_curves", disk_full)
    from cityseg.cli import main

    assert main(train_args(scenes, tmp_path / "run", "train.epochs=1")) == 0
    assert "curves.png: not redrawn (No space left on device); training goes on" in (
        capsys.readouterr().err
    )
    assert (tmp_path / "run" / "checkpoint_last.pt").is_file()


# --- metrics input ------------------------------------------------------------------------------


def test_the_torch_confusion_path_does_not_wrap_large_ids():
    matrix = ConfusionMatrix(num_classes=19)
    with pytest.raises(ValueError, match=r"targets \[4294967299\] outside 0..18"):
        matrix.update(torch.tensor([3]), torch.tensor([2**32 + 3]))
    assert matrix.matrix.sum() == 0


# --- the command line ---------------------------------------------------------------------------


def test_an_error_closes_the_progress_bars_before_its_line():
    """So that the error starts a line of its own instead of following a bar."""
    from types import SimpleNamespace

    from tqdm import tqdm

    from cityseg.cli import run_command

    bar = tqdm(total=10, disable=False)

    def failing(args):
        raise DataError("x.png: broken")

    with pytest.raises(DataError):
        run_command(SimpleNamespace(run=failing))
    assert bar.disable  # tqdm marks a closed bar disabled


@pytest.mark.parametrize(
    "args", [["--train-images", "0"], ["--epochs", "0"], ["--half-size-epochs", "-1"],
             ["--seed", "-2"]],
)  # fmt: skip
def test_demo_numbers_are_checked(args, tmp_path, capsys):
    assert in_process("demo", "--out", str(tmp_path / "demo"), *args) == 2
    assert args[0] in one_error_line(capsys)
    assert not (tmp_path / "demo").exists()
