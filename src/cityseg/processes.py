"""The worker processes a command starts: how many (:func:`worker_count`, the one rule of the
loaders, ``data prepare`` and ``score``), and their lifetimes: no worker outlives the command,
none keeps it from ending.

A DataLoader worker asks the kernel to kill it when its parent dies (``PR_SET_PDEATHSIG`` on
Linux), so a command killed from outside leaves no orphan. The command itself kills whatever
children are left before it exits (:func:`stop_children`), so an error never waits on a worker
that ignores SIGTERM (training workers leave SIGTERM to the training loop, which saves first).
No torch import here.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import platform
import signal
import sys
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_parent_pid: int | None = None

STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
"""The signals that ask a training run to stop politely (Ctrl-C; a scheduler's SIGTERM; SIGHUP,
a closed terminal or SSH session): the training process saves first, its workers ignore them."""


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the platform tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def worker_count(
    requested: int | str | None = "auto", processes: int = 1, spare: int = 0, cap: int | None = None
) -> int:
    """Worker processes to start: ``requested`` itself when it is a number, else ("auto" or None)
    the usable CPUs shared among the ``processes`` of a job, less ``spare`` left to each
    process's own work, at most ``cap``, at least 1.

    Example:
        >>> worker_count(3), worker_count("auto") >= 1
        (3, True)
    """
    if requested not in (None, "auto"):
        return int(requested)
    count = usable_cpus() // processes - spare
    return max(1, count if cap is None else min(cap, count))


def remember_parent() -> None:
    """Record this process as the parent of the workers about to be started."""
    global _parent_pid
    _parent_pid = os.getpid()


def die_with_parent() -> None:
    """In a worker: be killed (SIGKILL) as soon as the parent process ends, and end at once if
    it already has. Without ``prctl`` (not Linux) the workers' own parent watchdog remains."""
    if not sys.platform.startswith("linux") or os.getpid() == _parent_pid:
        return  # (not in a worker: the command itself)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # pragma: no cover - no prctl in this libc
        return
    if _parent_pid is not None and os.getppid() != _parent_pid:
        os._exit(1)  # the parent died before prctl took effect


def stop_children(timeout: float = 5.0) -> None:
    """Kill and reap every child process this process still has (multiprocessing's)."""
    children = multiprocessing.active_children()
    if children and hasattr(signal, "SIGCHLD"):
        # torch's DataLoader raises from its SIGCHLD handler when a worker dies: here that is
        # the point, not an error.
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for child in children:
        try:
            child.kill()
        except (OSError, ValueError):  # already gone or closed
            pass
    for child in children:
        child.join(timeout)


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what Python knows: what a
    measured speed holds for."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
