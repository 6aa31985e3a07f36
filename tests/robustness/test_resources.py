"""Resources: an output folder that cannot be written and a disk too small are reported before
training starts; a disk that fills up during a save is a clear error that keeps the last good
checkpoint; running out of memory gives advice in training and falls back to sliding windows in
evaluate and predict."""

from __future__ import annotations

import errno
import json
from collections import namedtuple

import pytest
import torch

from cityseg.checkpoint import io as ckpt
from cityseg.inference.options import InferenceOptions
from cityseg.model import UNet
from cityseg.train import run_folder
from tests.helpers import in_process, train_args, write_scenes


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return write_scenes(tmp_path_factory.mktemp("scenes"), {"train": 8, "val": 2}, 32, 64)


@pytest.fixture(scope="module")
def trained(scenes, tmp_path_factory):
    run = tmp_path_factory.mktemp("trained") / "run"
    assert in_process(*train_args(scenes, run, "train.epochs=1")) == 0
    return run / "checkpoint_last.pt"


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_output_folder_under_a_file(scenes, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert in_process(*train_args(scenes, blocker / "run")) == 2
    err = one_error_line(capsys)
    assert f"{blocker}/run: cannot be created because {blocker} is a file" in err


def test_too_little_free_space_is_found_before_training(scenes, tmp_path, monkeypatch, capsys):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(run_folder.shutil, "disk_usage", lambda path: usage(10**9, 10**9, 50_000))
    assert in_process(*train_args(scenes, tmp_path / "run")) == 2
    err = one_error_line(capsys)
    assert "0.1 MB free, but its checkpoints need about" in err and "3 copies" in err
    assert not (tmp_path / "run").exists()


def test_disk_full_during_a_save_keeps_the_last_checkpoint(scenes, tmp_path, monkeypatch, capsys):
    real_save, calls = torch.save, []

    def save_until_the_disk_is_full(state, file):
        calls.append(1)
        if len(calls) == 3:  # epoch 2's checkpoint_last.pt (epoch 1 wrote last and best)
            file.write(b"half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(state, file)

    monkeypatch.setattr(ckpt.torch, "save", save_until_the_disk_is_full)
    run = tmp_path / "run"
    assert in_process(*train_args(scenes, run)) == 2
    err = one_error_line(capsys)
    assert f"{run}/checkpoint_last.pt: cannot be written (the disk is full)" in err
    assert "(epoch 1, step 4), is kept" in err and f"cityseg train --resume {run}" in err
    assert torch.load(run / "checkpoint_last.pt", weights_only=True)["epoch"] == 1
    assert not list(run.glob(".checkpoint_*"))
    monkeypatch.undo()
    assert in_process("train", "--resume", str(run)) == 0


def test_out_of_memory_in_training_gives_advice(scenes, tmp_path, monkeypatch, capsys):
    def no_memory(self, x):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(UNet, "forward", no_memory)
    assert in_process(*train_args(scenes, tmp_path / "run")) == 2
    err = one_error_line(capsys)
    assert "out of cpu memory in a training step of 2 32x64 images per process" in err
    assert "smaller train.batch_size" in err and "train.precision=bf16" in err


@pytest.fixture
def memory_for_tiles_only(monkeypatch):
    """UNet.forward raises torch.OutOfMemoryError above 32x64 pixels (the training size)."""
    forward = UNet.forward

    def limited(self, x):
        if x.shape[-2] * x.shape[-1] > 32 * 64:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        return forward(self, x)

    monkeypatch.setattr(UNet, "forward", limited)


def test_predict_falls_back_to_sliding_windows(trained, scenes, tmp_path, memory_for_tiles_only):
    from cityseg.predict import Segmenter

    photo = next(scenes.glob("leftImg8bit/val/*/*.png"))
    out = tmp_path / "predicted"
    assert in_process("predict", str(trained), str(photo), "--out", str(out), "--no-progress") == 0
    fallback = Segmenter.from_checkpoint(trained, "cpu").predict_file(photo)
    slide = Segmenter.from_checkpoint(trained, "cpu", InferenceOptions(mode="slide")).predict_file(
        photo
    )
    assert fallback.shape == (32, 64) and (fallback == slide).all()
    assert (out / f"{photo.stem}_labelIds.png").is_file()


def test_evaluate_falls_back_and_says_so(trained, scenes, tmp_path, memory_for_tiles_only, capsys):
    big = write_scenes(tmp_path / "big", {"val": 2}, 64, 128)
    out = tmp_path / "eval"
    args = ["evaluate", str(trained), "--data", str(big), "--out", str(out), "--workers", "0"]
    assert in_process(*args, "--resize", "native", "--no-progress") == 0  # 64x128 > 32x64
    err = capsys.readouterr().err
    assert err.count("falling back to sliding-window inference (tiles of 32x64)") == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["inference"]["out_of_memory_fallback"] == "slide" and metrics["images"] == 2


def test_out_of_memory_even_in_tiles_is_advice(trained, scenes, tmp_path, monkeypatch, capsys):
    def no_memory(self, x):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")

    monkeypatch.setattr(UNet, "forward", no_memory)
    photo = next(scenes.glob("leftImg8bit/val/*/*.png"))
    args = ["predict", str(trained), str(photo), "--out", str(tmp_path / "p"), "--no-progress"]
    assert in_process(*args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("cityseg predict: error: out of memory (CUDA out of memory.")
    assert "--mode slide with a smaller --tile" in err


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_unwritable_output_folder_of_predict_and_evaluate(
    command, trained, scenes, tmp_path, capsys
):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    photo = next(scenes.glob("leftImg8bit/val/*/*.png"))
    inputs = [str(photo)] if command == "predict" else ["--data", str(scenes), "--workers", "0"]
    args = [command, str(trained), *inputs, "--out", str(blocker / "out"), "--no-progress"]
    assert in_process(*args) == 2
    err = one_error_line(capsys)
    assert f"{blocker}/out: cannot be created because {blocker} is a file" in err
