"""The run folder of a training run: what it holds and every write into it.

``config.yaml`` (the resolved configuration), ``checkpoint_last.pt`` after every epoch,
``checkpoint_best.pt`` when the validation mIoU improved, and, written by
:class:`~cityseg.train.history.RunHistory`, ``metrics.jsonl``, ``tensorboard/`` and
``curves.png``. A new run starts only in an empty folder; a run holds the folder's lock while it
writes (:mod:`cityseg.train.run_lock`). A checkpoint never exists half-written (see
:mod:`cityseg.checkpoint.io`); a disk too small for the checkpoints is found before the first
epoch, a disk that fills up during a save is reported in one line with the last good checkpoint
kept.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import torch

from cityseg.checkpoint.io import load_checkpoint, remove_partial_writes, save_checkpoint
from cityseg.config import Config, save_config
from cityseg.errors import CheckpointError, ConfigError
from cityseg.outputs import check_output_folder, existing_ancestor
from cityseg.train.failures import TrainingFailed
from cityseg.train.interrupt import TrainingInterrupted
from cityseg.train.run_lock import LOCK_FILE

LAST, BEST = "checkpoint_last.pt", "checkpoint_best.pt"
CONFIG = "config.yaml"
CHECKPOINT_COPIES = 3
"""``checkpoint_last.pt``, ``checkpoint_best.pt`` and the temporary file of the next write."""


class RunFolder:
    """The folder of one run, as seen from one process of the job.

    Only the main process writes; on the others :meth:`save` and :meth:`write_config` do nothing.

    Args:
        path: the run folder.
        is_main: whether this process writes (rank 0).
    """

    def __init__(self, path: Path, is_main: bool) -> None:
        self.path = path
        self.is_main = is_main
        self.saved_at: tuple[int, int] | None = None
        """(epoch, iteration) of the last checkpoint of this run, written or resumed from."""

    @property
    def last(self) -> Path:
        return self.path / LAST

    def prepare(self, resume: bool) -> tuple[dict[str, Any] | None, str | None]:
        """Check the folder before any work; return the checkpoint to resume from (None: start
        from the beginning) and a line to print (or None).

        Raises:
            ConfigError: the folder cannot be written, or already holds a run (without resume).
            CheckpointError: ``resume`` without a checkpoint to resume from.
        """
        if self.is_main:
            check_output_folder(self.path, "--out")
            if self.path.is_dir():
                remove_partial_writes(self.path)  # left by a process killed while saving
        if resume and not self.last.is_file() and (self.path / CONFIG).is_file():
            note = (
                f"{self.path}: no checkpoint yet (the run stopped before its first save); "
                "starting it from the beginning"
            )
            return None, note
        if resume:
            if not self.last.is_file():
                raise CheckpointError(
                    f"{self.last}: not found; --resume needs a run folder with a "
                    "checkpoint_last.pt (start a new run with --out)"
                )
            state = load_checkpoint(self.last)
            self.saved_at = (state["epoch"], state["iteration"])
            return state, None
        if self.last.is_file():
            raise ConfigError(
                f"{self.path}: already holds a run; continue it with "
                f"--resume {self.path} or choose another --out"
            )
        if self.is_main:
            self._check_empty()
        return None, None

    def _check_empty(self) -> None:
        """A new run starts only in a folder holding nothing (its lock aside): it never
        replaces a best checkpoint, metrics or any file it did not write."""
        if not self.path.is_dir():
            return
        names = sorted(p.name for p in self.path.iterdir() if p.name != LOCK_FILE)
        if not names:
            return
        if (self.path / CONFIG).is_file() and not (self.path / BEST).exists():
            raise ConfigError(
                f"{self.path}: holds a run stopped before its first checkpoint; start it again "
                f"with --resume {self.path}, or choose another --out"
            )
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise ConfigError(
            f"{self.path}: already holds {shown} and no {LAST} to continue from; a new run "
            "never replaces files it did not write: move them away or choose another --out"
        )

    def write_config(
        self, config: Config, model: torch.nn.Module, optimizer: torch.optim.Optimizer
    ) -> None:
        """Once every part of the configuration has been accepted: check that the disk holds the
        checkpoints, then write ``config.yaml`` (atomically)."""
        if not self.is_main:
            return
        check_free_space(self.path, CHECKPOINT_COPIES * checkpoint_bytes(model, optimizer))
        self.path.mkdir(parents=True, exist_ok=True)
        temporary = self.path / f".{CONFIG}.tmp"
        save_config(config, temporary)
        os.replace(temporary, self.path / CONFIG)

    def save(self, state: dict[str, Any], best: bool) -> None:
        """Write ``checkpoint_last.pt`` and, when ``best``, ``checkpoint_best.pt``.

        Raises:
            TrainingFailed: a checkpoint could not be written (the previous one is kept).
        """
        if not self.is_main:
            return
        for name in (LAST, BEST) if best else (LAST,):
            try:
                save_checkpoint(self.path / name, state)
            except OSError as error:
                raise self._save_failed(self.path / name, error) from None
            self.saved_at = (state["epoch"], state["iteration"])

    def stop_after_save(self, signum: int | None, epoch: int, where: str) -> TrainingInterrupted:
        """The error that ends a run stopped by a signal once its checkpoint is saved."""
        signum = signum or signal.SIGINT
        return TrainingInterrupted(
            signum,
            f"stopped by {signal.Signals(signum).name} in epoch {epoch} at {where}; "
            f"saved {self.last}; continue with: cityseg train --resume {self.path}",
        )

    def last_checkpoint_note(self) -> str:
        """Half a line on the last good checkpoint, for the messages of a failed run."""
        if self.saved_at is None:
            return f"no checkpoint was saved yet in {self.path}"
        epoch, iteration = self.saved_at
        return f"the last good checkpoint, {self.last} (epoch {epoch}, step {iteration}), is kept"

    def _save_failed(self, path: Path, error: OSError) -> TrainingFailed:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            what, fix = "the disk is full", "free some space"
        else:
            what, fix = error.strerror or str(error), "check the folder"
        return TrainingFailed(
            f"{path}: cannot be written ({what}); {self.last_checkpoint_note()}; {fix}, then "
            f"continue with `cityseg train --resume {self.path}`"
        )


def checkpoint_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """An estimate of one checkpoint's size: weights, buffers and optimiser state (+ 1 MiB)."""
    tensors = [*model.parameters(), *model.buffers()]
    for state in optimizer.state_dict()["state"].values():
        tensors += [value for value in state.values() if isinstance(value, torch.Tensor)]
    size = sum(t.numel() * t.element_size() for t in tensors)
    moments = {"adam": 2, "adamw": 2, "sgd": 1}.get(type(optimizer).__name__.lower(), 2)
    if not optimizer.state_dict()["state"]:  # no step yet: its moments will come
        size += moments * sum(p.numel() * p.element_size() for p in model.parameters())
    return size + (1 << 20)


def check_free_space(run_dir: Path, needed: int) -> None:
    """Raise ConfigError when the disk of ``run_dir`` has less than ``needed`` bytes free."""
    free = shutil.disk_usage(existing_ancestor(run_dir)).free
    if free < needed:
        raise ConfigError(
            f"{run_dir}: {free / 1e6:.1f} MB free, but its checkpoints need about "
            f"{needed / 1e6:.1f} MB ({CHECKPOINT_COPIES} copies of "
            f"{needed / CHECKPOINT_COPIES / 1e6:.1f} MB); "
            "free some space or choose another --out"
        )
