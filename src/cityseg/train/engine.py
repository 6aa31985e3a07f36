"""The training loop: one process or many (torchrun), any device, exact resume.

Each epoch trains on the augmented training set, validates (confusion matrix summed over all
processes), writes one record to ``metrics.jsonl``/TensorBoard/``curves.png``, then
``checkpoint_last.pt`` and, when the validation mIoU improved, ``checkpoint_best.pt``. A checkpoint
holds every piece of state the next epoch depends on (weights, optimiser, schedule, scaler, early
stopping, counters, random generators), so a resumed run continues as if never stopped.

The loop is short; around it stand the run folder (:mod:`cityseg.train.run_folder`: what is
resumed and saved), the mid-epoch cursor (:mod:`cityseg.train.cursor`), the progress bar
(:mod:`cityseg.train.progress`) and the failures (:mod:`cityseg.train.failures`). Ctrl-C, SIGTERM
or SIGHUP finish the current step and save a checkpoint of the middle of the epoch; a NaN or
infinite loss, float16 gradients that overflow step after step, running out of memory or of disk
stop the run with one line saying what to change, the last good checkpoint kept. A step the fp16
gradient scaler skips is not counted: the schedule follows the steps actually taken.

``model`` is what trains (wrapped in DistributedDataParallel and compiled when asked, as in
torchvision's references and nanoGPT); ``raw_model`` is the network itself, whose weights the
optimiser, the weight average and the checkpoints hold.

Example:
    >>> from cityseg.config import load_config
    >>> from cityseg.train.engine import train
    >>> config = load_config("configs/tiny.yaml", ["data.root=/data/pairs"])  # doctest: +SKIP
    >>> train(config, "runs/tiny")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from cityseg import faults
from cityseg.checkpoint.compatibility import check_resumable, precision_change
from cityseg.checkpoint.format import checkpoint_header
from cityseg.checkpoint.random_state import capture_rng_state, restore_rng_state
from cityseg.config import Config, config_to_dict
from cityseg.data.loader import BadBatch, build_loaders, open_splits, set_epoch
from cityseg.errors import ConfigError, DataError
from cityseg.runtime.device import (
    configure_determinism,
    describe_runtime,
    resolve_device,
    use_device,
)
from cityseg.runtime.normalize import Normalize, batch_to_device
from cityseg.runtime.precision import Precision
from cityseg.train import failures
from cityseg.train.averaging import WeightAverage
from cityseg.train.build import (
    batch_per_process,
    build_criterion,
    build_model,
    initialize_from,
    seed_everything,
)
from cityseg.train.cursor import EpochCursor
from cityseg.train.distributed import (
    DistInfo,
    all_reduce_sum,
    barrier,
    broadcast_buffers,
    cleanup_distributed,
    print_main,
    setup_distributed,
    wrap_model,
)
from cityseg.train.history import RunHistory, format_summary
from cityseg.train.interrupt import StopSignals
from cityseg.train.progress import EpochProgress
from cityseg.train.run_folder import RunFolder
from cityseg.train.run_lock import run_folder_lock
from cityseg.train.schedules import Patience, build_optimizer, build_schedule, set_encoder_frozen
from cityseg.train.step_setting import choose_step_setting
from cityseg.train.validation import validation_scores


def train(config: Config, run_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train (or, with ``resume``, continue training) into ``run_dir``; return the last record."""
    info = setup_distributed(config.train.device)
    faults.reset()
    try:
        # One writer per run folder: the main process holds its lock for the whole run.
        with run_folder_lock(Path(run_dir), info.is_main), StopSignals(info.is_main) as signals:
            record = Trainer(config, Path(run_dir), info, resume).fit(signals)
        barrier(info)  # every process leaves together, once rank 0 has saved
        return record
    except RuntimeError as error:
        if info.enabled and failures.is_peer_failure(error):
            raise failures.peer_failed(error, info.rank, Path(run_dir)) from None
        raise
    finally:
        cleanup_distributed()


class _StopNow(Exception):
    """Raised inside an epoch to unwind to ``fit`` when a stop was requested."""


