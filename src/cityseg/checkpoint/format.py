"""What a cityseg checkpoint holds: the format tag, its keys, and the self-description it starts
with.

A checkpoint is a plain dict saved with ``torch.save`` and read with
``torch.load(weights_only=True)`` (so it holds only tensors, dicts, lists, strings and numbers).
It carries what ``evaluate``, ``predict`` and ``export`` need, and the whole training state for an
exact resume::

    format            "cityseg-checkpoint-v1"
    model_config      UNet constructor arguments (``model.config``)
    model             state_dict
    class_names       list of the class names, indexed by trainId
    palette           list of [r, g, b], indexed by trainId
    normalization     {"mean": [...], "std": [...]} applied to RGB in [0, 1]
    input_size        [H, W] the images were resized to in training (``data.size``); null
                      when they kept their own size
    crop_size         [H, W] of the random training crops (``data.crop``), or null
    config            the resolved training configuration (dict)
    epoch, iteration  completed epochs and optimiser steps
    precision         the number format the run trained in (fp32, bf16, fp16), resolved
    channels_last     the memory layout it trained in; threads: its CPU threads (0: torch's)
    world_size        the processes of the job that saved it
    optimizer, scheduler, scaler, early_stopping, class_weights, best_mean_iou, metrics, rng

With a weight average (``train.ema_decay``) ``model`` holds the average, ``trained_model`` the
trained weights and ``weight_average`` its counter. A checkpoint saved in the middle of an epoch
also holds ``epoch_progress`` (see :mod:`cityseg.train.cursor`). :func:`training_checkpoint` is
where a run's checkpoint is put together.
"""

from __future__ import annotations

from typing import Any

import torch

from cityseg.config import Config, config_to_dict
from cityseg.labels import CLASS_NAMES, PALETTE
from cityseg.model import model_normalization

FORMAT = "cityseg-checkpoint-v1"
TRAINING_KEYS = ("optimizer", "scheduler", "scaler", "rng")
"""Keys that ``load_model`` leaves out of ``meta`` (large, and only useful to resume)."""
INFERENCE_KEYS = (
    "format", "model_config", "class_names", "palette", "normalization", "input_size", "crop_size",
)  # fmt: skip
"""Keys an inference-only copy keeps (see :func:`cityseg.checkpoint.io.slim_checkpoint`)."""


def checkpoint_header(config: Config) -> dict[str, Any]:
    """The self-description of a checkpoint: format, classes, palette, normalisation, sizes."""
    num_classes = config.model.num_classes
    if num_classes == len(CLASS_NAMES):
        names, palette = list(CLASS_NAMES), PALETTE.tolist()
    else:
        names = [f"class_{index}" for index in range(num_classes)]
        palette = [
            [(index * 67) % 256, (index * 139) % 256, (index * 197) % 256]
            for index in range(num_classes)
        ]
    size, crop = config.data.size, config.data.crop
    return {
        "format": FORMAT,
        "class_names": names,
        "palette": palette,
        "normalization": model_normalization(config.model.model_kwargs()),
        "input_size": list(size) if size else None,
        "crop_size": list(crop) if crop else None,
        "config": config_to_dict(config),
    }


def training_checkpoint(
    header: dict[str, Any],
    network: torch.nn.Module,
    average: torch.nn.Module | None = None,
    *,
    epoch: int,
    iteration: int,
    optimizer: dict[str, Any],
    scheduler: dict[str, Any],
    scaler: dict[str, Any],
    precision: str,
    channels_last: bool,
    threads: int,
    early_stopping: dict[str, Any],
    best_mean_iou: float | None,
    class_weights: list[float] | None,
    metrics: dict[str, Any] | None,
    world_size: int,
    rng: dict[str, Any],
    weight_average: dict[str, Any] | None = None,
    epoch_progress: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A training run's checkpoint: ``header`` (:func:`checkpoint_header`), the network's
    constructor arguments and weights (with a weight ``average``: the average as ``model``, the
    trained weights as ``trained_model``), and the training state named by the keywords (the
    states of the optimiser, schedule, scaler and early stopping as their ``state_dict``)."""
    state = {
        **header,
        "model_config": network.config,
        "model": network.state_dict(),
        "epoch": epoch,
        "iteration": iteration,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "scaler": scaler,
        "precision": precision,
        "channels_last": channels_last,
        "threads": threads,
        "early_stopping": early_stopping,
        "best_mean_iou": best_mean_iou,
        "class_weights": class_weights,
        "metrics": metrics,
        "world_size": world_size,
        "rng": rng,
    }
    if average is not None:  # the average is the model; the trained weights resume
        state |= {
            "model": average.state_dict(),
            "trained_model": network.state_dict(),
            "weight_average": weight_average,
        }
    if epoch_progress is not None:
        state["epoch_progress"] = epoch_progress
    return state
