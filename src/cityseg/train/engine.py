"""The training loop: one process or many (torchrun), any device, exact resume.

Each epoch trains on the augmented training set, validates (confusion matrix summed over all
processes), writes one record to ``metrics.jsonl``/TensorBoard/``curves.png``, then
``checkpoint_last.pt`` and, when the validation mIoU improved, ``checkpoint_best.pt``. A checkpoint
holds every piece of state the next epoch depends on (weights, optimiser, schedule, scaler, early
stopping, counters, random generators), so a resumed run continues as if never stopped.

The loop is short and runs what :func:`~cityseg.train.run.build_run` built: the training step
(:mod:`cityseg.train.step`), with its guards around it (:mod:`cityseg.train.guards`), the run
folder (:mod:`cityseg.train.run_folder`: what is resumed and saved), the mid-epoch cursor
(:mod:`cityseg.train.cursor`), the progress bar (:mod:`cityseg.train.progress`) and the failures
(:mod:`cityseg.train.failures`). Ctrl-C, SIGTERM or SIGHUP finish the current step and save a
checkpoint of the middle of the epoch; a NaN or infinite loss, float16 gradients that overflow
step after step, running out of memory or of disk stop the run with one line saying what to
change, the last good checkpoint kept. A step the fp16 gradient scaler skips is not counted: the
schedule follows the steps actually taken.

The host reads nothing back from the device within a step: the losses stay there and are read
at the log intervals (``train.log_every``) and at the end of an epoch, where a non-finite one
stops the run, naming the first step it came in.

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
from cityseg.checkpoint.format import training_checkpoint
from cityseg.checkpoint.random_state import capture_rng_state
from cityseg.config import Config
from cityseg.data.loader import BadBatch, set_epoch
from cityseg.errors import DataError
from cityseg.runtime.device import describe_runtime
from cityseg.train import failures
from cityseg.train.distributed import (
    barrier,
    broadcast_buffers,
    cleanup_distributed,
    print_main,
    setup_distributed,
)
from cityseg.train.guards import LossWatch, SkippedSteps, StopVote, blank_forward_backward
from cityseg.train.history import format_summary
from cityseg.train.interrupt import StopSignals
from cityseg.train.progress import EpochProgress
from cityseg.train.run import Run, build_run
from cityseg.train.run_lock import run_folder_lock
from cityseg.train.schedules import set_encoder_frozen
from cityseg.train.validation import validation_scores

MAX_UNREAD_STEPS = 1000
"""The most optimiser steps whose losses stay unread (``train.log_every`` may be larger)."""


def train(config: Config, run_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train (or, with ``resume``, continue training) into ``run_dir``; return the last record."""
    info = setup_distributed(config.train.device)
    faults.reset()
    try:
        # One writer per run folder: the main process holds its lock for the whole run.
        with run_folder_lock(Path(run_dir), info.is_main), StopSignals(info.is_main) as signals:
            record = Trainer(build_run(config, Path(run_dir), info, resume)).fit(signals)
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


