"""The training loop: one process or many (torchrun), any device, exact resume.

Each epoch trains on the augmented training set, validates (confusion matrix summed over all
processes), writes one record to ``metrics.jsonl``/TensorBoard/``curves.png``, then
``checkpoint_last.pt`` and, when the validation mIoU improved, ``checkpoint_best.pt``. A checkpoint
holds every piece of state the next epoch depends on (weights, optimiser, schedule, scaler, early
stopping, counters, random generators), so a resumed run continues as if never stopped.

When things go wrong: Ctrl-C or SIGTERM finish the current step and save a checkpoint of the
middle of the epoch (with the sampler position, so resuming is still exact); a NaN or infinite
loss, float16 gradients that overflow step after step, running out of memory or of disk stop the
run with one line saying what to change, the last good checkpoint kept; a checkpoint never exists
half-written (see :mod:`cityseg.train.guard`). A step the fp16 gradient scaler skips is not
counted: the schedule follows the steps actually taken.

Example:
    >>> from cityseg.config import load_config
    >>> from cityseg.train.engine import train
    >>> config = load_config("configs/tiny.yaml", ["data.root=/data/pairs"])  # doctest: +SKIP
    >>> train(config, "runs/tiny")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from cityseg import faults
from cityseg.checkpoint import compatibility, random_state
from cityseg.checkpoint import io as ckpt
from cityseg.checkpoint.format import checkpoint_header
from cityseg.config import Config, config_to_dict, save_config
from cityseg.data.loader import BadBatch, build_loaders, open_splits, set_epoch
from cityseg.errors import CheckpointError, ConfigError, DataError
from cityseg.labels import IGNORE_INDEX
from cityseg.metrics.confusion import ConfusionMatrix
from cityseg.metrics.summary import summarize
from cityseg.outputs import check_output_folder
from cityseg.runtime.device import configure_determinism, describe_runtime, resolve_device
from cityseg.runtime.normalize import Normalize, batch_to_device
from cityseg.runtime.precision import choose_precision
from cityseg.train import guard
from cityseg.train.averaging import WeightAverage
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
from cityseg.train.interrupt import StopSignals, TrainingInterrupted
from cityseg.train.schedules import (
    Patience,
    build_optimizer,
    build_schedule,
    set_encoder_frozen,
)
from cityseg.train.setup import (
    batch_per_process,
    build_criterion,
    build_model,
    initialize_from,
    seed_everything,
)

LAST, BEST = "checkpoint_last.pt", "checkpoint_best.pt"


def train(config: Config, run_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train (or, with ``resume``, continue training) into ``run_dir``; return the last record."""
    info = setup_distributed(config.train.device)
    faults.reset()
    try:
        with StopSignals(announce=info.is_main) as signals:
            record = Trainer(config, Path(run_dir), info, resume).fit(signals)
        barrier(info)  # every process leaves together, once rank 0 has saved
        return record
    except RuntimeError as error:
        if info.enabled and guard.is_peer_failure(error):
            raise guard.peer_failed(error, info.rank, Path(run_dir)) from None
        raise
    finally:
        cleanup_distributed()


class _StopNow(Exception):
    """Raised inside validation to unwind to ``fit`` when a stop was requested."""