@contextlib.contextmanager
def _buffers_kept(model: torch.nn.Module):
    """Every buffer of ``model`` (BatchNorm's running statistics and counts) as it was before."""
    kept = [buffer.clone() for buffer in model.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in zip(model.buffers(), kept, strict=True):
                buffer.copy_(value)


class Trainer:
    """Everything one training run holds; ``fit`` runs the epochs.

    Args:
        config: the resolved configuration.
        run_dir: the run folder (created; must not hold a run unless ``resume``).
        info: this process's place in a distributed job.
        resume: continue from ``run_dir/checkpoint_last.pt``.
    """

    def __init__(self, config: Config, run_dir: Path, info: DistInfo, resume: bool) -> None:
        cfg = config.train
        self.config, self.info = config, info
        self.header = checkpoint_header(config)  # format, classes, normalisation, sizes, config
        self.run_folder = RunFolder(run_dir, info.is_main)
        resume_state, note = self.run_folder.prepare(resume)
        if note:
            print_main(info, note)

        # Where and how the network runs.
        seed_everything(cfg.seed + info.rank)
        self.device = resolve_device(
            cfg.device,
            option="train.device",
            local_rank=info.local_rank,
            local_processes=info.local_world_size,
        )
        configure_determinism(cfg.deterministic, self.device)
        self.batch_per_step = batch_per_process(cfg.batch_size, cfg.accumulate, info.world_size)
        use_device(self.device)  # before anything takes the current GPU (pinned memory)
        # The data and the length of the run first: a wrong folder or too few images for a batch
        # is a one-line error before seconds of measuring the step setting.
        self.splits = open_splits(config.data, cfg.seed)
        self.train_loader, self.val_loader = build_loaders(
            self.splits,
            config.data,
            self.batch_per_step,
            cfg.seed,
            info.rank,
            info.world_size,
            pin_memory=self.device.type == "cuda",
            cpu=self.device.type == "cpu",
            run_dir=run_dir,
        )
        if self.val_loader is None and (cfg.schedule == "plateau" or cfg.early_stopping):
            raise ConfigError(
                "train.schedule=plateau and train.early_stopping need validation "
                "data; set data.val_split or data.val_fraction"
            )
        self.steps_per_epoch = len(self.train_loader) // cfg.accumulate
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"train.accumulate={cfg.accumulate} is more than the "
                f"{len(self.train_loader)} batches of an epoch; lower it"
            )
        self.micro_steps_per_epoch = self.steps_per_epoch * cfg.accumulate
        self.total_steps = cfg.max_iterations or cfg.epochs * self.steps_per_epoch
        setting, self.setting_note = choose_step_setting(
            config, self.device, self.batch_per_step, info.world_size, resume_state
        )
        self.precision = Precision(setting.precision, self.device)
        self.channels_last, self.threads = setting.channels_last, setting.threads
        self.threads_before = torch.get_num_threads()  # given back when fit returns

        # The network and what trains it. ImageNet weights only for a fresh start: a resumed run
        # and one started from a checkpoint replace them all (no download in any process).
        fresh = resume_state is None
        self.raw_model, loaded = build_model(
            config.model, self.device, self.channels_last, pretrained=fresh and not cfg.init_from
        )
        if loaded:
            print_main(info, loaded)
        if cfg.init_from and fresh:
            print_main(info, initialize_from(self.raw_model, cfg.init_from))
        norm = self.raw_model.normalization
        self.normalize = Normalize(norm["mean"], norm["std"], self.channels_last).to(self.device)
        self.average = WeightAverage(self.raw_model, cfg.ema_decay) if cfg.ema_decay else None
        self.criterion, self.class_weights = build_criterion(
            config, self.splits.train, info, self.device, resume_state
        )
        self.criterion.to(self.device)
        self.optimizer = build_optimizer(self.raw_model, cfg)
        self.schedule = build_schedule(self.optimizer, cfg, self.total_steps)
        self.scaler = self.precision.grad_scaler()
        self.stopper = Patience(cfg.early_stopping)
        self.model, self.sync_bn_note = wrap_model(self.raw_model, self.device, info, cfg.sync_bn)
        if cfg.compile:
            self.model = torch.compile(self.model)

        # Where the run is, and what the loop keeps between its steps.
        self.epoch = 0  # completed epochs
        self.iteration = 0  # optimiser steps taken
        self.cursor = EpochCursor(info, self.device)  # the position in the current epoch
        self.faults = faults.TrainingFaults()  # the fault points of the robustness tests
        self.signals: StopSignals | None = None  # SIGINT/SIGTERM/SIGHUP while fit runs
        self.skipped = 0  # unreadable samples skipped this epoch (data.skip_bad_samples)
        self.overflowed = 0  # fp16 steps skipped in a row by the gradient scaler
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=self.device)  # since the step
        self.last_loss: torch.Tensor | None = None  # of the last micro-batch that had images
        if resume_state is not None:
            self._load_state(resume_state)
        # Only now that every part of the configuration has been accepted:
        self.run_folder.write_config(config, self.raw_model, self.optimizer)
        self.history = RunHistory(run_dir, info.is_main, self.epoch, self.iteration)

    def _load_state(self, state: dict[str, Any]) -> None:
        check_resumable(
            self.run_folder.last,
            state,
            self.raw_model,
            config_to_dict(self.config)["model"],
            self.header["class_names"],
        )
        self.raw_model.load_state_dict(state.get("trained_model", state["model"]))
        if self.average is not None:
            if "weight_average" in state:
                self.average.load_state_dict(state["weight_average"], state["model"])
            else:  # averaging switched on for the rest of the run: it starts here
                self.average.model.load_state_dict(self.raw_model.state_dict())
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["scheduler"])
        note = precision_change(
            state.get("precision"), self.precision.name, self.config.train.precision
        )
        if note:
            print_main(self.info, note)
        if self.scaler.is_enabled() and state.get("scaler"):  # else a fresh scaler (or none)
            self.scaler.load_state_dict(state["scaler"])
        self.stopper.load_state_dict(state["early_stopping"])
        self.epoch, self.iteration = state["epoch"], state["iteration"]
        restore_rng_state(state["rng"])
        if self.info.rank:  # the checkpoint holds rank 0's generators: derive the others' own
            seed_everything(int(torch.randint(2**31, ())) + self.info.rank)
        note = self.cursor.load(state.get("epoch_progress"))
        if note:
            print_main(self.info, note)

    # --- the run ---------------------------------------------------------------------------

    def fit(self, signals: StopSignals | None = None) -> dict[str, Any]:
        """Run the remaining epochs; return the last epoch's record.

        ``signals`` (active while ``fit`` runs) asks for a checkpoint and a stop after the current
        step when SIGINT, SIGTERM or SIGHUP arrives.
        """
        self.signals = signals
        if signals is not None:
            signals.ready()  # (until now a signal stopped the start-up at once)
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            return self._run_epochs()
        except torch.OutOfMemoryError:
            crop = self.config.data.training_size
            where = self.device.type.upper() if self.device.type == "cuda" else self.device.type
            raise failures.out_of_memory(
                self.batch_per_step, crop, self.precision.name, where
            ) from None
        except _StopNow:
            self._save_interrupted()
        finally:
            self.history.close()
            torch.set_num_threads(self.threads_before)

    def _run_epochs(self) -> dict[str, Any]:
        cfg, info = self.config.train, self.info
        print_main(info, describe_runtime(self.precision, self.channels_last, info.world_size))
        if self.setting_note:
            print_main(info, self.setting_note)
        print_main(info, self.splits.description)
        if self.train_loader.sampler.note:
            print_main(info, self.train_loader.sampler.note)
        print_main(info, self._plan_line())
        if self.sync_bn_note:
            print_main(info, self.sync_bn_note)
        record: dict[str, Any] = {}
        if self.epoch >= cfg.epochs or self.iteration >= self.total_steps:
            print_main(
                info,
                f"nothing to do: the run has done {self.epoch} epochs and "
                f"{self.iteration} steps; raise train.epochs or train.max_iterations",
            )
        while self.epoch < cfg.epochs and self.iteration < self.total_steps:
            record = self.run_epoch()
            improved, stop = self._observe(record["mean_iou"])
            self.history.append(record)
            skipped = f" | skipped {self.skipped} unreadable samples" if self.skipped else ""
            print_main(info, format_summary(record, cfg.epochs, improved) + skipped)
            self._save(record, improved)
            if stop:
                print_main(
                    info, f"early stopping: no better mIoU in {cfg.early_stopping} validations"
                )
                break
        return record

    def run_epoch(self) -> dict[str, Any]:
        """Train one epoch, validate when due; return the epoch's record."""
        cfg = self.config.train
        started = time.perf_counter()
        self.skipped = 0
        set_epoch(self.train_loader, self.epoch)
        train_loss, images_per_s = self.train_one_epoch()
        final = self.epoch + 1 >= cfg.epochs or self.iteration >= self.total_steps
        scores = {}
        if self.val_loader is not None and ((self.epoch + 1) % cfg.val_every == 0 or final):
            self.cursor.mark_validation()
            scores = self.validate()
        self.cursor.end_epoch()
        self.epoch += 1
        return {
            "epoch": self.epoch,
            "iteration": self.iteration,
            "train_loss": train_loss,
            "val_loss": scores.get("val_loss"),
            "pixel_accuracy": scores.get("pixel_accuracy"),
            "mean_iou": scores.get("mean_iou"),
            "lr": self.optimizer.param_groups[0]["lr"],
            "time": round(time.perf_counter() - started, 3),
            "images_per_s": round(images_per_s, 2),
        }

    def _observe(self, mean_iou: float | None) -> tuple[bool, bool]:
        """(improved, stop) after a validation; (False, False) without one."""
        if mean_iou is None:
            return False, False
        previous_best = self.stopper.best
        self.schedule.observe(mean_iou)
        stop = self.stopper.observe(mean_iou)
        return previous_best is None or mean_iou > previous_best, stop

    # --- one epoch ---------------------------------------------------------------------------

    def train_one_epoch(self) -> tuple[float, float]:
        """One pass over the training set; returns (mean loss, images per second)."""
        cfg = self.config.train
        self._start_epoch()
        done = self.cursor.begin(self.train_loader, self.batch_per_step)
        progress = EpochProgress(
            self.steps_per_epoch,
            f"epoch {self.epoch + 1}/{cfg.epochs}",
            show=self.info.is_main and cfg.progress,
            done=done // cfg.accumulate,
        )
        batches = iter(self.train_loader)  # draws the workers' seed from the generator
        self.cursor.restore_random_state()
        for micro, batch in enumerate(batches, start=done):
            if micro >= self.micro_steps_per_epoch or self.iteration >= self.total_steps:
                break
            lr = self.schedule.set_step(self.iteration)
            step_now = (micro + 1) % cfg.accumulate == 0
            progress.count(self.micro_step(batch, step_now))
            if step_now:
                stop = self.step(lr)
                self.cursor.batches = micro + 1
                progress.step(self.last_loss, lr)
                self.faults.step()
                if stop:
                    raise _StopNow
        self.cursor.batches = self.micro_steps_per_epoch
        images_per_s = progress.finish()
        return self.cursor.mean_loss(), images_per_s

    def _start_epoch(self) -> None:
        cfg = self.config.train
        self.model.train()
        frozen = self.epoch < cfg.freeze_encoder_epochs
        set_encoder_frozen(self.raw_model, self.optimizer, frozen, cfg.encoder_lr_mult)
        self.nonfinite.zero_()
        self.last_loss = None
        self.optimizer.zero_grad(set_to_none=True)

    def micro_step(self, batch: Any, step_now: bool) -> int:
        """Forward and backward one batch; return its images over all processes."""
        batch = self._usable(batch)
        if batch is None:  # all unreadable: this process still takes part in the step
            self._blank_forward_backward(step_now)
            return 0
        images, targets = batch
        loss = self._forward_backward(images, targets, step_now)
        self.nonfinite |= ~torch.isfinite(loss.detach())
        self.cursor.add(loss)
        self.last_loss = loss
        return images.shape[0] * self.info.world_size

    def step(self, lr: float) -> bool:
        """The optimiser step that ends a group of micro-steps; return whether a stop was asked."""
        stop = self._check_step(lr)
        if self._optimizer_step() and self.last_loss is not None:
            if self.iteration % self.config.train.log_every == 0:
                self.history.scalar("train/loss", self.last_loss.item(), self.iteration)
                self.history.scalar("train/lr", lr, self.iteration)
        return stop

    # --- the pieces of a step ----------------------------------------------------------------

    def _usable(self, batch) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The readable part of a batch; a DataError naming the unreadable files, unless
        ``data.skip_bad_samples`` (then they are reported, counted and left out)."""
        if not isinstance(batch, BadBatch):
            return batch
        if not self.config.data.skip_bad_samples:
            raise DataError(
                *batch.problems,
                "(or set data.skip_bad_samples=true to skip unreadable samples)",
            )
        self.skipped += batch.skipped
        for problem in batch.problems:
            print(f"warning: skipped: {problem}", file=sys.stderr, flush=True)
        return batch.batch

    def _gradient_sync(self, step_now: bool) -> contextlib.AbstractContextManager:
        """DDP's gradient all-reduce only in the micro-step that ends an optimiser step."""
        if self.info.enabled and not step_now:
            return self.model.no_sync()
        return contextlib.nullcontext()

    def _forward_backward(self, images, targets, step_now: bool) -> torch.Tensor:
        images, targets = batch_to_device(images, targets, self.normalize)
        with self._gradient_sync(step_now):
            with self.precision.autocast():
                self.faults.forward()
                logits = self.model(images)
            loss = self.faults.loss(self.criterion(logits, targets))
            self.scaler.scale(loss / self.config.train.accumulate).backward()
        return loss

    def _blank_forward_backward(self, step_now: bool) -> None:
        """A micro-step of weight zero, for a process whose images were all unreadable: a forward
        and backward pass over a batch of no images, in training mode like the others' passes, so
        that the process makes every collective of their step (DDP's gradient all-reduce and
        SyncBatchNorm's statistics in both passes, which eval mode would skip: the others would
        wait for it until the distributed timeout). Its gradients are zero, it adds nothing to
        SyncBatchNorm's statistics, and its own BatchNorm statistics are kept as they were.
        It runs in float32, without autocast: SyncBatchNorm gathers the statistics of an empty
        batch in its input's type, and the others' statistics are float32 whatever the autocast
        type (an all-gather of bf16 against float32 fails, or mixes garbage on NCCL)."""
        size = int(getattr(self.raw_model, "min_size", 32))
        blank = torch.zeros(0, 3, size, size, device=self.device)
        if self.channels_last:
            blank = blank.contiguous(memory_format=torch.channels_last)
        with self._gradient_sync(step_now), _buffers_kept(self.raw_model):
            logits = self.model(blank)
            self.scaler.scale(logits.float().sum() * 0.0).backward()

    def _check_step(self, lr: float) -> bool:
        """Before an optimiser step: raise if a loss of the step was not finite on any process;
        return whether a stop was requested (one synchronisation for both)."""
        requested = self.signals is not None and self.signals.requested
        flags = torch.stack(
            [self.nonfinite.float(), torch.tensor(float(requested), device=self.device)]
        )
        flags = all_reduce_sum(flags, self.info).tolist()
        self.nonfinite.zero_()
        if flags[0]:
            raise failures.diverged(
                self.last_loss.item() if self.last_loss is not None else float("nan"),
                self.iteration + 1,
                self.epoch + 1,
                lr,
                self.precision.name,
                self.run_folder.last_checkpoint_note(),
            )
        return bool(flags[1])

    def _optimizer_step(self) -> bool:
        """Step (unless the fp16 gradient scaler found infinite gradients and skipped it: then
        neither the step count nor the schedule moves); return whether it stepped."""
        clip = self.config.train.clip_grad_norm
        if clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), clip)
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if scale is not None and self.scaler.get_scale() < scale:  # lowered: the step was skipped
            self.overflowed += 1
            if self.scaler.get_scale() < failures.MIN_GRAD_SCALE:
                raise failures.gradients_overflow(
                    self.scaler.get_scale(),
                    self.overflowed,
                    self.iteration,
                    self.epoch + 1,
                    self.config.train.lr,
                    self.run_folder.last_checkpoint_note(),
                )
            return False
        self.overflowed = 0
        self.iteration += 1
        if self.average is not None:
            self.average.update(self.raw_model)
        return True

    # --- validation --------------------------------------------------------------------------

    def validate(self) -> dict[str, Any]:
        """Validation loss (plain cross-entropy), pixel accuracy and mIoU over all processes, of the
        weight average when ``train.ema_decay`` is set."""
        model = self.raw_model if self.average is None else self.average.model
        model.eval()
        broadcast_buffers(model, self.info)  # every process validates the model it saves
        return validation_scores(
            model,
            self._validation_batches(),
            self.normalize,
            self.precision,
            self.header["class_names"],
            self.info,
        )

    def _validation_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in self.val_loader:
            self.faults.validation_batch()
            if not self.info.enabled and self.signals is not None and self.signals.requested:
                raise _StopNow  # (several processes stop at their next training step instead)
            batch = self._usable(batch)
            if batch is not None:
                yield batch

    # --- checkpoints -------------------------------------------------------------------------

    def state_dict(self, record: dict[str, Any] | None) -> dict[str, Any]:
        """The checkpoint of the run as it stands (see :mod:`cityseg.checkpoint.format`)."""
        averaging = {}
        if self.average is not None:  # the average is the model; the trained weights resume
            averaging = {
                "model": self.average.model.state_dict(),
                "trained_model": self.raw_model.state_dict(),
                "weight_average": self.average.state_dict(),
            }
        return {
            **self.header,
            "model_config": self.raw_model.config,
            "model": self.raw_model.state_dict(),
            "epoch": self.epoch,
            "iteration": self.iteration,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "precision": self.precision.name,
            "channels_last": self.channels_last,
            "threads": self.threads,
            "early_stopping": self.stopper.state_dict(),
            "best_mean_iou": self.stopper.best,
            "class_weights": self.class_weights,
            "metrics": record,
            "world_size": self.info.world_size,
            "rng": capture_rng_state(),
        } | averaging

    def _save(self, record: dict[str, Any] | None, improved: bool, **extra: Any) -> None:
        if self.info.is_main:
            self.run_folder.save(self.state_dict(record) | extra, best=improved)

    def _save_interrupted(self) -> None:
        """Save the middle of the epoch (after the last whole step) and stop."""
        progress = self.cursor.position()
        record = self.history.records[-1] if self.history.records else None
        self._save(record, False, epoch_progress=progress, rng=progress["rng"])
        barrier(self.info)  # no process exits (and gets the job torn down) before the save
        where = "validation" if progress["validating"] else f"step {self.iteration}"
        signum = self.signals.signum if self.signals is not None else None
        raise self.run_folder.stop_after_save(signum, self.epoch + 1, where)

    # --- what is printed ---------------------------------------------------------------------

    def _plan_line(self) -> str:
        cfg = self.config.train
        config = self.raw_model.config
        widths = config.get("widths") or config.get("decoder_widths")
        parameters = sum(p.numel() for p in self.raw_model.parameters()) / 1e6
        return (
            f"model {self.raw_model.describe()} widths {widths} ({parameters:.2f} M parameters) | "
            f"batch {cfg.batch_size} = {self.info.world_size} process(es) x {self.batch_per_step} "
            f"x {cfg.accumulate} accumulation | {self.steps_per_epoch} steps/epoch, "
            f"{self.total_steps} in all | {cfg.optimizer} lr {cfg.lr:g}, {cfg.schedule} schedule"
        )
