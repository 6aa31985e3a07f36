"""The training loop: one process or many (torchrun), any device, exact resume.

Each epoch trains on the augmented training set, validates (confusion matrix summed over all
processes), writes one record to ``metrics.jsonl``/TensorBoard/``curves.png``, then
``checkpoint_last.pt`` and, when the validation mIoU improved, ``checkpoint_best.pt``. A checkpoint
holds every piece of state the next epoch depends on (weights, optimiser, schedule, scaler, early
stopping, counters, random generators), so a resumed run continues as if never stopped.

Example:
    >>> from cityseg.config import load_config
    >>> from cityseg.train.engine import train
    >>> config = load_config("configs/tiny.yaml", ["data.root=/data/pairs"])  # doctest: +SKIP
    >>> train(config, "runs/tiny")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cityseg.config import Config, save_config
from cityseg.data.loader import build_loaders, open_splits, set_epoch, to_device
from cityseg.errors import CheckpointError, ConfigError
from cityseg.labels import IGNORE_INDEX
from cityseg.train import checkpoint as ckpt
from cityseg.train.distributed import (
    DistInfo,
    all_reduce_sum,
    cleanup_distributed,
    print_main,
    setup_distributed,
    wrap_model,
)
from cityseg.train.history import RunHistory, format_summary
from cityseg.train.precision import (
    choose_device,
    choose_precision,
    configure_determinism,
    describe_runtime,
)
from cityseg.train.schedules import Patience, build_optimizer, build_schedule
from cityseg.train.setup import (
    batch_per_process,
    build_criterion,
    build_model,
    checkpoint_header,
    seed_everything,
)

LAST, BEST = "checkpoint_last.pt", "checkpoint_best.pt"


def train(config: Config, run_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train (or, with ``resume``, continue training) into ``run_dir``; return the last record."""
    info = setup_distributed()
    try:
        return Trainer(config, Path(run_dir), info, resume).fit()
    finally:
        cleanup_distributed()


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
        resume_state = self._prepare_run_dir(resume)
        seed_everything(cfg.seed + info.rank)
        self.device = choose_device(cfg.device, info.local_rank)
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

        self.model = build_model(config.model, self.device, cfg.channels_last)
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
            run_dir.mkdir(parents=True, exist_ok=True)
            save_config(config, run_dir / "config.yaml")
        self.history = RunHistory(run_dir, info.is_main, self.epoch, self.iteration)

    def _prepare_run_dir(self, resume: bool) -> dict[str, Any] | None:
        last = self.run_dir / LAST
        if resume:
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
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.stopper.load_state_dict(state["early_stopping"])
        self.epoch, self.iteration = state["epoch"], state["iteration"]
        ckpt.restore_rng_state(state["rng"])
        if self.info.rank:  # the checkpoint holds rank 0's generators: derive the others' own
            seed_everything(int(torch.randint(2**31, ())) + self.info.rank)

    def fit(self) -> dict[str, Any]:
        """Run the remaining epochs; return the last epoch's record."""
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
            set_epoch(self.train_loader, self.epoch)
            train_loss, images_per_s = self.train_one_epoch()
            final = self.epoch + 1 >= cfg.epochs or self.iteration >= self.total_steps
            scores = {}
            if self.val_loader is not None and ((self.epoch + 1) % cfg.val_every == 0 or final):
                scores = self.validate()
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
            print_main(info, format_summary(record, cfg.epochs, improved))
            self._save(record, improved)
            if stop:
                print_main(
                    info, f"early stopping: no better mIoU in {cfg.early_stopping} validations"
                )
                break
        self.history.close()
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
        from tqdm import tqdm

        cfg = self.config.train
        self.train_model.train()
        micro_steps = self.steps_per_epoch * cfg.accumulate
        show = self.info.is_main and cfg.progress
        bar = tqdm(
            total=self.steps_per_epoch,
            desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
            disable=not show,
            leave=False,
            dynamic_ncols=True,
        )
        loss_sum = torch.zeros(2, dtype=torch.float64, device=self.device)
        started, seen = time.perf_counter(), 0
        self.optimizer.zero_grad(set_to_none=True)
        for micro, (images, targets) in enumerate(self.train_loader):
            if micro >= micro_steps or self.iteration >= self.total_steps:
                break
            lr = self.schedule.set_step(self.iteration)
            step_now = (micro + 1) % cfg.accumulate == 0
            loss = self._forward_backward(images, targets, step_now)
            loss_sum[0] += loss.detach()
            loss_sum[1] += 1
            seen += images.shape[0] * self.info.world_size
            if step_now:
                self._optimizer_step()
                bar.update(1)
                if show:
                    rate = seen / (time.perf_counter() - started)
                    bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2e}", img_s=f"{rate:.1f}")
                if self.iteration % cfg.log_every == 0:
                    self.history.scalar("train/loss", loss.item(), self.iteration)
                    self.history.scalar("train/lr", lr, self.iteration)
        bar.close()
        images_per_s = seen / (time.perf_counter() - started)
        loss_sum = all_reduce_sum(loss_sum, self.info)
        return (loss_sum[0] / loss_sum[1].clamp(min=1)).item(), images_per_s

    def _forward_backward(self, images, targets, step_now: bool) -> torch.Tensor:
        images, targets = to_device(
            images, targets, self.device, *self._normalization(), self.config.train.channels_last
        )
        no_sync = self.info.enabled and not step_now
        with self.train_model.no_sync() if no_sync else contextlib.nullcontext():
            with self.precision.autocast():
                logits = self.train_model(images)
            loss = self.criterion(logits, targets)
            self.scaler.scale(loss / self.config.train.accumulate).backward()
        return loss

    def _optimizer_step(self) -> None:
        clip = self.config.train.clip_grad_norm
        if clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.iteration += 1

    @torch.no_grad()
    def validate(self) -> dict[str, Any]:
        """Validation loss (plain cross-entropy), pixel accuracy and mIoU over all processes."""
        from cityseg.evaluate.confusion import ConfusionMatrix
        from cityseg.evaluate.metrics import summarize

        self.model.eval()
        num_classes = self.config.model.num_classes
        confusion = ConfusionMatrix(num_classes, device=self.device)
        loss_sum = torch.zeros(2, dtype=torch.float64, device=self.device)
        for images, targets in self.val_loader:
            images, targets = to_device(
                images,
                targets,
                self.device,
                *self._normalization(),
                self.config.train.channels_last,
            )
            with self.precision.autocast():
                logits = self.model(images)
            targets = targets.long()
            loss = F.cross_entropy(
                logits.float(), targets, ignore_index=IGNORE_INDEX, reduction="sum"
            )
            loss_sum += torch.stack([loss.double(), (targets != IGNORE_INDEX).sum().double()])
            confusion.update(logits.argmax(1), targets)
        matrix = confusion.reduce().cpu().numpy()
        loss_sum = all_reduce_sum(loss_sum, self.info)
        metrics = summarize(matrix, checkpoint_header(self.config)["class_names"])
        val_loss = (loss_sum[0] / loss_sum[1].clamp(min=1)).item()
        return {"val_loss": val_loss, **metrics}

    def _normalization(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not hasattr(self, "_mean_std"):
            shape = (1, 3, 1, 1)
            mean = torch.tensor(ckpt.IMAGENET_MEAN, device=self.device).view(shape)
            std = torch.tensor(ckpt.IMAGENET_STD, device=self.device).view(shape)
            self._mean_std = (mean, std)
        return self._mean_std

    def _save(self, record: dict[str, Any], improved: bool) -> None:
        if not self.info.is_main:
            return
        state = {
            **checkpoint_header(self.config),
            "model_config": self.model.config,
            "model": self.model.state_dict(),
            "epoch": self.epoch,
            "iteration": self.iteration,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "early_stopping": self.stopper.state_dict(),
            "best_mean_iou": self.stopper.best,
            "class_weights": self.class_weights,
            "metrics": record,
            "world_size": self.info.world_size,
            "rng": ckpt.capture_rng_state(),
        }
        ckpt.save_checkpoint(self.run_dir / LAST, state)
        if improved:
            ckpt.save_checkpoint(self.run_dir / BEST, state)

    def _plan_line(self) -> str:
        cfg = self.config.train
        parameters = sum(p.numel() for p in self.model.parameters()) / 1e6
        return (
            f"model UNet widths {self.model.config['widths']} ({parameters:.2f} M parameters) | "
            f"batch {cfg.batch_size} = {self.info.world_size} process(es) x {self.batch_per_step} "
            f"x {cfg.accumulate} accumulation | {self.steps_per_epoch} steps/epoch, "
            f"{self.total_steps} in all | {cfg.optimizer} lr {cfg.lr:g}, {cfg.schedule} schedule"
        )
