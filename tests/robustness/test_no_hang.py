"""No command hangs on an error: a failure in the model, the loss, a DataLoader worker or the
validation ends the whole process tree within seconds, with one line on stderr and a non-zero
exit; a command killed from outside leaves no worker behind."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers import Running, cityseg, train_args, write_scenes

FAULT_POINTS = ["forward", "loss", "worker", "validate"]
DEADLINE = 60  # seconds: the tiny run itself takes a few


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return write_scenes(tmp_path_factory.mktemp("scenes"), {"train": 8, "val": 4}, 32, 64)


def processes_marked(marker: str) -> list[int]:
    """Processes whose environment holds ``marker`` (the command and every child it started)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:  # gone, or not ours
            pass
    return found


def assert_none_left(marker: str, grace: float = 5.0) -> None:
    deadline = time.monotonic() + grace
    while processes_marked(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = processes_marked(marker)
    for pid in left:  # do not leak them into the rest of the suite
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left behind: {left}"


pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")


@pytest.mark.parametrize("point", FAULT_POINTS)
def test_an_error_anywhere_in_training_ends_every_process_with_one_line(scenes, tmp_path, point):
    marker = f"CITYSEG_TEST_MARKER_{uuid.uuid4().hex}"
    started = time.monotonic()
    result = cityseg(
        *train_args(scenes, tmp_path / "run", "data.workers=2"),
        timeout=DEADLINE,
        CITYSEG_TEST_FAULT=f"raise:{point}",
        CITYSEG_TEST_MARKER=marker,
    )
    assert time.monotonic() - started < DEADLINE
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("cityseg train: internal error: RuntimeError: fault injected at")
    assert "Traceback" not in result.stderr
    traceback_file = lines[-1].split("the full traceback is in ")[1].split(";")[0]
    assert "Traceback" in Path(traceback_file).read_text()
    Path(traceback_file).unlink()
    assert_none_left(marker)


def test_the_traceback_is_printed_when_asked(scenes, tmp_path):
    result = cityseg(
        *train_args(scenes, tmp_path / "run"),
        timeout=DEADLINE,
        CITYSEG_TEST_FAULT="raise:loss",
        CITYSEG_TRACEBACK="1",
    )
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "fault injected at loss" in result.stderr


def test_killing_the_command_leaves_no_worker_behind(scenes, tmp_path):
    """SIGKILL to the main process only (as an OOM killer does): the kernel ends its workers."""
    marker = f"CITYSEG_TEST_MARKER_{uuid.uuid4().hex}"
    run = Running(
        *train_args(scenes, tmp_path / "run", "data.workers=2"),
        CITYSEG_TEST_FAULT="pause:step",
        CITYSEG_TEST_MARKER=marker,
    )
    run.wait_for("paused at step")
    assert len(processes_marked(marker)) >= 3  # the command and its two workers
    run.process.kill()
    run.finish(10)
    assert_none_left(marker)


def test_sigterm_to_evaluate_leaves_no_worker_behind(scenes, tmp_path, tiny_checkpoint):
    marker = f"CITYSEG_TEST_MARKER_{uuid.uuid4().hex}"
    run = Running(
        "evaluate", str(tiny_checkpoint), "--data", str(scenes), "--workers", "2",
        "--out", str(tmp_path / "eval"), "--no-progress",
        CITYSEG_TEST_FAULT="pause:evaluate", CITYSEG_TEST_MARKER=marker,
    )  # fmt: skip
    run.wait_for("paused at evaluate")
    assert len(processes_marked(marker)) >= 3
    run.process.send_signal(signal.SIGTERM)  # the main process only
    run.finish(10)
    assert_none_left(marker)
