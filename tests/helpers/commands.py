"""`cityseg` as a user runs it: in a subprocess, in the background, or in this process; and
comparisons of the checkpoints runs leave."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from unittest import mock

import torch

from cityseg.cli import main
from tests.helpers.training import train_args


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a `cityseg` subprocess: one thread, the system allocator, no fault."""
    env = {k: v for k, v in os.environ.items() if k != "CITYSEG_TEST_FAULT"}
    env.update(OMP_NUM_THREADS="1", CITYSEG_ALLOCATOR="system", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def cityseg(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """Run `python -m cityseg ARGS` to the end and return its result (text output)."""
    return subprocess.run(
        [sys.executable, "-m", "cityseg", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(**env),
    )


class Running:
    """`python -m cityseg ARGS` started in the background, its stderr collected as it comes."""

    def __init__(self, *args: str, **env: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cityseg", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(**env),
            start_new_session=True,  # its own process group, as a job under a scheduler
        )
        self.stderr: list[str] = []
        self.stdout: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stderr, self.stderr)),
            threading.Thread(target=self._read, args=(self.process.stdout, self.stdout)),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        """Wait until ``text`` appears in stdout or stderr (or fail after ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.finish(5)
                raise AssertionError(f"{text!r} never came; output:\n{self.output}")
            time.sleep(0.02)

    def finish(self, timeout: float = 60) -> int:
        """Wait for the exit status (killing the process after ``timeout`` s)."""
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait()
        for reader in self._readers:
            reader.join()
        return status

    @property
    def output(self) -> str:
        return "".join(self.stdout) + "".join(self.stderr)


def same_weights(a: Path, b: Path) -> None:
    """Assert two checkpoints hold the same step and bit-identical weights and moments."""
    first = torch.load(a, weights_only=True)
    second = torch.load(b, weights_only=True)
    assert (first["epoch"], first["iteration"]) == (second["epoch"], second["iteration"])
    for name, tensor in first["model"].items():
        assert torch.equal(tensor, second["model"][name]), name
    for index, state in first["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(value, second["optimizer"]["state"][index][key]), (index, key)


_references: dict[Path, Path] = {}


def in_process(*args: str) -> int:
    """`cityseg ARGS` in this process (no curves drawn: they cost a second per epoch)."""
    with mock.patch("cityseg.train.history.plot_curves"):
        return main(list(args))


def reference_run(data: Path, folder: Path) -> Path:
    """The checkpoint of an uninterrupted run of ``TINY`` over ``data`` (made once per session,
    in this process: on one thread, as bit-exact as in a `cityseg` subprocess)."""
    if data not in _references:
        run = folder / "reference"
        assert in_process(*train_args(data, run)) == 0
        _references[data] = run / "checkpoint_last.pt"
    return _references[data]


def partial_writes(run: Path) -> list[Path]:
    return sorted(run.glob(".checkpoint_*.pt.*"))
