"""SIGHUP (a closed terminal or SSH session) stops training as politely as Ctrl-C and SIGTERM: the
current step finishes, a resumable checkpoint is written, the exit status is 129; a run started
ignoring it (``nohup``) keeps ignoring it. Any of the three while the run starts stops it at
once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from cityseg.train import interrupt, step_setting
from cityseg.train.interrupt import StopSignals
from tests.helpers import Running, cli_env, in_process, train_args, write_scenes

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP here")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return write_scenes(tmp_path_factory.mktemp("scenes"), {"train": 8, "val": 2}, 32, 64)


def test_sighup_to_the_job_saves_a_resumable_checkpoint(scenes, tmp_path):
    run = tmp_path / "run"
    running = Running(*train_args(scenes, run, "data.workers=1"), CITYSEG_TEST_FAULT="pause:step:2")
    running.wait_for("paused at step", timeout=240)
    os.killpg(running.process.pid, signal.SIGHUP)  # the command and its loader's worker
    assert running.finish(240) == 129, running.output
    assert "Traceback" not in running.output
    assert running.stderr[-1].strip() == (
        f"cityseg train: stopped by SIGHUP in epoch 1 at step 3; saved {run}/checkpoint_last.pt; "
        f"continue with: cityseg train --resume {run}"
    )
    saved = torch.load(run / "checkpoint_last.pt", weights_only=True)
    assert saved["iteration"] == 3 and saved["epoch_progress"]["batches"] == 3  # step 3 finished


def test_a_run_started_ignoring_sighup_keeps_ignoring_it():
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup starts it
    try:
        with StopSignals(announce=False) as signals:
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) == signals._handle
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.1)
            assert not signals.requested
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux pseudo-terminals")
def test_a_closed_terminal_still_saves(scenes, tmp_path):
    """The command's controlling terminal goes away (its window or SSH session closed): the
    kernel sends SIGHUP, and writing to the terminal fails from then on."""
    import fcntl
    import termios

    run = tmp_path / "run"
    leader, follower = os.openpty()

    def own_terminal() -> None:  # a new session whose controlling terminal is the pty
        os.setsid()
        fcntl.ioctl(follower, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(
        [sys.executable, "-m", "cityseg", *train_args(scenes, run)],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=cli_env(CITYSEG_TEST_FAULT="pause:step:2"),
        preexec_fn=own_terminal,
    )
    os.close(follower)
    seen, deadline = b"", time.monotonic() + 240
    while b"paused at step\r\n" not in seen and time.monotonic() < deadline:  # printed whole
        try:
            seen += os.read(leader, 4096)
        except OSError:
            break
    assert b"paused at step" in seen, seen.decode(errors="replace")
    os.close(leader)  # the terminal hangs up
    try:
        status = process.wait(240)
    finally:
        process.kill()
    assert status == 129
    saved = torch.load(run / "checkpoint_last.pt", weights_only=True)
    assert saved["iteration"] == 3 and saved["epoch_progress"]["batches"] == 3


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_while_the_run_starts_stops_it_at_once(
    scenes, tmp_path, monkeypatch, capsys, signum
):
    """Before the first step there is nothing to save: a signal during the start-up (here while
    the step setting is measured, which can take seconds) ends the run at once instead of being
    noted for a save after a step that is still far away."""

    def long_measurement(key, settings, make_step, folder=None, planned_steps=None):
        os.kill(os.getpid(), signum)
        time.sleep(60)
        raise AssertionError("the signal did not stop the start-up")

    monkeypatch.setattr(step_setting, "fastest_setting", long_measurement)
    monkeypatch.setattr(interrupt, "silence_terminal", lambda: None)  # (pytest's own terminal)
    run = tmp_path / "run"
    started = time.monotonic()
    auto = ("train.channels_last=auto", "train.deterministic=false")
    assert in_process(*train_args(scenes, run, *auto)) == 128 + signum
    assert time.monotonic() - started < 30
    name = signal.Signals(signum).name
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"cityseg train: stopped by {name} while starting, before the first training step; "
        "nothing was saved"
    )
    assert not (run / "checkpoint_last.pt").exists()
    assert signal.getsignal(signum) in (signal.default_int_handler, signal.SIG_DFL)
