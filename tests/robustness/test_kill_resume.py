"""Killed at any moment (SIGKILL: no chance to clean up), resumed each time: the run ends with the
weights of a run never interrupted, bit for bit, and no checkpoint is ever half-written."""

from __future__ import annotations

import json
import random
import signal
import time

import pytest
import torch

from tests.helpers import (
    Running,
    in_process,
    partial_writes,
    reference_run,
    same_weights,
    train_args,
    write_scenes,
)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return write_scenes(tmp_path_factory.mktemp("scenes"), {"train": 8, "val": 2}, 32, 64)


def kill_at(args: list[str], fault: str) -> Running:
    """Run until the fault pauses the process, then SIGKILL it."""
    run = Running(*args, CITYSEG_TEST_FAULT=fault)
    run.wait_for("paused at")
    run.process.send_signal(signal.SIGKILL)
    assert run.finish() == -signal.SIGKILL
    return run


@pytest.mark.slow
def test_killed_anywhere_resumes_to_the_same_weights(scenes, tmp_path_factory):
    reference = reference_run(scenes, tmp_path_factory.mktemp("runs"))
    run = tmp_path_factory.mktemp("killed") / "run"
    last = run / "checkpoint_last.pt"
    resume = ["train", "--resume", str(run)]

    # 1. While writing the very first checkpoint: nothing saved yet, a temporary file left.
    kill_at(train_args(scenes, run), "pause:save:1")
    assert not last.exists() and partial_writes(run)
    # 2. Resumed (from scratch, there is no checkpoint), killed writing epoch 2's checkpoint.
    restarted = kill_at(resume, "pause:save:3")
    assert "starting it from the beginning" in restarted.output
    assert torch.load(last, weights_only=True)["epoch"] == 1  # the previous one, whole
    assert len(partial_writes(run)) == 1  # only this write's: the stale one was removed
    # 3. Killed during validation, then 4. in the middle of an epoch.
    kill_at(resume, "pause:validate:1")
    kill_at(resume, "pause:step:2")
    assert torch.load(last, weights_only=True)["epoch"] == 1
    # 5. Killed at a seeded random moment after training started.
    running = Running(*resume)
    running.wait_for("steps/epoch")
    time.sleep(random.Random(0).uniform(0.0, 0.4))
    running.process.send_signal(signal.SIGKILL)
    running.finish()
    torch.load(last, weights_only=True)  # always a whole checkpoint

    assert in_process(*resume) == 0
    same_weights(reference, last)
    assert not partial_writes(run)
    epochs = [
        json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()
    ]
    assert epochs == [1, 2, 3]


def test_leftovers_of_a_killed_process_do_not_stop_a_resume(scenes, tmp_path):
    """A half-written metrics line and a checkpoint's temporary file, as SIGKILL leaves them."""
    run = tmp_path / "run"
    assert in_process(*train_args(scenes, run, "train.epochs=1")) == 0
    with (run / "metrics.jsonl").open("a") as metrics:
        metrics.write('{"epoch": 2, "iteration": 8, "train_lo')
    (run / ".checkpoint_last.pt.k1ll3d").write_bytes(b"PK\x03\x04 half a zip")
    assert in_process("train", "--resume", str(run), "train.epochs=2") == 0
    records = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in records] == [1, 2]
    assert not partial_writes(run)
