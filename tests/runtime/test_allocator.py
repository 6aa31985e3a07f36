"""The allocator choice: glibc's unless CITYSEG_ALLOCATOR asks for jemalloc or tcmalloc."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cityseg.errors import ConfigError
from cityseg.runtime import allocator


@pytest.fixture
def execs(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator.os, "execve", lambda *args: calls.append(args))
    monkeypatch.delenv(allocator._MARK, raising=False)
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    return calls


def test_the_system_allocator_is_the_default(execs, monkeypatch):
    monkeypatch.delenv(allocator.VARIABLE, raising=False)
    monkeypatch.setattr(allocator, "find_allocator", lambda name: "/usr/lib/libjemalloc.so.2")
    allocator.prepare_allocator(["train"])
    assert execs == []
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


def test_an_installed_allocator_asked_for_is_preloaded(execs, monkeypatch):
    monkeypatch.setenv(allocator.VARIABLE, "jemalloc")
    monkeypatch.setattr(allocator, "find_allocator", lambda name: f"/usr/lib/lib{name}.so.2")
    allocator.prepare_allocator(["train", "--config", "c.yaml"])
    (executable, argv, env), = execs  # fmt: skip
    assert argv[-3:] == ["train", "--config", "c.yaml"]
    assert env["LD_PRELOAD"] == "/usr/lib/libjemalloc.so.2" and env[allocator._MARK] == "1"


def test_an_allocator_that_is_not_installed_keeps_glibc_and_says_so(execs, monkeypatch, capsys):
    monkeypatch.setenv(allocator.VARIABLE, "tcmalloc")
    monkeypatch.setattr(allocator, "find_allocator", lambda name: None)
    allocator.prepare_allocator(["train"])
    assert execs == []
    assert "CITYSEG_ALLOCATOR=tcmalloc: libtcmalloc is not installed" in capsys.readouterr().err


def test_an_unknown_allocator_is_one_clear_line(monkeypatch):
    monkeypatch.setenv(allocator.VARIABLE, "mimalloc")
    with pytest.raises(ConfigError, match="unknown allocator; use one of system, jemalloc"):
        allocator.requested_allocator()
    env = {**os.environ, allocator.VARIABLE: "mimalloc"}
    done = subprocess.run(
        [sys.executable, "-m", "cityseg", "evaluate", "--data", "nowhere", "x.pt"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "cityseg evaluate: error: CITYSEG_ALLOCATOR='mimalloc': unknown allocator; use one of "
        "system, jemalloc, tcmalloc"
    ]
