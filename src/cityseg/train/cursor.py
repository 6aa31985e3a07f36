"""Where an epoch is: the mid-epoch cursor that makes a resumed run continue exactly.

A checkpoint saved in the middle of an epoch (Ctrl-C, SIGTERM) holds ``epoch_progress``: the
micro-batches consumed by whole optimiser steps, the sum of their losses, the random generators
as they were, the number of processes, and whether validation had begun. A run resumed from it
skips those batches in the sampler, restores the generators after the DataLoader has drawn its
workers' seed, and goes on as if never stopped.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from cityseg.checkpoint.random_state import capture_rng_state, restore_for_rank
from cityseg.train.distributed import DistInfo, all_reduce_sum


class EpochCursor:
    """The position of this process in the current epoch.

    Args:
        info: this process's place in the job.
        device: where the loss sum lives (float32: MPS has no float64).
    """

    def __init__(self, info: DistInfo, device: torch.device) -> None:
        self.info = info
        self.device = device
        self.batches = 0
        """Micro-batches of this epoch consumed by whole optimiser steps."""
        self.loss_sum = torch.zeros(2, device=device)
        """(sum of the micro-batch losses, number of them) on this process."""
        self.resume_from: dict[str, Any] | None = None
        """A saved ``epoch_progress`` the next epoch starts from (set by :meth:`load`)."""
        self.before_validation: dict[str, Any] | None = None
        """The position taken before validation: what a stop during validation saves."""

    def load(self, progress: dict[str, Any] | None) -> str | None:
        """Continue the next epoch from a checkpoint's ``epoch_progress``; return a line to
        print when it cannot be (another number of processes: the epoch is redone)."""
        self.resume_from = progress
        if progress is not None and progress["world_size"] != self.info.world_size:
            self.resume_from = None  # the shards differ: redo the interrupted epoch from its start
            return "the number of processes changed: redoing the interrupted epoch"
        return None

    def begin(self, loader: DataLoader, batch_per_step: int) -> int:
        """Start an epoch at its beginning or where the resumed checkpoint stopped; return the
        micro-batches already done. Call before ``iter(loader)``."""
        self.loss_sum = torch.zeros(2, device=self.device)
        self.batches = 0
        if self.resume_from is not None:
            self.batches = self.resume_from["batches"]
            loader.sampler.skip = self.batches * batch_per_step
            if self.info.is_main:  # (the saved sum is rank 0's; the others' partial sums are lost)
                self.loss_sum += self.resume_from["loss_sum"].to(self.device, torch.float32)
        return self.batches

    def restore_random_state(self) -> None:
        """After ``iter(loader)`` (which draws the workers' seed): the generators of the saved
        position, for a resumed epoch."""
        if self.resume_from is None:
            return
        restore_for_rank(self.resume_from["rng"], self.info.rank)
        self.resume_from = None

    def add(self, loss: torch.Tensor) -> None:
        """Count the loss of one micro-batch."""
        self.loss_sum[0] += loss.detach()
        self.loss_sum[1] += 1

    def mean_loss(self) -> float:
        """The mean micro-batch loss of the epoch over all processes."""
        loss_sum = all_reduce_sum(self.loss_sum.clone(), self.info)
        return (loss_sum[0] / loss_sum[1].clamp(min=1)).item()

    def mark_validation(self) -> None:
        """Take the position before validating (a stop during validation saves it)."""
        self.before_validation = self.position(validating=True)

    def end_epoch(self) -> None:
        self.before_validation = None

    def position(self, validating: bool = False) -> dict[str, Any]:
        """The ``epoch_progress`` of a checkpoint saved now (or before validation began)."""
        if self.before_validation is not None:
            return self.before_validation
        return {
            "batches": self.batches,
            "loss_sum": self.loss_sum.detach().cpu(),
            "rng": capture_rng_state(),
            "world_size": self.info.world_size,
            "validating": validating,
        }
