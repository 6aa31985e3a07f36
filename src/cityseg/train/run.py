"""Everything a training run is made of, built once by :func:`build_run`.

The order is the user's: the run folder is checked, then the device, the data and the length of
the run (a wrong folder or too few images for a batch is a one-line error before seconds of
measuring the step setting), then the step setting, the network and what trains it, and last the
state of a resumed run. Only once every part of the configuration has been accepted is
``config.yaml`` written. :class:`~cityseg.train.engine.Trainer` runs what this builds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from cityseg.checkpoint.compatibility import check_resumable, precision_change
from cityseg.checkpoint.format import checkpoint_header
from cityseg.checkpoint.random_state import restore_for_rank, seed_everything
from cityseg.config import Config, config_to_dict
from cityseg.data.loader import Splits, build_loaders, open_splits
from cityseg.errors import ConfigError
from cityseg.faults import TrainingFaults
from cityseg.runtime.device import configure_determinism, resolve_device, use_device
from cityseg.runtime.normalize import Normalize
from cityseg.runtime.precision import Precision
from cityseg.runtime.step_check import StepTimeCheck
from cityseg.train.averaging import WeightAverage
from cityseg.train.build import batch_per_process, build_criterion, build_model, initialize_from
from cityseg.train.cursor import EpochCursor
from cityseg.train.distributed import DistInfo, print_main, wrap_model
from cityseg.train.history import RunHistory
from cityseg.train.run_folder import RunFolder
from cityseg.train.schedules import LRSchedule, Patience, build_optimizer, build_schedule
from cityseg.train.step import TrainingStep
from cityseg.train.step_setting import choose_step_setting, step_time_check


@dataclass
class Run:
    """What one training run holds, as :func:`build_run` built it."""

    config: Config
    info: DistInfo
    """This process's place in the job."""
    run_folder: RunFolder
    header: dict[str, Any]
    """The self-description every checkpoint starts with (format, classes, sizes, config)."""
    device: torch.device
    splits: Splits
    train_loader: DataLoader
    val_loader: DataLoader | None
    batch_per_step: int
    """Images per process and micro-step."""
    steps_per_epoch: int
    """Optimiser steps of an epoch."""
    total_steps: int
    """Optimiser steps of the whole run."""
    precision: Precision
    channels_last: bool
    threads: int
    """CPU threads the steps run on (0: torch's default)."""
    raw_model: nn.Module
    """The network itself, whose weights the optimiser, the average and the checkpoints hold."""
    model: nn.Module
    """What trains: ``raw_model``, or its DistributedDataParallel or compiled wrapper."""
    average: WeightAverage | None
    class_weights: list[float] | None
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    scaler: torch.amp.GradScaler
    stopper: Patience
    step: TrainingStep
    faults: TrainingFaults
    """The fault points of the robustness tests (the step's hooks and the loop's)."""
    cursor: EpochCursor
    """The position in the current epoch."""
    setting_note: str
    """How the step setting was chosen ('' when the configuration gave it)."""
    step_times: StepTimeCheck
    """The run's own steps against the step measured for its setting."""
    sync_bn_note: str | None
    """What became of ``train.sync_bn`` (None: nothing to say)."""
    epoch: int = 0
    """Completed epochs."""
    iteration: int = 0
    """Optimiser steps taken."""
    history: RunHistory = field(init=False)
    """metrics.jsonl, TensorBoard and curves.png (made last: after config.yaml is written)."""


