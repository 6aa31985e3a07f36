"""The number format, memory layout and CPU threads a run trains with.

``train.precision`` and ``train.channels_last`` name them, or say ``auto``. On a GPU, ``auto`` is
the rule of :func:`cityseg.runtime.precision.choose_precision` and channels_last. On a CPU the
fastest setting depends on the network and its input size as much as on the CPU, so ``auto``
there is measured: a few steps of each candidate on a copy of the run's network, batch and size,
the fastest kept and remembered per machine (:mod:`cityseg.runtime.tuning`). The candidates are
the rule's precision and float32 when ``precision`` is auto, channels_last and contiguous when
``channels_last`` is auto, and, when either is, all of torch's threads or one (one can win where
the cores are shared; the loader's workers are not part of the measured step). A
resumed run keeps the setting its checkpoint recorded instead of measuring again, and several
processes (``torchrun``) take the rule's, measured by none, so that every rank runs alike.
"""

from __future__ import annotations

import json
from typing import Any

import torch

from cityseg.config import Config, config_to_dict
from cityseg.runtime.normalize import Normalize, batch_to_device
from cityseg.runtime.precision import Precision, choose_precision
from cityseg.runtime.tuning import StepSetting, candidate_settings, fastest_setting
from cityseg.train import failures
from cityseg.train.build import build_model
from cityseg.train.losses import SegmentationLoss
from cityseg.train.schedules import build_optimizer


def choose_step_setting(
    config: Config,
    device: torch.device,
    batch: int,
    world_size: int = 1,
    resume_state: dict[str, Any] | None = None,
) -> tuple[StepSetting, str]:
    """The setting this run trains with, and a line saying how it was chosen ('' if given)."""
    cfg = config.train
    rule = choose_precision(cfg.precision, device).name
    precisions = [rule, "fp32"] if cfg.precision == "auto" else [rule]
    layouts = [True, False] if cfg.channels_last == "auto" else [bool(cfg.channels_last)]
    size = config.data.training_size
    measured = device.type == "cpu" and world_size == 1 and size is not None
    threads = torch.get_num_threads()
    auto = cfg.precision == "auto" or cfg.channels_last == "auto"
    counts = [threads, 1] if measured and auto and threads > 1 else [0]
    settings = candidate_settings(precisions, layouts, counts)
    if len(settings) == 1 or not measured:
        return settings[0], ""
    recorded = recorded_setting(resume_state, settings)
    if recorded is not None:
        return recorded, f"speed: {recorded.describe()}, as the run trained so far"
    model = json.dumps(config_to_dict(config)["model"], sort_keys=True)
    key = f"{model} | batch {batch} | {size[0]}x{size[1]} | {cfg.optimizer}"
    try:
        return fastest_setting(key, settings, lambda s: probe_step(config, device, s, batch, size))
    except torch.OutOfMemoryError:  # the run's own steps would run out too: the same advice
        raise failures.out_of_memory(batch, size, rule, device.type) from None
    finally:
        torch.set_num_threads(threads)  # the probes' thread counts were theirs only


def recorded_setting(
    state: dict[str, Any] | None, settings: list[StepSetting]
) -> StepSetting | None:
    """The setting a checkpoint trained with, if it is one of ``settings`` (checkpoints written
    before the layout was recorded trained channels_last, the default then)."""
    if not state or "precision" not in state:
        return None
    threads = state.get("threads", settings[0].threads)  # recorded since threads are measured
    setting = StepSetting(state["precision"], bool(state.get("channels_last", True)), threads)
    return setting if setting in settings else None


def probe_step(config: Config, device: torch.device, setting: StepSetting, batch: int, size):
    """One training step of a fresh copy of the run's network with ``setting``, on a random
    uint8 batch of the run's shape; the global random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model, _ = build_model(config.model, device, setting.channels_last, pretrained=False)
        optimizer = build_optimizer(model, config.train)
    model.train()
    precision = Precision(setting.precision, device)
    scaler = precision.grad_scaler()
    loss, classes = config.loss, config.model.num_classes
    criterion = SegmentationLoss(
        classes,
        class_weights=None if loss.class_weights in (None, "none") else [1.0] * classes,
        ohem_thresh=loss.ohem_thresh,
        ohem_min_kept=loss.ohem_min_kept,
        label_smoothing=loss.label_smoothing,
    ).to(device)
    norm = model.normalization
    normalize = Normalize(norm["mean"], norm["std"], setting.channels_last).to(device)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, *size, 3), dtype=torch.uint8, generator=generator)
    targets = torch.randint(0, classes, (batch, *size), dtype=torch.uint8, generator=generator)

    def step() -> None:
        if setting.threads and torch.get_num_threads() != setting.threads:
            torch.set_num_threads(setting.threads)
        with torch.random.fork_rng(devices=[]):  # dropout draws from the global generator
            x, y = batch_to_device(images, targets, normalize)
            with precision.autocast():
                logits = model(x)
            scaler.scale(criterion(logits, y)).backward()
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)

    return step
