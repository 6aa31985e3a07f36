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
    optimizer, scheduler, scaler, early_stopping, class_weights, best_mean_iou, metrics, rng

With a weight average (``train.ema_decay``) ``model`` holds the average, ``trained_model`` the
trained weights and ``weight_average`` its counter. A checkpoint saved in the middle of an epoch
also holds ``epoch_progress`` (see :mod:`cityseg.train.cursor`).
"""

from __future__ import annotations

from typing import Any

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
