"""Why a training run stops before its end, each said in one line with the fix: a diverging loss,
float16 gradients that keep overflowing, running out of memory, another process of the job that
stopped. (A run folder that cannot be written or a full disk: see :mod:`cityseg.train.run_folder`.)
"""

from __future__ import annotations

from pathlib import Path

import torch.distributed as dist

from cityseg.errors import UserError


class TrainingFailed(UserError):
    """The run cannot go on (divergence, out of memory, full disk); the last checkpoint is kept."""


def diverged(
    value: float, iteration: int, epoch: int, lr: float, precision: str, previous: str
) -> TrainingFailed:
    """The error for a loss that became NaN or infinite at optimiser step ``iteration``."""
    fixes = [
        f"lower train.lr (now {lr:g}, e.g. train.lr={lr / 10:g})",
        "set train.clip_grad_norm=1",
    ]
    if precision != "fp32":
        fixes.append(f"train in float32 (train.precision=fp32, now {precision})")
    return TrainingFailed(
        f"training diverged: the loss is {value} at step {iteration} (epoch {epoch}); "
        f"stopped without saving; {previous}; likely fixes: {', '.join(fixes)}"
    )


MIN_GRAD_SCALE = 1.0
"""A float16 gradient scale below this means the gradients overflow even unscaled: the scaler is
skipping every step (each skip halves the scale), and the run has stopped learning."""


def gradients_overflow(
    scale: float, skipped: int, iteration: int, epoch: int, lr: float, previous: str
) -> TrainingFailed:
    """The error for float16 gradients that stay infinite or NaN, step after step."""
    return TrainingFailed(
        f"training stalled: the float16 gradients stayed infinite or NaN, so the gradient scaler "
        f"skipped {skipped} steps in a row and its scale fell to {scale:g} after step "
        f"{iteration} (epoch {epoch}); stopped without saving; {previous}; likely fixes: "
        f"train.precision=bf16 (or fp32), a lower train.lr (now {lr:g}), train.clip_grad_norm=1"
    )


def out_of_memory(
    batch: int, size: list[int] | None, precision: str, device: str
) -> TrainingFailed:
    """The error for ``torch.OutOfMemoryError`` in a training step, with what to change."""
    crop = f"{size[0]}x{size[1]}" if size else "native-size"
    fixes = ["a smaller train.batch_size with train.accumulate to keep the same effective batch"]
    fixes.append(f"a smaller data.crop (now {crop})")
    if precision == "fp32":
        fixes.append("train.precision=bf16 (or fp16 on older GPUs)")
    return TrainingFailed(
        f"out of {device} memory in a training step of {batch} {crop} images per process; "
        f"try {'; or '.join(fixes)}"
    )


_PEER_FAILURES = (
    "Connection closed by peer",
    "Connection reset by peer",
    "Broken pipe",
    "imed out",
)


def is_peer_failure(error: RuntimeError) -> bool:
    """Whether a collective failed because another process of the job stopped or hung."""
    return isinstance(error, dist.DistError) or any(s in str(error) for s in _PEER_FAILURES)


def peer_failed(error: RuntimeError, rank: int, run_dir: Path) -> TrainingFailed:
    """The one line a process prints when a peer's failure broke a collective."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return TrainingFailed(
        f"process {rank}: another process of this job stopped (its error is above; "
        f"{first[:160]}); fix it, then continue with `torchrun ... -m cityseg train --resume "
        f"{run_dir}`"
    )
