"""Optimiser, learning-rate schedule and early stopping: when to move, how far, and when to stop.

The schedule is one small object rather than a chain of torch schedulers so that warm-up composes
with every curve, reduce-on-plateau included, and resume restores it from one plain dict.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from cityseg.config import TrainConfig


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD (with momentum) over all parameters of ``model``, fused where torch
    can (:func:`fused_supported`).

    A pretrained encoder's parameters form a group of their own whose learning rate is
    ``encoder_lr_mult`` times the schedule's (each group's ``lr_mult``).
    """
    encoder = getattr(model, "encoder", None)
    in_encoder = {id(p) for p in encoder.parameters()} if encoder is not None else set()
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in in_encoder]
    params = [{"params": rest, "lr_mult": 1.0, "name": "model"}]
    if encoder is not None:
        mult = config.encoder_lr_mult
        encoder_params = [p for p in encoder.parameters() if p.requires_grad]
        params.append({"params": encoder_params, "lr_mult": mult, "name": "encoder"})
    fused = fused_supported(model)
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            fused=fused,
        )
    optimizer_class = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return optimizer_class(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused)


def fused_supported(model: nn.Module) -> bool | None:
    """True where torch has a fused update for every parameter (floating point, on the CPU or a
    CUDA GPU): one kernel per parameter instead of one per operation of the update, which is
    faster. None (torch's own choice) elsewhere."""
    parameters = list(model.parameters())
    ok = parameters and all(
        p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in parameters
    )
    return True if ok else None


class LRSchedule:
    """Learning rate per optimiser step: linear warm-up, then poly, cosine, constant or plateau.

    * poly:     ``min_lr + (lr - min_lr) * (1 - t / T) ** power``
    * cosine:   ``min_lr + (lr - min_lr) * (1 + cos(pi t / T)) / 2``
    * constant: ``lr``
    * plateau:  ``lr``, multiplied by ``factor`` whenever validation mIoU has not improved for
      ``patience`` validations (``observe``).

    ``t`` counts steps after warm-up and ``T`` the steps after warm-up in the whole run.

    Example:
        >>> from torch import nn
        >>> optimizer = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)
        >>> schedule = LRSchedule(optimizer, "poly", total_steps=100, warmup_steps=9)
        >>> [round(schedule.lr_at(step), 4) for step in (0, 9, 100)]
        [0.01, 0.1, 0.0]
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        kind: str,
        total_steps: int,
        warmup_steps: int = 0,
        poly_power: float = 0.9,
        min_lr: float = 0.0,
        plateau_factor: float = 0.5,
        plateau_patience: int = 3,
    ) -> None:
        self.optimizer = optimizer
        self.base_lr = optimizer.param_groups[0]["lr"]
        self.kind = kind
        self.total_steps = max(total_steps, 1)
        self.warmup_steps = warmup_steps
        self.poly_power = poly_power
        self.min_lr = min_lr
        self.plateau_factor = plateau_factor
        self.plateau_patience = plateau_patience
        self.plateau_scale = 1.0
        self.plateau = Patience(plateau_patience)

    def lr_at(self, step: int) -> float:
        """The learning rate of optimiser step ``step`` (0-based)."""
        if step < self.warmup_steps:
            return self.base_lr * (step + 1) / (self.warmup_steps + 1)
        progress = min((step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1), 1)
        if self.kind == "poly":
            return self.min_lr + (self.base_lr - self.min_lr) * (1 - progress) ** self.poly_power
        if self.kind == "cosine":
            cosine = (1 + math.cos(math.pi * progress)) / 2
            return self.min_lr + (self.base_lr - self.min_lr) * cosine
        return self.base_lr * self.plateau_scale

    def set_step(self, step: int) -> float:
        """Set the optimiser's learning rate for step ``step`` and return it."""
        lr = self.lr_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)
        return lr

    def observe(self, mean_iou: float) -> None:
        """Record a validation score; the plateau schedule lowers the rate when it stalls."""
        if self.kind == "plateau" and self.plateau.observe(mean_iou):
            self.plateau_scale *= self.plateau_factor
            self.plateau.reset_wait()

    def state_dict(self) -> dict[str, Any]:
        return {"plateau_scale": self.plateau_scale, "plateau": self.plateau.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.plateau_scale = state["plateau_scale"]
        self.plateau.load_state_dict(state["plateau"])


def set_encoder_frozen(
    model: nn.Module, optimizer: torch.optim.Optimizer, frozen: bool, lr_mult: float
) -> None:
    """Freeze a pretrained encoder (learning rate 0, so no optimiser moves its weights, Adam,
    AdamW and SGD alike, and BatchNorm layers that use and keep their running statistics), or
    give it ``lr_mult`` x the schedule's rate. Call after ``model.train()``; a model without an
    encoder is left alone."""
    encoder = getattr(model, "encoder", None)
    if encoder is None:
        return
    for group in optimizer.param_groups:
        if group.get("name") == "encoder":
            group["lr_mult"] = 0.0 if frozen else lr_mult
    if frozen:
        encoder.eval()


class Patience:
    """Counts validations since the best score; ``observe`` says when the patience has run out.

    Example:
        >>> patience = Patience(2)
        >>> [patience.observe(score) for score in (0.1, 0.3, 0.2, 0.25, 0.4)]
        [False, False, False, True, False]
    """

    def __init__(self, patience: int | None) -> None:
        self.patience = patience
        self.best: float | None = None
        self.wait = 0

    def observe(self, score: float) -> bool:
        """Record a score; True when ``patience`` validations in a row brought no improvement."""
        if self.best is None or score > self.best:
            self.best, self.wait = score, 0
            return False
        self.wait += 1
        return self.patience is not None and self.wait >= self.patience

    def reset_wait(self) -> None:
        self.wait = 0

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.wait = state["best"], state["wait"]


def build_schedule(
    optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int
) -> LRSchedule:
    """The schedule that ``config`` describes over ``total_steps`` optimiser steps."""
    return LRSchedule(
        optimizer,
        config.schedule,
        total_steps=total_steps,
        warmup_steps=config.warmup_iterations,
        poly_power=config.poly_power,
        min_lr=config.min_lr,
        plateau_factor=config.plateau_factor,
        plateau_patience=config.plateau_patience,
    )
