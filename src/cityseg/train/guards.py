"""What guards a run around its training step (:mod:`cityseg.train.step`), one small piece each.

* :class:`LossWatch`: a loss that became NaN or infinite, noted on the device at every micro-step
  and read only at the read points (log intervals, epoch ends, saves): the host never waits for
  a step to tell. The first step whose loss was not finite on any process is named.
* :class:`SkippedSteps`: the steps float16's gradient scaler skipped in a row (its gradients were
  not finite). torch's scaler decides a skip on the host in its own step; only float16 pays it.
* :class:`StopVote`: whether every process stops after this step (a signal arrived). One process
  reads its own flag; the processes of a job on GPUs sum their flags on the device and read the
  sum one step later, so that no process waits for the step it has just queued.
* :func:`blank_forward_backward`: the micro-step of a process whose images were all unreadable.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from cityseg.train.distributed import DistInfo, all_reduce_sum


@dataclass(frozen=True)
class NotedStep:
    """An optimiser step as :class:`LossWatch` keeps it until the next read."""

    iteration: int
    """The step's number (from 1)."""
    epoch: int
    """Its epoch's number (from 1)."""
    lr: float
    nonfinite: torch.Tensor
    """Whether a loss of its micro-steps was not finite on this process (device, bool)."""
    loss: torch.Tensor | None
    """The loss of the last micro-batch with images so far (device), None if none yet."""


class LossWatch:
    """The losses of the optimiser steps since the last read, on the device.

    Args:
        info: this process's place in the job (the flags are summed over its processes).
        device: where the losses are.
        read_every: the steps after which :meth:`due` says a read is needed (the list it keeps
            is never longer).
    """

    def __init__(self, info: DistInfo, device: torch.device, read_every: int) -> None:
        self.info, self.device, self.read_every = info, device, read_every
        self.noted: list[NotedStep] = []
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=device)
        self.last: torch.Tensor | None = None
        """The loss of the last micro-batch that had images (device)."""

    def new_epoch(self) -> None:
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=self.device)
        self.last = None

    def micro_step(self, loss: torch.Tensor) -> None:
        """Note the loss of a micro-batch that had images."""
        self.nonfinite |= ~torch.isfinite(loss)
        self.last = loss

    def step(self, iteration: int, epoch: int, lr: float) -> None:
        """An optimiser step (the ``iteration``-th, in epoch ``epoch``) ends its micro-steps."""
        self.noted.append(NotedStep(iteration, epoch, lr, self.nonfinite, self.last))
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=self.device)

    def due(self) -> bool:
        return len(self.noted) >= self.read_every

    def first_nonfinite(self) -> tuple[float, NotedStep] | None:
        """Read the steps noted since the last read (every process at the same step): the loss
        and the step of the first whose loss was not finite on any process, else None."""
        noted, self.noted = self.noted, []
        if not noted:
            return None
        flags = torch.stack([step.nonfinite for step in noted]).float()
        for step, flag in zip(noted, all_reduce_sum(flags, self.info).tolist(), strict=True):
            if flag:
                return (step.loss.item() if step.loss is not None else math.nan), step
        return None


class SkippedSteps:
    """The optimiser steps float16's gradient scaler skipped in a row.

    Args:
        scaler: the run's gradient scaler (disabled unless float16: nothing is ever skipped).
    """

    def __init__(self, scaler: torch.amp.GradScaler) -> None:
        self.scaler = scaler
        self.in_a_row = 0

    def take(self, optimizer_step: Callable[[], None]) -> bool:
        """Run ``optimizer_step``; return whether the step was taken (a scaler that lowered its
        scale skipped it)."""
        if not self.scaler.is_enabled():
            optimizer_step()
            return True
        scale = self.scaler.get_scale()
        optimizer_step()
        if self.scaler.get_scale() < scale:
            self.in_a_row += 1
            return False
        self.in_a_row = 0
        return True


class StopVote:
    """Whether every process of the job stops after the current step.

    Args:
        info: this process's place in the job.
        device: where the processes sum their votes (NCCL sums on the GPU).
    """

    def __init__(self, info: DistInfo, device: torch.device) -> None:
        self.info, self.device = info, device
        self.pending: tuple[torch.Tensor, torch.cuda.Event] | None = None

    def after_step(self, requested: bool) -> bool:
        """Vote (``requested``: this process was asked to stop); return whether all stop now."""
        if not self.info.enabled:
            return requested
        votes = all_reduce_sum(torch.full((1,), float(requested), device=self.device), self.info)
        if self.device.type != "cuda":  # summed on the host already
            return bool(votes.item())
        host = votes.to("cpu", non_blocking=True)
        summed = torch.cuda.Event()
        summed.record()
        previous, self.pending = self.pending, (host, summed)
        return self._read(previous)

    def flush(self) -> bool:
        """At the end of an epoch: the vote still unread (whether all stop now)."""
        previous, self.pending = self.pending, None
        return self._read(previous)

    @staticmethod
    def _read(vote: tuple[torch.Tensor, torch.cuda.Event] | None) -> bool:
        if vote is None:
            return False
        host, summed = vote
        summed.synchronize()
        return bool(host.item())


@contextlib.contextmanager
def buffers_kept(model: nn.Module) -> Iterator[None]:
    """Every buffer of ``model`` (BatchNorm's running statistics and counts) as it was before."""
    kept = [buffer.clone() for buffer in model.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in zip(model.buffers(), kept, strict=True):
                buffer.copy_(value)


def blank_forward_backward(
    model: nn.Module, network: nn.Module, scaler: torch.amp.GradScaler, channels_last: bool
) -> None:
    """A micro-step of weight zero, for a process whose images were all unreadable.

    A forward and backward pass of ``model`` (``network`` itself, or its wrapper) over a batch of
    no images, in training mode like the others' passes, so that the process makes every
    collective of their step (DDP's gradient all-reduce and SyncBatchNorm's statistics in both
    passes, which eval mode would skip: the others would wait for it until the distributed
    timeout). Its gradients are zero, it adds nothing to SyncBatchNorm's statistics, and the
    network's own BatchNorm statistics are kept as they were. It runs in float32, without
    autocast: SyncBatchNorm gathers the statistics of an empty batch in its input's type, and the
    others' statistics are float32 whatever the autocast type (an all-gather of bf16 against
    float32 fails, or mixes garbage on NCCL).
    """
    size = int(getattr(network, "min_size", 32))
    device = next(network.parameters()).device
    blank = torch.zeros(0, 3, size, size, device=device)
    if channels_last:
        blank = blank.contiguous(memory_format=torch.channels_last)
    with buffers_kept(network):
        logits = model(blank)
        scaler.scale(logits.float().sum() * 0.0).backward()