class Trainer:
    """Runs a training run built by :func:`~cityseg.train.run.build_run`; ``fit`` runs the epochs.

    Args:
        run: what the run is made of (configuration, data, network, optimiser, step, ...).
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        self.config, self.info = run.config, run.info
        self.epoch = run.epoch
        """Completed epochs (the checkpoint's, for a resumed run)."""
        self.iteration = run.iteration
        """Optimiser steps taken."""
        read_every = min(run.config.train.log_every, MAX_UNREAD_STEPS)
        self.losses = LossWatch(run.info, run.device, read_every)
        """The losses of the steps since they were last read (a non-finite one stops the run)."""
        self.skips = SkippedSteps(run.scaler)
        """The steps the fp16 gradient scaler skipped in a row."""
        self.stop_vote = StopVote(run.info, run.device)
        """Whether every process stops after a step."""
        self.signals: StopSignals | None = None
        """SIGINT/SIGTERM/SIGHUP while ``fit`` runs."""
        self.skipped = 0
        """Unreadable samples skipped this epoch (``data.skip_bad_samples``)."""

    # --- the run ---------------------------------------------------------------------------

    def fit(self, signals: StopSignals | None = None) -> dict[str, Any]:
        """Run the remaining epochs; return the last epoch's record.

        ``signals`` (active while ``fit`` runs) asks for a checkpoint and a stop after the current
        step when SIGINT, SIGTERM or SIGHUP arrives.
        """
        self.signals = signals
        if signals is not None:
            signals.ready()  # (until now a signal stopped the start-up at once)
        threads_before = torch.get_num_threads()  # given back when fit returns
        if self.run.threads:
            torch.set_num_threads(self.run.threads)
        try:
            return self._run_epochs()
        except torch.OutOfMemoryError:
            crop, device = self.config.data.training_size, self.run.device
            where = device.type.upper() if device.type == "cuda" else device.type
            raise failures.out_of_memory(
                self.run.batch_per_step, crop, self.run.precision.name, where
            ) from None
        except _StopNow:
            self._save_interrupted()
        finally:
            self.run.history.close()
            torch.set_num_threads(threads_before)

    def _run_epochs(self) -> dict[str, Any]:
        cfg, info = self.config.train, self.info
        self.on_train_start()
        record: dict[str, Any] = {}
        while self.epoch < cfg.epochs and self.iteration < self.run.total_steps:
            record = self.run_epoch()
            improved, stop = self._observe(record["mean_iou"])
            self.on_epoch_end(record, improved)
            if stop:
                print_main(
                    info, f"early stopping: no better mIoU in {cfg.early_stopping} validations"
                )
                break
        return record

    def on_train_start(self) -> None:
        """Say what runs: the runtime, the data, the plan of the run."""
        run, info = self.run, self.info
        print_main(info, describe_runtime(run.precision, run.channels_last, info.world_size))
        if run.setting_note:
            print_main(info, run.setting_note)
        print_main(info, run.splits.description)
        if run.train_loader.sampler.note:
            print_main(info, run.train_loader.sampler.note)
        print_main(info, self._plan_line())
        if run.sync_bn_note:
            print_main(info, run.sync_bn_note)
        if self.epoch >= self.config.train.epochs or self.iteration >= run.total_steps:
            print_main(
                info,
                f"nothing to do: the run has done {self.epoch} epochs and "
                f"{self.iteration} steps; raise train.epochs or train.max_iterations",
            )

    def on_epoch_end(self, record: dict[str, Any], improved: bool) -> None:
        """Record the epoch, say how it went, save its checkpoint."""
        self.run.history.append(record)
        skipped = f" | skipped {self.skipped} unreadable samples" if self.skipped else ""
        summary = format_summary(record, self.config.train.epochs, improved)
        print_main(self.info, summary + skipped)
        self._save(record, improved)

    def run_epoch(self) -> dict[str, Any]:
        """Train one epoch, validate when due; return the epoch's record."""
        cfg, run = self.config.train, self.run
        started = time.perf_counter()
        self.skipped = 0
        set_epoch(run.train_loader, self.epoch)
        train_loss, images_per_s = self.train_one_epoch()
        final = self.epoch + 1 >= cfg.epochs or self.iteration >= run.total_steps
        scores = {}
        if run.val_loader is not None and ((self.epoch + 1) % cfg.val_every == 0 or final):
            run.cursor.mark_validation()
            scores = self.validate()
        run.cursor.end_epoch()
        self.epoch += 1
        return {
            "epoch": self.epoch,
            "iteration": self.iteration,
            "train_loss": train_loss,
            "val_loss": scores.get("val_loss"),
            "pixel_accuracy": scores.get("pixel_accuracy"),
            "mean_iou": scores.get("mean_iou"),
            "lr": run.optimizer.param_groups[0]["lr"],
            "time": round(time.perf_counter() - started, 3),
            "images_per_s": round(images_per_s, 2),
        }

    def _observe(self, mean_iou: float | None) -> tuple[bool, bool]:
        """(improved, stop) after a validation; (False, False) without one."""
        if mean_iou is None:
            return False, False
        previous_best = self.run.stopper.best
        self.run.schedule.observe(mean_iou)
        stop = self.run.stopper.observe(mean_iou)
        return previous_best is None or mean_iou > previous_best, stop

    # --- one epoch ---------------------------------------------------------------------------

    def train_one_epoch(self) -> tuple[float, float]:
        """One pass over the training set; returns (mean loss, images per second)."""
        cfg, run = self.config.train, self.run
        self._start_epoch()
        done = run.cursor.begin(run.train_loader, run.batch_per_step)
        progress = EpochProgress(
            run.steps_per_epoch,
            f"epoch {self.epoch + 1}/{cfg.epochs}",
            show=self.info.is_main and cfg.progress,
            done=done // cfg.accumulate,
        )
        micro_steps = run.steps_per_epoch * cfg.accumulate
        batches = run.step_times.timed(iter(run.train_loader))  # draws the workers' seed now
        run.cursor.restore_random_state()
        for micro, batch in enumerate(batches, start=done):
            if micro >= micro_steps or self.iteration >= run.total_steps:
                break
            lr = run.schedule.set_step(self.iteration)
            step_now = (micro + 1) % cfg.accumulate == 0
            progress.count(self.micro_step(batch, step_now))
            if step_now:
                stepped, stop = self.step(lr)
                run.cursor.batches = micro + 1
                progress.step()
                if stepped and self.iteration % cfg.log_every == 0:
                    self.on_log_interval(lr, progress)
                elif self.losses.due():
                    self._read_losses()
                run.faults.step()
                if stop:
                    raise _StopNow
        run.cursor.batches = micro_steps
        images_per_s = progress.finish()
        self._read_losses()  # before validation and the save: the steps of the epoch were sound
        if self.stop_vote.flush():
            raise _StopNow
        return run.cursor.mean_loss(), images_per_s

    def _start_epoch(self) -> None:
        cfg, run = self.config.train, self.run
        run.model.train()
        frozen = self.epoch < cfg.freeze_encoder_epochs
        set_encoder_frozen(run.raw_model, run.optimizer, frozen, cfg.encoder_lr_mult)
        self.losses.new_epoch()
        run.optimizer.zero_grad(set_to_none=True)

    def micro_step(self, batch: Any, step_now: bool) -> int:
        """Forward and backward one batch; return its images over all processes."""
        run = self.run
        batch = self._usable(batch)
        with self._gradient_sync(step_now):
            if batch is None:  # all unreadable: this process still takes part in the step
                blank_forward_backward(run.model, run.raw_model, run.scaler, run.channels_last)
                return 0
            images, targets = batch
            loss = run.step.forward_backward(images, targets, self.config.train.accumulate)
        self.losses.micro_step(loss)
        run.cursor.add(loss)
        return images.shape[0] * self.info.world_size

    def step(self, lr: float) -> tuple[bool, bool]:
        """The optimiser step that ends a group of micro-steps; return whether it was taken (the
        fp16 scaler skips steps whose gradients are not finite) and whether to stop after it."""
        run = self.run
        stop = self.stop_vote.after_step(self.signals is not None and self.signals.requested)
        self.losses.step(self.iteration + 1, self.epoch + 1, lr)
        if self.skips.take(run.step.optimizer_step):
            self.iteration += 1
            if run.average is not None:
                run.average.update(run.raw_model)
            return True, stop
        if run.scaler.get_scale() < failures.MIN_GRAD_SCALE:
            self._read_losses()  # a non-finite loss, the likelier cause, is said first
            raise failures.gradients_overflow(
                run.scaler.get_scale(),
                self.skips.in_a_row,
                self.iteration,
                self.epoch + 1,
                self.config.train.lr,
                run.run_folder.last_checkpoint_note(),
            )
        return False, stop

    def on_log_interval(self, lr: float, progress: EpochProgress) -> None:
        """Every ``train.log_every`` steps: read the losses (raise if one was not finite), log
        the last one and show it."""
        self._read_losses()
        if self.losses.last is not None:
            loss = self.losses.last.item()
            self.run.history.scalar("train/loss", loss, self.iteration)
            self.run.history.scalar("train/lr", lr, self.iteration)
            progress.show_loss(loss, lr)

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
            return self.run.model.no_sync()
        return contextlib.nullcontext()

    def _read_losses(self) -> None:
        """Raise if a loss of the steps since the last read was not finite on any process."""
        found = self.losses.first_nonfinite()
        if found is not None:
            loss, step = found
            raise failures.diverged(
                loss,
                step.iteration,
                step.epoch,
                step.lr,
                self.run.precision.name,
                self.run.run_folder.last_checkpoint_note(),
            )

    # --- validation --------------------------------------------------------------------------

    def validate(self) -> dict[str, Any]:
        """Validation loss (plain cross-entropy), pixel accuracy and mIoU over all processes, of the
        weight average when ``train.ema_decay`` is set."""
        run = self.run
        model = run.raw_model if run.average is None else run.average.model
        model.eval()
        broadcast_buffers(model, self.info)  # every process validates the model it saves
        return validation_scores(
            model,
            self._validation_batches(),
            run.step.normalize,
            run.precision,
            run.header["class_names"],
            self.info,
        )

    def _validation_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in self.run.val_loader:
            self.run.faults.validation_batch()
            if not self.info.enabled and self.signals is not None and self.signals.requested:
                raise _StopNow  # (several processes stop at their next training step instead)
            batch = self._usable(batch)
            if batch is not None:
                yield batch

    # --- checkpoints -------------------------------------------------------------------------

    def checkpoint(
        self, record: dict[str, Any] | None, progress: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The checkpoint of the run as it stands (``progress``: the position in the middle of
        an epoch, see :mod:`cityseg.train.cursor`)."""
        run = self.run
        average = run.average
        return training_checkpoint(
            run.header,
            run.raw_model,
            average.model if average is not None else None,
            epoch=self.epoch,
            iteration=self.iteration,
            optimizer=run.optimizer.state_dict(),
            scheduler=run.schedule.state_dict(),
            scaler=run.scaler.state_dict(),
            precision=run.precision.name,
            channels_last=run.channels_last,
            threads=run.threads,
            early_stopping=run.stopper.state_dict(),
            best_mean_iou=run.stopper.best,
            class_weights=run.class_weights,
            metrics=record,
            world_size=self.info.world_size,
            rng=progress["rng"] if progress is not None else capture_rng_state(),
            weight_average=average.state_dict() if average is not None else None,
            epoch_progress=progress,
        )

    def _save(
        self, record: dict[str, Any] | None, improved: bool, progress: dict[str, Any] | None = None
    ) -> None:
        if self.info.is_main:
            self.run.run_folder.save(self.checkpoint(record, progress), best=improved)

    def _save_interrupted(self) -> None:
        """Save the middle of the epoch (after the last whole step) and stop."""
        self._read_losses()  # never a checkpoint of steps with a non-finite loss
        progress = self.run.cursor.position()
        records = self.run.history.records
        self._save(records[-1] if records else None, False, progress)
        barrier(self.info)  # no process exits (and gets the job torn down) before the save
        where = "validation" if progress["validating"] else f"step {self.iteration}"
        signum = self.signals.signum if self.signals is not None else None
        raise self.run.run_folder.stop_after_save(signum, self.epoch + 1, where)

    # --- what is printed ---------------------------------------------------------------------

    def _plan_line(self) -> str:
        cfg, run = self.config.train, self.run
        config = run.raw_model.config
        widths = config.get("widths") or config.get("decoder_widths")
        parameters = sum(p.numel() for p in run.raw_model.parameters()) / 1e6
        return (
            f"model {run.raw_model.describe()} widths {widths} ({parameters:.2f} M parameters) | "
            f"batch {cfg.batch_size} = {self.info.world_size} process(es) x {run.batch_per_step} "
            f"x {cfg.accumulate} accumulation | {run.steps_per_epoch} steps/epoch, "
            f"{run.total_steps} in all | {cfg.optimizer} lr {cfg.lr:g}, {cfg.schedule} schedule"
        )
