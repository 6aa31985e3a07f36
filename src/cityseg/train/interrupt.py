"""Stopping a run politely: Ctrl-C (SIGINT), SIGTERM (what job schedulers send) and SIGHUP (a
closed terminal or SSH session) ask the training loop to finish its current step and save a
resumable checkpoint; a second signal stops at once, and so does one while the run starts, before
its first step (nothing to save yet). A signal the run was started ignoring (SIGHUP
under ``nohup``, SIGINT of a background job) stays ignored. After SIGHUP, what would go to the
terminal goes nowhere (writing to a terminal that hung up fails).
"""

from __future__ import annotations

import os
import signal
import stat
import sys
import threading
from types import FrameType

from cityseg.errors import UserError
from cityseg.processes import STOP_SIGNALS


class TrainingInterrupted(UserError):
    """The run stopped on a signal after saving; the CLI exits with ``128 + signal number``."""

    def __init__(self, signum: int, *problems: str) -> None:
        super().__init__(*problems)
        self.exit_status = 128 + signum


class StopSignals:
    """While active, SIGINT, SIGTERM and SIGHUP set :attr:`signum` instead of stopping the
    process, unless the process was ignoring them.

    Until :meth:`ready` (while the run starts) a signal stops it at once, with
    :class:`TrainingInterrupted`. Handlers are installed only in the main thread (elsewhere
    Python forbids it) and the previous ones come back on exit. After the first signal, the
    default behaviour is restored, so that a second Ctrl-C raises KeyboardInterrupt and a second
    SIGTERM or SIGHUP terminates.

    Args:
        announce: print what happens on stderr when the first signal arrives.
    """

    def __init__(self, announce: bool = True) -> None:
        self.signum: int | None = None
        self.announce = announce
        self.saving = False  # set by ready(): before, there is nothing to save
        self._previous: dict[int, object] = {}

    def ready(self) -> None:
        """From now on a signal asks for a checkpoint at the end of the step. Before (the data
        opened, the step setting measured, a file read that blocks), it stops the run at once:
        there is nothing to save yet."""
        self.saving = True

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == getattr(signal, "SIGHUP", None):
            silence_terminal()
        if not self.saving:
            raise TrainingInterrupted(
                signum,
                f"stopped by {signal.Signals(signum).name} while starting, before the first "
                "training step; nothing was saved",
            )
        self.signum = signum
        default = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
        signal.signal(signum, default)
        if self.announce:
            try:
                print(
                    f"\n{signal.Signals(signum).name}: finishing this step, then saving a "
                    "checkpoint (send it again to stop at once, without saving)",
                    file=sys.stderr,
                    flush=True,
                )
            except (OSError, ValueError):  # (a terminal that is gone: the run still saves)
                pass

    @property
    def requested(self) -> bool:
        return self.signum is not None


def silence_terminal() -> None:
    """Send what would go to a terminal (a character device), on standard output and error, to
    ``os.devnull`` from now on: after a hangup, writing to the terminal fails (EIO) and would end
    the run before it saved or said so. Output into files and pipes is left as it is."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            try:  # (a terminal that hung up is no longer a tty to isatty: a character device)
                if stat.S_ISCHR(os.fstat(fd).st_mode):
                    os.dup2(null, fd)
            except OSError:  # not open
                pass
    finally:
        os.close(null)
