"""The allocator choice: tcmalloc where installed, else glibc's, tuned, unless CITYSEG_ALLOCATOR
asks for another."""

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


@pytest.fixture
def tunings(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "tune_glibc", lambda: calls.append("tuned") or True)
    return calls


@pytest.mark.parametrize("value", [None, "auto", " AUTO "])
def test_tcmalloc_is_the_default_where_it_is_installed(execs, tunings, monkeypatch, value):
    if value is None:
        monkeypatch.delenv(allocator.VARIABLE, raising=False)
    else:
        monkeypatch.setenv(allocator.VARIABLE, value)
    monkeypatch.setattr(allocator, "find_allocator", lambda name: f"/usr/lib/lib{name}.so.4")
    allocator.prepare_allocator(["train"])
    (executable, argv, env), = execs  # fmt: skip
    assert env["LD_PRELOAD"] == "/usr/lib/libtcmalloc.so.4" and tunings == []
    assert int(env["TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD"]) >= 1 << 40  # no line per big block
    assert "OMP_WAIT_POLICY" not in env  # OpenMP's own waiting: passive was slower


def test_without_tcmalloc_the_default_is_tuned_glibc_and_says_nothing(
    execs, tunings, monkeypatch, capsys
):
    monkeypatch.delenv(allocator.VARIABLE, raising=False)
    monkeypatch.setattr(allocator, "find_allocator", lambda name: None)
    allocator.prepare_allocator(["train"])
    assert execs == [] and tunings == ["tuned"] and capsys.readouterr().err == ""


@pytest.mark.parametrize("value", ["system", "glibc", " GLIBC "])
def test_glibc_by_name_is_tuned_glibc(execs, tunings, monkeypatch, value):
    monkeypatch.setenv(allocator.VARIABLE, value)
    monkeypatch.setattr(allocator, "find_allocator", lambda name: f"/usr/lib/lib{name}.so.4")
    allocator.prepare_allocator(["train"])
    assert execs == [] and tunings == ["tuned"]
    assert "OMP_WAIT_POLICY" not in os.environ


def test_a_process_already_preloaded_is_not_executed_again(execs, tunings, monkeypatch):
    monkeypatch.delenv(allocator.VARIABLE, raising=False)
    monkeypatch.setattr(allocator, "find_allocator", lambda name: f"/usr/lib/lib{name}.so.4")
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/libtcmalloc.so.4")
    allocator.prepare_allocator(["train"])
    assert execs == [] and tunings == []


def test_glibc_defaults_leaves_glibc_as_it_comes(execs, tunings, monkeypatch):
    monkeypatch.setenv(allocator.VARIABLE, "glibc-defaults")
    allocator.prepare_allocator(["train"])
    assert execs == [] and tunings == []


GLIBC_PROBE = """
import ctypes, sys
from cityseg.runtime.allocator import tune_glibc, describe_allocator

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
if sys.argv[1] == "tuned":
    assert tune_glibc()
before = libc.mallinfo2().hblks
block = libc.malloc(64 << 20)  # above glibc's default mmap threshold, below the tuned one
print(libc.mallinfo2().hblks - before, describe_allocator())
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.environ.get("LD_PRELOAD"), reason="glibc only"
)
def test_tuning_glibc_serves_large_blocks_from_the_heap_instead_of_new_mappings():
    def mapped_blocks(mode: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", GLIBC_PROBE, mode], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert mapped_blocks("defaults") == "1 glibc"
    assert mapped_blocks("tuned") == "0 glibc, tuned"


def test_an_installed_allocator_asked_for_is_preloaded(execs, monkeypatch):
    monkeypatch.setenv(allocator.VARIABLE, "jemalloc")
    monkeypatch.setattr(allocator, "find_allocator", lambda name: f"/usr/lib/lib{name}.so.2")
    allocator.prepare_allocator(["train", "--config", "c.yaml"])
    (executable, argv, env), = execs  # fmt: skip
    assert argv[-3:] == ["train", "--config", "c.yaml"]
    assert env["LD_PRELOAD"] == "/usr/lib/libjemalloc.so.2" and env[allocator._MARK] == "1"
    assert "TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD" not in env


def test_an_allocator_that_is_not_installed_keeps_glibc_and_says_so(
    execs, tunings, monkeypatch, capsys
):
    monkeypatch.setenv(allocator.VARIABLE, "tcmalloc")
    monkeypatch.setattr(allocator, "find_allocator", lambda name: None)
    allocator.prepare_allocator(["train"])
    assert execs == [] and tunings == ["tuned"]
    assert "CITYSEG_ALLOCATOR=tcmalloc: libtcmalloc is not installed" in capsys.readouterr().err


def test_an_unknown_allocator_is_one_clear_line(monkeypatch):
    monkeypatch.setenv(allocator.VARIABLE, "mimalloc")
    with pytest.raises(ConfigError, match="unknown allocator; use one of auto, glibc, glibc-"):
        allocator.requested_allocator()
    env = {**os.environ, allocator.VARIABLE: "mimalloc"}
    done = subprocess.run(
        [sys.executable, "-m", "cityseg", "evaluate", "--data", "nowhere", "x.pt"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "cityseg evaluate: error: CITYSEG_ALLOCATOR='mimalloc': unknown allocator; use one of "
        "auto, glibc, glibc-defaults, jemalloc, tcmalloc"
    ]
