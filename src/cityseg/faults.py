"""Fault injection for the robustness tests: one environment variable, read here and nowhere else.

``CITYSEG_TEST_FAULT`` holds comma-separated ``action:point[:n]`` entries; each fires the ``n``-th
time (default: the first) this process reaches ``point``:

* ``pause:<point>``: print ``CITYSEG_TEST_FAULT paused at <point>`` on stderr and wait for a
  signal, so that a test can kill or interrupt the process exactly there. Points: ``save`` (a
  checkpoint is written to its temporary file but not yet renamed), ``step`` (after an optimiser
  step), ``validate`` (before a validation batch), ``evaluate`` (before an image of
  ``cityseg evaluate``).
* ``nan:loss``: the loss of that training micro-step becomes NaN.
* ``raise:<point>``: raise a RuntimeError there, as a bug would. Points: ``forward``, ``loss``,
  ``validate``, ``worker`` (a training item read in a DataLoader worker).

It is for tests only: unset, every call here returns at once and changes nothing.
"""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter
from typing import TypeVar

from cityseg.errors import ConfigError

VARIABLE = "CITYSEG_TEST_FAULT"
T = TypeVar("T")
_reached: Counter = Counter()


def reset() -> None:
    """Forget the arrivals counted so far (a new run in the same process starts from zero)."""
    _reached.clear()


ACTIONS = ("pause", "nan", "raise")


def _entries() -> list[tuple[str, str, int]]:
    """The faults asked for; ConfigError for an entry that is not ``action:point[:n]``."""
    entries = []
    for entry in filter(None, os.environ.get(VARIABLE, "").split(",")):
        action, _, rest = entry.strip().partition(":")
        point, _, count = rest.partition(":")
        if action not in ACTIONS or not point or not (count or "1").isdigit() or count == "0":
            raise ConfigError(
                f"{VARIABLE}={os.environ[VARIABLE]!r}: {entry.strip()!r} is not "
                f"action:point[:n] with an action of {', '.join(ACTIONS)} and n from 1; "
                "correct it, or unset it"
            )
        entries.append((action, point, int(count or 1)))
    return entries


def check() -> None:
    """ConfigError now, rather than at the first fault point, when the variable is malformed."""
    _entries()


def reached(point: str) -> str | None:
    """Count one more arrival at ``point``; the action due now ("nan"), else None.

    A ``pause`` due here sleeps (for a test to kill the process) instead of returning.
    """
    if VARIABLE not in os.environ:
        return None
    _reached[point] += 1
    for action, fault_point, count in _entries():
        if fault_point == point and count == _reached[point]:
            if action == "pause":
                print(f"{VARIABLE} paused at {point}", file=sys.stderr, flush=True)
                signal.pause()  # until a signal arrives (and its handler has run)
            if action == "raise":
                raise RuntimeError(f"fault injected at {point} ({VARIABLE})")
            return action
    return None


class TrainingFaults:
    """The fault points of the training loop, as one object it calls at each: the loop holds no
    test branch of its own. Without ``CITYSEG_TEST_FAULT`` every method returns at once."""

    def forward(self) -> None:
        """Before a training forward pass."""
        reached("forward")

    def loss(self, loss: T) -> T:
        """A micro-step's loss, made NaN when a ``nan:loss`` fault is due."""
        return loss * float("nan") if reached("loss") == "nan" else loss

    def step(self) -> None:
        """After an optimiser step."""
        reached("step")

    def validation_batch(self) -> None:
        """Before a validation batch."""
        reached("validate")
