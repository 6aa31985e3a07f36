"""A loss that becomes NaN or infinite stops the run at once, naming the step, keeping the last good
checkpoint, and suggesting the likely fixes."""

from __future__ import annotations

import torch
from robustkit import in_process, train_args, write_scenes


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
