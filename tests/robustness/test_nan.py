"""A loss that becomes NaN or infinite stops the run at once, naming the step, keeping the last good
checkpoint, and suggesting the likely fixes."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from cityseg.config import load_config
from cityseg.train.schedules import build_schedule
from tests.helpers import in_process, train_args, write_scenes


def test_divergence_from_a_huge_learning_rate(tmp_path, capsys):
    scenes = write_scenes(tmp_path / "scenes", {"train": 8, "val": 2}, 32, 64)
    run = tmp_path / "run"
    overrides = ("train.lr=1e30", "train.optimizer=sgd", "train.schedule=constant")
    assert in_process(*train_args(scenes, run, *overrides)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "training diverged: the loss is nan at step 2 (epoch 1)" in err
    assert "no checkpoint was saved yet" in err and "lower train.lr (now 1e+30" in err
    assert not (run / "checkpoint_last.pt").exists()


def test_nan_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    scenes = write_scenes(tmp_path / "scenes", {"train": 8, "val": 2}, 32, 64)
    run = tmp_path / "run"
    monkeypatch.setenv("CITYSEG_TEST_FAULT", "nan:loss:6")  # epoch 2, its 2nd step
    assert in_process(*train_args(scenes, run, "train.precision=bf16")) == 2
    err = capsys.readouterr().err
    assert "the loss is nan at step 6 (epoch 2)" in err
    assert f"the last good checkpoint, {run}/checkpoint_last.pt (epoch 1, step 4), is kept" in err
    assert "train.precision=fp32" in err  # bf16 is a likely cause too
    saved = torch.load(run / "checkpoint_last.pt", weights_only=True)
    assert (saved["epoch"], saved["iteration"]) == (1, 4)
    assert all(torch.isfinite(t).all() for t in saved["model"].values() if t.is_floating_point())
    monkeypatch.delenv("CITYSEG_TEST_FAULT")
    assert in_process("train", "--resume", str(run), "train.precision=fp32") == 0


def fp16_with_infinite_gradients(monkeypatch, micro_steps: set[int] | None) -> None:
    """Train in float16 (CPU autocast has it, with a CPU gradient scaler) and make the gradients
    of the given micro-steps (all: None) infinite while the loss stays finite."""
    from cityseg.runtime.tuning import StepSetting
    from cityseg.train import run
    from cityseg.train.step import TrainingStep

    fp16 = (StepSetting("fp16", True), "")
    monkeypatch.setattr(run, "choose_step_setting", lambda *args, **keywords: fp16)
    forward_backward, calls = TrainingStep.forward_backward, itertools.count()

    def poisoned(self, *args):
        loss = forward_backward(self, *args)
        if micro_steps is None or next(calls) in micro_steps:
            next(self.model.parameters()).grad.fill_(float("inf"))
        return loss

    monkeypatch.setattr(TrainingStep, "forward_backward", poisoned)


def test_skipped_fp16_steps_do_not_move_the_schedule(tmp_path, monkeypatch):
    scenes = write_scenes(tmp_path / "scenes", {"train": 8, "val": 2}, 32, 64)
    run = tmp_path / "run"
    fp16_with_infinite_gradients(monkeypatch, {0, 1})
    assert in_process(*train_args(scenes, run)) == 0
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["iteration"] == 10  # 12 micro-steps, the first 2 skipped by the scaler
    config = load_config(run / "config.yaml", [])
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config.train.lr)
    schedule = build_schedule(optimizer, config.train, total_steps=12)
    assert last["lr"] == pytest.approx(schedule.lr_at(9))  # the 10th step taken


def test_fp16_gradients_that_keep_overflowing_stop_the_run(tmp_path, monkeypatch, capsys):
    scenes = write_scenes(tmp_path / "scenes", {"train": 8, "val": 2}, 32, 64)
    run = tmp_path / "run"
    fp16_with_infinite_gradients(monkeypatch, None)
    assert in_process(*train_args(scenes, run, "train.epochs=6")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "the gradient scaler skipped 17 steps in a row and its scale fell to 0.5" in err
    assert "after step 0 (epoch 5)" in err and "train.precision=bf16 (or fp32)" in err
    assert f"{run}/checkpoint_last.pt (epoch 4, step 0), is kept" in err  # 16 micro-steps
