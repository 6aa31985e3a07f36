"""One training step, written once.

::

    uint8 batch ──to device, normalise──▶ forward (autocast) ──▶ loss ──▶ backward (scaled)
        ... once per micro-batch (train.accumulate), then:
    unscale and clip (train.clip_grad_norm) ──▶ optimiser step ──▶ scaler update ──▶ zero grad

The trainer (:mod:`cityseg.train.engine`), the measurement of the step setting
(:mod:`cityseg.train.step_setting`) and the benchmarks run this step and no other. It returns the
loss as a device tensor and reads nothing back to the host, so that on a GPU the host queues step
after step without waiting for one to finish. What guards a run around the step (non-finite
losses, float16 overflow, the blank step of a process without images, the stop signals) stands
beside it in :mod:`cityseg.train.guards`; its phases are named for ``torch.profiler``
(:data:`PHASES`).

Example:
    >>> import torch
    >>> from cityseg.runtime.normalize import Normalize
    >>> from cityseg.runtime.precision import Precision
    >>> from cityseg.train.losses import SegmentationLoss
    >>> model = torch.nn.Conv2d(3, 2, 1)
    >>> precision = Precision("fp32", torch.device("cpu"))
    >>> step = TrainingStep(
    ...     model, SegmentationLoss(2), torch.optim.SGD(model.parameters(), lr=0.1),
    ...     precision.grad_scaler(), precision, Normalize([0.5] * 3, [0.5] * 3),
    ... )
    >>> images = torch.zeros(1, 4, 4, 3, dtype=torch.uint8)
    >>> step(images, torch.zeros(1, 4, 4, dtype=torch.uint8)).shape
    torch.Size([])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

from cityseg.runtime.normalize import Normalize, batch_to_device
from cityseg.runtime.precision import Precision

PHASES = ("to device + normalise", "forward", "loss", "backward", "optimizer")
"""The ``torch.profiler`` labels of the step's phases, in order."""


class StepHooks(Protocol):
    """Calls the step makes at fixed points (the fault points of the robustness tests)."""

    def forward(self) -> None:
        """Before the forward pass."""

    def loss(self, loss: torch.Tensor) -> torch.Tensor:
        """The loss of a micro-batch, before its backward pass."""


class NoHooks:
    """Hooks that do nothing."""

    def forward(self) -> None:
        return None

    def loss(self, loss: torch.Tensor) -> torch.Tensor:
        return loss


@dataclass
class TrainingStep:
    """The training step of one network, with what it needs.

    Args:
        model: what runs forward (the network, or its DistributedDataParallel or compiled wrapper).
        criterion: the loss of logits against uint8 trainIds.
        optimizer: steps the network's parameters.
        scaler: float16's gradient scaler (a disabled one for the other precisions).
        precision: the autocast the forward pass runs in.
        normalize: the network's input normalisation, on its device.
        clip_grad_norm: the largest gradient norm (None or 0: no clipping).
        hooks: called before each forward pass and on each loss.
    """

    model: nn.Module
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    precision: Precision
    normalize: Normalize
    clip_grad_norm: float | None = None
    hooks: StepHooks = field(default_factory=NoHooks)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """A whole step on one batch; the loss, on the device."""
        loss = self.forward_backward(images, targets)
        self.optimizer_step()
        return loss

    def forward_backward(
        self, images: torch.Tensor, targets: torch.Tensor, accumulate: int = 1
    ) -> torch.Tensor:
        """Forward and backward one micro-batch (uint8 images NHWC and trainIds NHW, on any
        device), its gradients weighted ``1 / accumulate``; the loss, detached, on the device."""
        phase = torch.profiler.record_function
        with phase(PHASES[0]):
            images, targets = batch_to_device(images, targets, self.normalize)
        with phase(PHASES[1]), self.precision.autocast():
            self.hooks.forward()
            logits = self.model(images)
        with phase(PHASES[2]):
            loss = self.hooks.loss(self.criterion(logits, targets))
        with phase(PHASES[3]):
            self.scaler.scale(loss / accumulate).backward()
        return loss.detach()

    def optimizer_step(self) -> None:
        """Clip, step (the fp16 scaler skips a step whose gradients are not finite), update the
        scaler and clear the gradients."""
        with torch.profiler.record_function(PHASES[4]):
            if self.clip_grad_norm:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
