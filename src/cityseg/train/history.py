"""What a run leaves behind as it learns: ``metrics.jsonl``, TensorBoard events, ``curves.png``.

One record per epoch: ``epoch, iteration, train_loss, val_loss, pixel_accuracy, mean_iou, lr, time,
images_per_s`` (validation values are null in epochs without validation). Only the main process
keeps a history; on the others every method does nothing.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from cityseg import limits
from cityseg.errors import ConfigError
from cityseg.visualize.plots import plot_training_curves

METRICS_FILE = "metrics.jsonl"
CURVES_FILE = "curves.png"
MAX_METRICS_BYTES = 64 * 2**20
"""metrics.jsonl holds a line of about 300 bytes an epoch: 64 MiB is 200,000 epochs."""
CURVES_EVERY_S = 30.0
"""Between validations, curves.png is redrawn at most this often (a drawing is not free)."""


class RunHistory:
    """Per-epoch records of a run folder, mirrored to TensorBoard and drawn as ``curves.png``.

    Args:
        run_dir: the run folder.
        enabled: False on processes other than the main one.
        resume_epoch: when resuming, the epoch of the checkpoint: later records (written after it
            by a run that then crashed) are dropped, and TensorBoard events after its step purged.
        resume_iteration: the step of that checkpoint.
    """

    def __init__(
        self, run_dir: Path, enabled: bool = True, resume_epoch: int = 0, resume_iteration: int = 0
    ) -> None:
        self.enabled = enabled
        self.path = Path(run_dir) / METRICS_FILE
        self.curves_path = Path(run_dir) / CURVES_FILE
        self.records: list[dict[str, Any]] = []
        self.writer = None
        self.drawn_at: float | None = None  # time.monotonic() of the last drawing
        self.stale = False  # records not drawn yet
        if not enabled:
            return
        problem = limits.regular_file_problem(self.path, MAX_METRICS_BYTES)
        if problem is not None:  # a pipe would block the first append, a huge file the read
            raise ConfigError(
                f"{self.path}: {problem}; this run folder's history is damaged: move the file "
                "away and resume"
            )
        if self.path.is_file():
            lines = self.path.read_text().splitlines()
            self.records = [record for record in map(_parse, lines) if record is not None]
            self.records = [r for r in self.records if r["epoch"] <= resume_epoch]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in self.records))
        # Loaded here, on the main process only: tensorboard is slow to import.
        from torch.utils.tensorboard import SummaryWriter

        purge = resume_iteration + 1 if resume_iteration else None
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=purge)

    def scalar(self, tag: str, value: float, step: int) -> None:
        """A TensorBoard scalar (e.g. the training loss every few steps)."""
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step)

    def append(self, record: dict[str, Any]) -> None:
        """Add one epoch's record to metrics.jsonl and TensorBoard, and redraw curves.png after a
        validation, or when the last drawing is older than ``CURVES_EVERY_S``."""
        if not self.enabled:
            return
        self.records.append(record)
        with self.path.open("a") as file:
            file.write(json.dumps(record) + "\n")
        for key, value in record.items():
            if key not in ("epoch", "iteration") and _is_number(value):
                self.writer.add_scalar(f"epoch/{key}", value, record["iteration"])
        self.writer.flush()
        self.stale = True
        waited = self.drawn_at is None or time.monotonic() - self.drawn_at >= CURVES_EVERY_S
        if record.get("mean_iou") is not None or waited:
            self.draw()

    def draw(self) -> None:
        """Redraw curves.png; a picture that cannot be written (a full disk) is a warning, not
        the end of the run: the checkpoints and metrics.jsonl are what resume needs."""
        try:
            plot_curves(self.records, self.curves_path)
        except OSError as error:
            self.curves_path.with_name(f".{self.curves_path.stem}.tmp.png").unlink(missing_ok=True)
            print(
                f"warning: {self.curves_path}: not redrawn ({error.strerror or error}); "
                "training goes on",
                file=sys.stderr,
                flush=True,
            )
        self.drawn_at, self.stale = time.monotonic(), False

    def close(self) -> None:
        """Draw what is not drawn yet; close TensorBoard."""
        if self.stale:
            self.draw()
        if self.writer is not None:
            self.writer.close()


def _parse(line: str) -> dict[str, Any] | None:
    """A record, or None for an empty line or one cut short (a process killed while writing)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) and "epoch" in record else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def plot_curves(records: list[dict[str, Any]], path: Path) -> None:
    """Draw losses, validation mIoU and learning rate against epoch; ``path`` is replaced whole."""
    temporary = path.with_name(f".{path.stem}.tmp{path.suffix}")
    plot_training_curves(records, temporary)
    os.replace(temporary, path)


def format_summary(record: dict[str, Any], epochs: int, improved: bool) -> str:
    """The one-line summary of an epoch's record printed after each epoch."""

    def number(key: str, digits: int = 4) -> str:
        value = record.get(key)
        return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"

    return (
        f"epoch {record['epoch']}/{epochs} | step {record['iteration']} | "
        f"train loss {number('train_loss')} | val loss {number('val_loss')} | "
        f"mIoU {number('mean_iou')} | pixel acc {number('pixel_accuracy')} | "
        f"lr {record['lr']:.3g} | {record['images_per_s']:.1f} img/s | {record['time']:.1f} s"
        + (" | best" if improved else "")
    )
