"""Ctrl-C (SIGINT) and SIGTERM: the current step finishes, a resumable checkpoint is written, the
exit status is 130 / 143 with a message saying how to resume, and resuming is exact."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from cityseg import faults
from tests.helpers import Running, in_process, reference_run, same_weights, train_args, write_scenes


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return write_scenes(tmp_path_factory.mktemp("scenes"), {"train": 8, "val": 2}, 32, 64)


def test_ctrl_c_mid_epoch_saves_and_resume_is_exact(scenes, tmp_path, monkeypatch, capsys):
    reference = reference_run(scenes, tmp_path.parent)
    run = tmp_path / "run"
    calls = {"step": 0}
    real_reached = faults.reached

    def interrupt_at_step_6(point: str):
        calls[point] = calls.get(point, 0) + 1
        if point == "step" and calls[point] == 6:  # the 2nd step of epoch 2
            os.kill(os.getpid(), signal.SIGINT)  # as a terminal's Ctrl-C would
        return real_reached(point)

    monkeypatch.setattr(faults, "reached", interrupt_at_step_6)
    assert in_process(*train_args(scenes, run)) == 130
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message == (
        f"cityseg train: stopped by SIGINT in epoch 2 at step 7; saved {run}/checkpoint_last.pt; "
        f"continue with: cityseg train --resume {run}"
    )
    saved = torch.load(run / "checkpoint_last.pt", weights_only=True)
    assert (saved["epoch"], saved["iteration"], saved["epoch_progress"]["batches"]) == (1, 7, 3)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored

    monkeypatch.undo()
    assert in_process("train", "--resume", str(run)) == 0
    same_weights(reference, run / "checkpoint_last.pt")
    assert "epoch_progress" not in torch.load(run / "checkpoint_last.pt", weights_only=True)


@pytest.mark.slow
def test_sigterm_to_the_job_during_validation_saves_and_resume_is_exact(scenes, tmp_path):
    reference = reference_run(scenes, tmp_path.parent)
    run = tmp_path / "run"
    args = train_args(scenes, run, "data.workers=1")
    running = Running(*args, CITYSEG_TEST_FAULT="pause:validate:2")
    running.wait_for("paused at")  # in epoch 2's validation
    os.killpg(running.process.pid, signal.SIGTERM)  # every process: a scheduler's way
    assert running.finish() == 143
    assert "Traceback" not in running.output
    assert running.stderr[-1].strip() == (
        f"cityseg train: stopped by SIGTERM in epoch 2 at validation; saved "
        f"{run}/checkpoint_last.pt; continue with: cityseg train --resume {run}"
    )
    saved = torch.load(run / "checkpoint_last.pt", weights_only=True)
    assert saved["epoch_progress"]["validating"] and saved["iteration"] == 8

    assert in_process("train", "--resume", str(run)) == 0
    same_weights(reference, run / "checkpoint_last.pt")
