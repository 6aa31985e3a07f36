"""The number format, memory layout and CPU threads a run trains with.

``train.precision`` and ``train.channels_last`` name them, or say ``auto``. On a GPU, ``auto`` is
the rule of :func:`cityseg.runtime.precision.choose_precision` and channels_last. On a CPU the
fastest setting depends on the network and its input size as much as on the CPU, so ``auto``
there is measured: a few steps of each candidate on a copy of the run's network, batch and size,
the fastest kept and remembered per machine (:mod:`cityseg.runtime.tuning`), at most 5% of the
run it serves: a run too short for the measurement to pay takes the rule's setting (the first
candidate: the rule's precision, channels_last, all threads), and a remembered setting the run's
own steps disagree with is measured again by the next run (:mod:`cityseg.runtime.step_check`).
``train.deterministic=true`` takes the rule's setting unmeasured: a rerun then trains with the
same setting, whatever the load of the machine. The candidates are
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
from cityseg.runtime import step_check
from cityseg.runtime.normalize import Normalize
from cityseg.runtime.precision import Precision, choose_precision
from cityseg.runtime.step_check import StepTimeCheck
from cityseg.runtime.tuning import StepSetting, candidate_settings, fastest_setting
from cityseg.train import failures
from cityseg.train.build import build_model
from cityseg.train.losses import SegmentationLoss
from cityseg.train.schedules import build_optimizer
from cityseg.train.step import TrainingStep


def choose_step_setting(
    config: Config,
    device: torch.device,
    batch: int,
    world_size: int = 1,
    resume_state: dict[str, Any] | None = None,
    planned_steps: int | None = None,
) -> tuple[StepSetting, str]:
    """The setting this run trains with, and a line saying how it was chosen ('' if given).

    ``planned_steps`` (epochs x steps per epoch, or ``train.max_iterations``) bounds what a
    measurement may cost (:func:`~cityseg.runtime.tuning.fastest_setting`); None: unbounded.
    """
    settings, measured = candidates(config, device, world_size)
    if len(settings) == 1 or not measured:
        return settings[0], ""
    recorded = recorded_setting(resume_state, settings)
    if recorded is not None:
        return recorded, f"speed: {recorded.describe()}, as the run trained so far"
    if config.train.deterministic:
        return settings[0], (
            f"speed: {settings[0].describe()}, the rule's, unmeasured: train.deterministic fixes it"
        )
    size, threads = config.data.training_size, torch.get_num_threads()
    try:
        return fastest_setting(
            speed_key(config, batch),
            settings,
            lambda s: probe_step(config, device, s, batch, size),
            planned_steps=planned_steps,
        )
    except torch.OutOfMemoryError:  # the run's own steps would run out too: the same advice
        rule = settings[0].precision
        raise failures.out_of_memory(batch, size, rule, device.type) from None
    finally:
        torch.set_num_threads(threads)  # the probes' thread counts were theirs only


def step_time_check(
    config: Config, device: torch.device, setting: StepSetting, batch: int, world_size: int = 1
) -> StepTimeCheck:
    """The check of this run's steps against the step measured for ``setting``
    (:mod:`cityseg.runtime.step_check`); one that checks nothing where the probe's step is not
    the run's: a compiled network, or several micro-batches a step (``train.accumulate``)."""
    settings, measured = candidates(config, device, world_size)
    cfg = config.train
    if not measured or cfg.compile or cfg.accumulate > 1 or cfg.deterministic:
        return StepTimeCheck()
    return step_check.step_time_check(speed_key(config, batch), settings, setting)


def candidates(
    config: Config, device: torch.device, world_size: int
) -> tuple[list[StepSetting], bool]:
    """The settings a run may train with, the rule's first, and whether they are measured (one
    process on a CPU, at a fixed training size)."""
    cfg = config.train
    rule = choose_precision(cfg.precision, device).name
    precisions = [rule, "fp32"] if cfg.precision == "auto" else [rule]
    layouts = [True, False] if cfg.channels_last == "auto" else [bool(cfg.channels_last)]
    measured = device.type == "cpu" and world_size == 1 and config.data.training_size is not None
    threads = torch.get_num_threads()
    auto = cfg.precision == "auto" or cfg.channels_last == "auto"
    counts = [threads, 1] if measured and auto and threads > 1 else [0]
    return candidate_settings(precisions, layouts, counts), measured


def speed_key(config: Config, batch: int) -> str:
    """What a measurement holds for besides the machine: the network, batch, size, optimiser."""
    model = json.dumps(config_to_dict(config)["model"], sort_keys=True)
    size = config.data.training_size
    return f"{model} | batch {batch} | {size[0]}x{size[1]} | {config.train.optimizer}"


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
    """The run's training step (:class:`~cityseg.train.step.TrainingStep`) on a fresh copy of its
    network with ``setting``, on a random uint8 batch of the run's shape; the global random state
    is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model, _ = build_model(config.model, device, setting.channels_last, pretrained=False)
        optimizer = build_optimizer(model, config.train)
    model.train()
    precision = Precision(setting.precision, device)
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
    training_step = TrainingStep(
        model,
        criterion,
        optimizer,
        precision.grad_scaler(),
        precision,
        normalize,
        config.train.clip_grad_norm,
    )
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, *size, 3), dtype=torch.uint8, generator=generator)
    targets = torch.randint(0, classes, (batch, *size), dtype=torch.uint8, generator=generator)

    def step() -> None:
        if setting.threads and torch.get_num_threads() != setting.threads:
            torch.set_num_threads(setting.threads)
        with torch.random.fork_rng(devices=[]):  # dropout draws from the global generator
            training_step(images, targets)

    return step