def build_run(config: Config, run_dir: Path, info: DistInfo, resume: bool) -> Run:
    """Build the run of ``config`` into ``run_dir`` (resumed from its ``checkpoint_last.pt``
    when ``resume``), on this process of the job."""
    cfg = config.train
    run_folder = RunFolder(run_dir, info.is_main)
    resume_state, note = run_folder.prepare(resume)
    if note:
        print_main(info, note)

    # Where and how the network runs, and the data.
    seed_everything(cfg.seed + info.rank)
    device = resolve_device(
        cfg.device,
        option="train.device",
        local_rank=info.local_rank,
        local_processes=info.local_world_size,
    )
    use_device(device)  # before anything takes the current GPU (pinned memory)
    configure_determinism(cfg.deterministic, device)
    batch_per_step = batch_per_process(cfg.batch_size, cfg.accumulate, info.world_size)
    splits = open_splits(config.data, cfg.seed)
    train_loader, val_loader = build_loaders(
        splits,
        config.data,
        batch_per_step,
        cfg.seed,
        info.rank,
        info.world_size,
        pin_memory=device.type == "cuda",
        cpu=device.type == "cpu",
        run_dir=run_dir,
    )
    if val_loader is None and (cfg.schedule == "plateau" or cfg.early_stopping):
        raise ConfigError(
            "train.schedule=plateau and train.early_stopping need validation "
            "data; set data.val_split or data.val_fraction"
        )
    steps_per_epoch = len(train_loader) // cfg.accumulate
    if steps_per_epoch == 0:
        raise ConfigError(
            f"train.accumulate={cfg.accumulate} is more than the "
            f"{len(train_loader)} batches of an epoch; lower it"
        )
    total_steps = cfg.max_iterations or cfg.epochs * steps_per_epoch
    setting, setting_note = choose_step_setting(
        config, device, batch_per_step, info.world_size, resume_state, planned_steps=total_steps
    )
    precision = Precision(setting.precision, device)

    # The network and what trains it. ImageNet weights only for a fresh start: a resumed run
    # and one started from a checkpoint replace them all (no download in any process).
    fresh = resume_state is None
    raw_model, loaded = build_model(
        config.model, device, setting.channels_last, pretrained=fresh and not cfg.init_from
    )
    if loaded:
        print_main(info, loaded)
    if cfg.init_from and fresh:
        print_main(info, initialize_from(raw_model, cfg.init_from))
    norm = raw_model.normalization
    normalize = Normalize(norm["mean"], norm["std"], setting.channels_last).to(device)
    counts = getattr(train_loader.sampler, "counts", None)  # rare-class sampling's, if on
    criterion, class_weights = build_criterion(
        config, splits.train, info, device, resume_state, counts
    )
    optimizer = build_optimizer(raw_model, cfg)
    scaler = precision.grad_scaler()
    model, sync_bn_note = wrap_model(raw_model, device, info, cfg.sync_bn)
    if cfg.compile:
        model = torch.compile(model)
    training_faults = TrainingFaults()
    step = TrainingStep(
        model,
        criterion.to(device),
        optimizer,
        scaler,
        precision,
        normalize,
        cfg.clip_grad_norm,
        hooks=training_faults,
    )
    run = Run(
        config=config,
        info=info,
        run_folder=run_folder,
        header=checkpoint_header(config),
        device=device,
        splits=splits,
        train_loader=train_loader,
        val_loader=val_loader,
        batch_per_step=batch_per_step,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        precision=precision,
        channels_last=setting.channels_last,
        threads=setting.threads,
        raw_model=raw_model,
        model=model,
        average=WeightAverage(raw_model, cfg.ema_decay) if cfg.ema_decay else None,
        class_weights=class_weights,
        optimizer=optimizer,
        schedule=build_schedule(optimizer, cfg, total_steps),
        scaler=scaler,
        stopper=Patience(cfg.early_stopping),
        step=step,
        faults=training_faults,
        cursor=EpochCursor(info, device),
        setting_note=setting_note,
        step_times=step_time_check(config, device, setting, batch_per_step, info.world_size),
        sync_bn_note=sync_bn_note,
    )
    if resume_state is not None:
        load_run_state(run, resume_state)
    # Only now that every part of the configuration has been accepted:
    run_folder.write_config(config, raw_model, optimizer)
    run.history = RunHistory(run_dir, info.is_main, run.epoch, run.iteration)
    return run


def load_run_state(run: Run, state: dict[str, Any]) -> None:
    """Continue ``run`` from the checkpoint ``state`` (see :mod:`cityseg.checkpoint.format`)."""
    check_resumable(
        run.run_folder.last,
        state,
        run.raw_model,
        config_to_dict(run.config)["model"],
        run.header["class_names"],
    )
    run.raw_model.load_state_dict(state.get("trained_model", state["model"]))
    if run.average is not None:
        if "weight_average" in state:
            run.average.load_state_dict(state["weight_average"], state["model"])
        else:  # averaging switched on for the rest of the run: it starts here
            run.average.model.load_state_dict(run.raw_model.state_dict())
    run.optimizer.load_state_dict(state["optimizer"])
    run.schedule.load_state_dict(state["scheduler"])
    note = precision_change(state.get("precision"), run.precision.name, run.config.train.precision)
    if note:
        print_main(run.info, note)
    if run.scaler.is_enabled() and state.get("scaler"):  # else a fresh scaler (or none)
        run.scaler.load_state_dict(state["scaler"])
    run.stopper.load_state_dict(state["early_stopping"])
    run.epoch, run.iteration = state["epoch"], state["iteration"]
    restore_for_rank(state["rng"], run.info.rank)
    note = run.cursor.load(state.get("epoch_progress"))
    if note:
        print_main(run.info, note)