@contextlib.contextmanager
def _inference_mode_layers(model: torch.nn.Module):
    """Every layer in eval mode (BatchNorm uses its statistics and leaves them alone, no
    dropout) for the duration, then each back in its own mode (a frozen encoder stays frozen)."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


class Trainer:
    """Everything one training run holds; ``fit`` runs the epochs.

    Args:
        config: the resolved configuration.
        run_dir: the run folder (created; must not hold a run unless ``resume``).
        info: this process's place in a distributed job.
        resume: continue from ``run_dir/checkpoint_last.pt``.
    """

    def __init__(self, config: Config, run_dir: Path, info: DistInfo, resume: bool) -> None:
        self.config, self.run_dir, self.info = config, run_dir, info
        cfg = config.train
        self.skipped = 0  # unreadable samples skipped this epoch (data.skip_bad_samples)
        self.progress: dict[str, Any] | None = None  # where a mid-epoch checkpoint stopped
        self.signals: StopSignals | None = None
        self.saved_at: tuple[int, int] | None = None  # (epoch, iteration) of the last checkpoint
        self.overflowed = 0  # fp16 steps skipped in a row by the gradient scaler (_optimizer_step)
        if info.is_main:
            check_output_folder(run_dir, "--out")
        resume_state = self._prepare_run_dir(resume)
        seed_everything(cfg.seed + info.rank)
        self.device = resolve_device(
            cfg.device,
            option="train.device",
            local_rank=info.local_rank,
            local_processes=info.local_world_size,
        )
        self.precision = choose_precision(cfg.precision, self.device)
        configure_determinism(cfg.deterministic, self.device)
        self.batch_per_step = batch_per_process(cfg.batch_size, cfg.accumulate, info.world_size)

        self.splits = open_splits(config.data, cfg.seed)
        self.train_loader, self.val_loader = build_loaders(
            self.splits,
            config.data,
            self.batch_per_step,
            cfg.seed,
            info.rank,
            info.world_size,
            pin_memory=self.device.type == "cuda",
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
        self.total_steps = cfg.max_iterations or cfg.epochs * self.steps_per_epoch

        self.model, loaded = build_model(
            config.model, self.device, cfg.channels_last, pretrained=resume_state is None
        )
        if loaded:
            print_main(info, loaded)
        if cfg.init_from and resume_state is None:
            print_main(info, initialize_from(self.model, cfg.init_from))
        norm = self.model.normalization
        self.normalize = Normalize(norm["mean"], norm["std"], cfg.channels_last).to(self.device)
        self.average = WeightAverage(self.model, cfg.ema_decay) if cfg.ema_decay else None
        self.criterion, self.class_weights = build_criterion(
            config, self.splits.train, info, self.device, resume_state
        )
        self.criterion.to(self.device)
        self.optimizer = build_optimizer(self.model, cfg)
        self.schedule = build_schedule(self.optimizer, cfg, self.total_steps)
        self.scaler = self.precision.grad_scaler()
        self.stopper = Patience(cfg.early_stopping)
        self.train_model, self.sync_bn_note = wrap_model(self.model, self.device, info, cfg.sync_bn)
        if cfg.compile:
            self.train_model = torch.compile(self.train_model)
        self.epoch = self.iteration = 0
        if resume_state is not None:
            self._load_state(resume_state)
        if info.is_main:  # only now that every part of the configuration has been accepted
            checkpoint_size = guard.checkpoint_bytes(self.model, self.optimizer)
            guard.check_free_space(run_dir, guard.CHECKPOINT_COPIES * checkpoint_size)
            run_dir.mkdir(parents=True, exist_ok=True)
            temporary = run_dir / ".config.yaml.tmp"
            save_config(config, temporary)
            os.replace(temporary, run_dir / "config.yaml")
        self.history = RunHistory(run_dir, info.is_main, self.epoch, self.iteration)

    def _prepare_run_dir(self, resume: bool) -> dict[str, Any] | None:
        last = self.run_dir / LAST
        if self.info.is_main and self.run_dir.is_dir():
            ckpt.remove_partial_writes(self.run_dir)  # left by a process killed while saving
        if resume and not last.is_file() and (self.run_dir / "config.yaml").is_file():
            print_main(
                self.info,
                f"{self.run_dir}: no checkpoint yet (the run stopped before its first save); "
                "starting it from the beginning",
            )
            state = None
        elif resume:
            if not last.is_file():
                raise CheckpointError(
                    f"{last}: not found; --resume needs a run folder with a "
                    "checkpoint_last.pt (start a new run with --out)"
                )
            state = ckpt.load_checkpoint(last)
        elif last.is_file():
            raise ConfigError(
                f"{self.run_dir}: already holds a run; continue it with "
                f"--resume {self.run_dir} or choose another --out"
            )
        else:
            state = None
        return state

    def _load_state(self, state: dict[str, Any]) -> None:
        compatibility.check_resumable(
            self.run_dir / LAST,
            state,
            self.model,
            config_to_dict(self.config)["model"],
            checkpoint_header(self.config)["class_names"],
        )
        self.model.load_state_dict(state.get("trained_model", state["model"]))
        if self.average is not None:
            if "weight_average" in state:
                self.average.load_state_dict(state["weight_average"], state["model"])
            else:  # averaging switched on for the rest of the run: it starts here
                self.average.model.load_state_dict(self.model.state_dict())
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["scheduler"])
        note = compatibility.precision_change(
            state.get("precision"), self.precision.name, self.config.train.precision
        )
        if note:
            print_main(self.info, note)
        if self.scaler.is_enabled() and state.get("scaler"):  # else a fresh scaler (or none)
            self.scaler.load_state_dict(state["scaler"])
        self.stopper.load_state_dict(state["early_stopping"])
        self.epoch, self.iteration = state["epoch"], state["iteration"]
        self.saved_at = (self.epoch, self.iteration)
        random_state.restore_rng_state(state["rng"])
        if self.info.rank:  # the checkpoint holds rank 0's generators: derive the others' own
            seed_everything(int(torch.randint(2**31, ())) + self.info.rank)
        self.progress = state.get("epoch_progress")
        if self.progress is not None and self.progress["world_size"] != self.info.world_size:
            self.progress = None  # the shards differ: redo the interrupted epoch from its start
            print_main(self.info, "the number of processes changed: redoing the interrupted epoch")

    def fit(self, signals: StopSignals | None = None) -> dict[str, Any]:
        """Run the remaining epochs; return the last epoch's record.

        ``signals`` (active while ``fit`` runs) asks for a checkpoint and a stop after the current
        step when SIGINT or SIGTERM arrives.
        """
        self.signals = signals
        try:
            return self._fit()
        except torch.OutOfMemoryError:
            cfg = self.config
            raise guard.out_of_memory(
                self.batch_per_step,
                cfg.data.crop or cfg.data.size,
                self.precision.name,
                self.device.type.upper() if self.device.type == "cuda" else self.device.type,
            ) from None
        except _StopNow:
            self._save_interrupted()
        finally:
            self.history.close()

    def _fit(self) -> dict[str, Any]:
        cfg, info = self.config.train, self.info
        print_main(info, describe_runtime(self.precision, cfg.channels_last, info.world_size))
        print_main(info, self.splits.description)
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
            started = time.perf_counter()
            self.skipped = 0
            set_epoch(self.train_loader, self.epoch)
            train_loss, images_per_s = self.train_one_epoch()
            final = self.epoch + 1 >= cfg.epochs or self.iteration >= self.total_steps
            scores = {}
            if self.val_loader is not None and ((self.epoch + 1) % cfg.val_every == 0 or final):
                self.progress = self._epoch_progress(validating=True)
                scores = self.validate()
            self.progress = None
            self.epoch += 1
            record = {
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

    def _observe(self, mean_iou: float | None) -> tuple[bool, bool]:
        """(improved, stop) after a validation; (False, False) without one."""
        if mean_iou is None:
            return False, False
        previous_best = self.stopper.best
        self.schedule.observe(mean_iou)
        stop = self.stopper.observe(mean_iou)
        return previous_best is None or mean_iou > previous_best, stop

    def train_one_epoch(self) -> tuple[float, float]:
        """One pass over the training set; returns (mean loss, images per second)."""
        cfg = self.config.train
        self.train_model.train()
        frozen = self.epoch < cfg.freeze_encoder_epochs
        set_encoder_frozen(self.model, self.optimizer, frozen, cfg.encoder_lr_mult)
        micro_steps = self.steps_per_epoch * cfg.accumulate
        show = self.info.is_main and cfg.progress
        bar = tqdm(
            total=self.steps_per_epoch,
            desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
            disable=not show,
            leave=False,
            dynamic_ncols=True,
        )
        self.loss_sum = torch.zeros(2, device=self.device)  # float32: MPS has no float64
        started, seen, self.batches_done = time.perf_counter(), 0, 0
        if self.progress is not None:  # resuming in the middle of this epoch
            self.batches_done = self.progress["batches"]
            self.train_loader.sampler.skip = self.batches_done * self.batch_per_step
            if self.info.is_main:  # (the saved sum is rank 0's; the others' partial sums are lost)
                self.loss_sum += self.progress["loss_sum"].to(self.device, torch.float32)
            bar.update(self.batches_done // cfg.accumulate)
        batches = iter(self.train_loader)  # draws the workers' seed from the generator
        if self.progress is not None:
            random_state.restore_rng_state(self.progress["rng"])
            if self.info.rank:  # rank 0's generators were saved: derive this rank's own
                seed_everything(int(torch.randint(2**31, ())) + self.info.rank)
            self.progress = None
        nonfinite = torch.zeros((), dtype=torch.bool, device=self.device)
        loss = None  # of the last micro-batch that had images
        self.optimizer.zero_grad(set_to_none=True)
        for micro, batch in enumerate(batches, start=self.batches_done):
            if micro >= micro_steps or self.iteration >= self.total_steps:
                break
            batch = self._usable(batch)
            lr = self.schedule.set_step(self.iteration)
            step_now = (micro + 1) % cfg.accumulate == 0
            if batch is None:  # all unreadable: this process still takes part in the step
                self._blank_forward_backward(step_now)
            else:
                images, targets = batch
                loss = self._forward_backward(images, targets, step_now)
                nonfinite |= ~torch.isfinite(loss.detach())
                self.loss_sum[0] += loss.detach()
                self.loss_sum[1] += 1
                seen += images.shape[0] * self.info.world_size
            if step_now:
                stop = self._check_step(nonfinite, loss, lr)
                stepped = self._optimizer_step()
                self.batches_done = micro + 1
                bar.update(1)
                if show and loss is not None:
                    rate = seen / (time.perf_counter() - started)
                    bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2e}", img_s=f"{rate:.1f}")
                if stepped and self.iteration % cfg.log_every == 0 and loss is not None:
                    self.history.scalar("train/loss", loss.item(), self.iteration)
                    self.history.scalar("train/lr", lr, self.iteration)
                faults.reached("step")
                if stop:
                    raise _StopNow
        self.batches_done = micro_steps
        bar.close()
        images_per_s = seen / max(time.perf_counter() - started, 1e-9)
        loss_sum = all_reduce_sum(self.loss_sum.clone(), self.info)
        return (loss_sum[0] / loss_sum[1].clamp(min=1)).item(), images_per_s

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

    def _check_step(self, nonfinite: torch.Tensor, loss: torch.Tensor | None, lr: float) -> bool:
        """Before an optimiser step: raise if a loss of the step was not finite on any process;
        return whether a stop was requested (one synchronisation for both)."""
        requested = self.signals is not None and self.signals.requested
        flags = torch.stack([nonfinite.float(), torch.tensor(float(requested), device=self.device)])
        flags = all_reduce_sum(flags, self.info).tolist()
        nonfinite.zero_()
        if flags[0]:
            raise guard.diverged(
                loss.item() if loss is not None else float("nan"),
                self.iteration + 1,
                self.epoch + 1,
                lr,
                self.precision.name,
                self._last_checkpoint_note(),
            )
        return bool(flags[1])

    def _epoch_progress(self, validating: bool = False) -> dict[str, Any]:
        """Where the current epoch is: batches consumed, their loss sum, the random state."""
        return {
            "batches": self.batches_done,
            "loss_sum": self.loss_sum.detach().cpu(),
            "rng": random_state.capture_rng_state(),
            "world_size": self.info.world_size,
            "validating": validating,
        }

    def _forward_backward(self, images, targets, step_now: bool) -> torch.Tensor:
        images, targets = batch_to_device(images, targets, self.normalize)
        no_sync = self.info.enabled and not step_now
        with self.train_model.no_sync() if no_sync else contextlib.nullcontext():
            with self.precision.autocast():
                if faults.reached("forward") == "oom":
                    raise torch.OutOfMemoryError("out of memory (CITYSEG_TEST_FAULT)")
                logits = self.train_model(images)
            loss = self.criterion(logits, targets)
            if faults.reached("loss") == "nan":
                loss = loss * float("nan")
            self.scaler.scale(loss / self.config.train.accumulate).backward()
        return loss

    def _blank_forward_backward(self, step_now: bool) -> None:
        """A micro-step of weight zero, for a process whose images were all unreadable: a forward
        and backward pass over a blank image (BatchNorm statistics left alone) whose gradients
        are zero, so that the process takes part in the step's collectives (DDP's gradient
        all-reduce) like the others instead of leaving them waiting for it."""
        size = int(getattr(self.model, "min_size", 32))
        blank = torch.zeros(1, 3, size, size, device=self.device)
        if self.config.train.channels_last:
            blank = blank.contiguous(memory_format=torch.channels_last)
        no_sync = self.info.enabled and not step_now
        with self.train_model.no_sync() if no_sync else contextlib.nullcontext():
            with _inference_mode_layers(self.model), self.precision.autocast():
                logits = self.train_model(blank)
            self.scaler.scale(logits.float().sum() * 0.0).backward()

    def _optimizer_step(self) -> bool:
        """Step (unless the fp16 gradient scaler found infinite gradients and skipped it: then
        neither the step count nor the schedule moves); return whether it stepped."""
        clip = self.config.train.clip_grad_norm
        if clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if scale is not None and self.scaler.get_scale() < scale:  # lowered: the step was skipped
            self.overflowed += 1
            if self.scaler.get_scale() < guard.MIN_GRAD_SCALE:
                raise guard.gradients_overflow(
                    self.scaler.get_scale(),
                    self.overflowed,
                    self.iteration,
                    self.epoch + 1,
                    self.config.train.lr,
                    self._last_checkpoint_note(),
                )
            return False
        self.overflowed = 0
        self.iteration += 1
        if self.average is not None:
            self.average.update(self.model)
        return True

    @torch.no_grad()
    def validate(self) -> dict[str, Any]:
        """Validation loss (plain cross-entropy), pixel accuracy and mIoU over all processes, of the
        weight average when ``train.ema_decay`` is set."""
        model = self.model if self.average is None else self.average.model
        model.eval()
        broadcast_buffers(model, self.info)  # every process validates the model it saves
        num_classes = self.config.model.num_classes
        confusion = ConfusionMatrix(num_classes, device=self.device)
        loss_sum = torch.zeros((), device=self.device)  # float32: MPS has no float64
        pixels = torch.zeros((), dtype=torch.int64, device=self.device)
        for batch in self.val_loader:
            faults.reached("validate")
            if not self.info.enabled and self.signals is not None and self.signals.requested:
                raise _StopNow  # (several processes stop at their next training step instead)
            batch = self._usable(batch)
            if batch is None:
                continue
            images, targets = batch
            images, targets = batch_to_device(images, targets, self.normalize)
            with self.precision.autocast():
                logits = model(images)
            targets = targets.long()
            loss = F.cross_entropy(
                logits.float(), targets, ignore_index=IGNORE_INDEX, reduction="sum"
            )
            loss_sum += loss
            pixels += (targets != IGNORE_INDEX).sum()
            confusion.update(logits.argmax(1), targets)
        matrix = confusion.reduce().cpu().numpy()
        loss_sum, pixels = all_reduce_sum(loss_sum, self.info), all_reduce_sum(pixels, self.info)
        metrics = summarize(matrix, checkpoint_header(self.config)["class_names"])
        val_loss = (loss_sum / pixels.clamp(min=1)).item()
        return {"val_loss": val_loss, **metrics}

    def _state(self, record: dict[str, Any] | None) -> dict[str, Any]:
        averaging = {}
        if self.average is not None:  # the average is the model; the trained weights resume
            averaging = {
                "model": self.average.model.state_dict(),
                "trained_model": self.model.state_dict(),
                "weight_average": self.average.state_dict(),
            }
        return {
            **checkpoint_header(self.config),
            "model_config": self.model.config,
            "model": self.model.state_dict(),
            "epoch": self.epoch,
            "iteration": self.iteration,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "precision": self.precision.name,
            "early_stopping": self.stopper.state_dict(),
            "best_mean_iou": self.stopper.best,
            "class_weights": self.class_weights,
            "metrics": record,
            "world_size": self.info.world_size,
            "rng": random_state.capture_rng_state(),
        } | averaging

    def _save(self, record: dict[str, Any], improved: bool, **extra: Any) -> None:
        if not self.info.is_main:
            return
        state = self._state(record) | extra
        for name in (LAST, BEST) if improved else (LAST,):
            try:
                ckpt.save_checkpoint(self.run_dir / name, state)
            except OSError as error:
                note = self._last_checkpoint_note()
                raise guard.save_failed(self.run_dir / name, error, note, self.run_dir) from None
            self.saved_at = (self.epoch, self.iteration)

    def _save_interrupted(self) -> None:
        """Save the middle of the epoch (after the last whole step) and stop."""
        progress = self.progress or self._epoch_progress()
        record = self.history.records[-1] if self.history.records else None
        self._save(record, False, epoch_progress=progress, rng=progress["rng"])
        barrier(self.info)  # no process exits (and gets the job torn down) before the save
        signum = self.signals.signum if self.signals and self.signals.signum else signal.SIGINT
        where = "validation" if progress["validating"] else f"step {self.iteration}"
        raise TrainingInterrupted(
            signum,
            f"stopped by {signal.Signals(signum).name} in epoch {self.epoch + 1} at {where}; "
            f"saved {self.run_dir / LAST}; continue with: cityseg train --resume {self.run_dir}",
        )

    def _last_checkpoint_note(self) -> str:
        if self.saved_at is None:
            return f"no checkpoint was saved yet in {self.run_dir}"
        epoch, iteration = self.saved_at
        return (
            f"the last good checkpoint, {self.run_dir / LAST} (epoch {epoch}, step {iteration}), "
            "is kept"
        )

    def _architecture(self) -> str:
        widths = self.model.config.get("widths") or self.model.config.get("decoder_widths")
        return f"{self.model.describe()} widths {widths}"

    def _plan_line(self) -> str:
        cfg = self.config.train
        parameters = sum(p.numel() for p in self.model.parameters()) / 1e6
        return (
            f"model {self._architecture()} ({parameters:.2f} M parameters) | "
            f"batch {cfg.batch_size} = {self.info.world_size} process(es) x {self.batch_per_step} "
            f"x {cfg.accumulate} accumulation | {self.steps_per_epoch} steps/epoch, "
            f"{self.total_steps} in all | {cfg.optimizer} lr {cfg.lr:g}, {cfg.schedule} schedule"
        )
