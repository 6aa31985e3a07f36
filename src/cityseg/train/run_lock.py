"""One writer per run folder: a run holds an exclusive ``flock`` on ``RUN_DIR/.lock`` from its
start to its end, so that a second ``cityseg train`` (or ``--resume``) writing the same folder at
once stops with one line naming the holder instead of mixing two runs' checkpoints and metrics.

The kernel drops the lock when its holder exits, however it ends: a lock is never stale. The lock
file holds ``pid PID on HOST`` for the message; it is removed when the run ends (and the run
folder too, when the run created it and wrote nothing into it). In a distributed job only the
main process, the one that writes, takes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from cityseg.errors import ConfigError
from cityseg.outputs import prepare_output_folder

LOCK_FILE = ".lock"


@contextlib.contextmanager
def run_folder_lock(folder: Path, enabled: bool = True) -> Iterator[None]:
    """Hold the lock of ``folder`` (created if needed) while the block runs.

    Args:
        folder: the run folder.
        enabled: False on the processes of a job that do not write (nothing is done).

    Raises:
        ConfigError: another process holds the lock (the message names it), or the folder
            cannot be created.
    """
    if not enabled:
        yield
        return
    folder = Path(folder)
    created = not folder.exists()
    prepare_output_folder(folder)
    try:
        descriptor = _acquire(folder / LOCK_FILE)
    except BaseException:
        if created:
            _remove_if_empty(folder)
        raise
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(folder / LOCK_FILE)  # still held: no other process holds this file
        os.close(descriptor)
        if created:
            _remove_if_empty(folder)


def _acquire(path: Path) -> int:
    """An open descriptor of ``path`` holding its exclusive lock, the holder written into it."""
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(descriptor, 256).decode(errors="replace").strip() or "a process"
            os.close(descriptor)
            raise ConfigError(
                f"{path.parent}: another cityseg train is writing this run folder ({holder}); "
                "wait for it to end, or choose another --out"
            ) from None
        try:
            same = os.fstat(descriptor).st_ino == os.stat(path).st_ino
        except FileNotFoundError:  # its holder removed it as it ended: take a new one
            same = False
        if same:
            break
        os.close(descriptor)
    os.ftruncate(descriptor, 0)
    os.write(descriptor, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
    return descriptor


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()
