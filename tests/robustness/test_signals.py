"""Ctrl-C (SIGINT) and SIGTERM: the current step finishes, a resumable checkpoint is written, the
exit status is 130 / 143 with a message saying how to resume, and resuming is exact."""

from __future__ import annotations

import signal

import pytest
import torch
from robustkit import Running, cityseg, reference_run, same_weights, train_args, write_scenes

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return write_scenes(tmp_path_factory.mktemp("scenes"), {"train": 8, "val": 2}, 32, 64)


@pytest.mark.parametrize(
    ("signum", "status", "fault", "where"),
    [
        (signal.SIGINT, 130, "pause:step:6", "at step 7"),  # mid-epoch 2: steps 5..8
        (signal.SIGTERM, 143, "pause:validate:2", "at validation"),  # epoch 2's validation
    ],
)
def test_signal_saves_and_resume_is_exact(scenes, tmp_path, signum, status, fault, where):
    reference = reference_run(scenes, tmp_path.parent)
    run = tmp_path / "run"
    running = Running(*train_args(scenes, run), CITYSEG_TEST_FAULT=fault)
    running.wait_for("paused at")
    running.process.send_signal(signum)
    assert running.finish() == status
    message = running.output.strip().splitlines()[-1]
    assert signal.Signals(signum).name in message and where in message
    assert message.endswith(f"continue with: cityseg train --resume {run}")
    assert "Traceback" not in running.output
    saved = torch.load(run / "checkpoint_last.pt", weights_only=True)
    assert saved["epoch"] == 1 and saved["epoch_progress"]["validating"] == (where != "at step 7")

    resumed = cityseg("train", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr
    same_weights(reference, run / "checkpoint_last.pt")
    assert "epoch_progress" not in torch.load(run / "checkpoint_last.pt", weights_only=True)
