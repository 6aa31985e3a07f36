"""Stopping a run politely: Ctrl-C (SIGINT) and SIGTERM (what job schedulers send) ask the training
loop to finish its current step and save a resumable checkpoint; a second signal stops at once.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

from cityseg.errors import UserError

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(UserError):
    """The run stopped on a signal after saving; the CLI exits with ``128 + signal number``."""

    def __init__(self, signum: int, *problems: str) -> None:
        super().__init__(*problems)
        self.exit_status = 128 + signum


class StopSignals:
    """While active, SIGINT and SIGTERM set :attr:`signum` instead of stopping the process.

    Handlers are installed only in the main thread (elsewhere Python forbids it) and the previous
    ones come back on exit. After the first signal, the default behaviour is restored, so that a
    second Ctrl-C raises KeyboardInterrupt and a second SIGTERM terminates.

    Args:
        announce: print what happens on stderr when the first signal arrives.
    """

    def __init__(self, announce: bool = True) -> None:
        self.signum: int | None = None
        self.announce = announce
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum
        default = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
        signal.signal(signum, default)
        if self.announce:
            print(
                f"\n{signal.Signals(signum).name}: finishing this step, then saving a checkpoint "
                "(send it again to stop at once, without saving)",
                file=sys.stderr,
                flush=True,
            )

    @property
    def requested(self) -> bool:
        return self.signum is not None
