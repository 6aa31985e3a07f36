"""The tiny training configuration of the tests, and the overrides of the robustness runs."""

from __future__ import annotations

from pathlib import Path

from cityseg.config import Config, load_config


def tiny_config(root: Path, *overrides: str) -> Config:
    """A small fast CPU configuration over ``root``: 8-channel U-Net of depth 2, 64x128 images."""
    return load_config(
        None,
        [
            f"data.root={root}",
            "data.format=cityscapes",
            "data.size=[64, 128]",
            "data.scale=[0.8, 1.2]",
            "data.workers=0",
            "model.base_width=8",
            "model.depth=2",
            "train.epochs=2",
            "train.batch_size=4",
            "train.lr=0.01",
            "train.device=cpu",
            "train.precision=fp32",
            "train.progress=false",
            "train.deterministic=true",
            *overrides,
        ],
    )


TINY = (
    "data.format=cityscapes",
    "data.size=[32, 64]",
    "data.workers=0",
    "model.base_width=4",
    "model.depth=2",
    "model.dropout=0.1",
    "train.epochs=3",
    "train.max_iterations=12",
    "train.batch_size=2",
    "train.optimizer=adamw",
    "train.device=cpu",
    "train.precision=fp32",
    "train.progress=false",
    "train.deterministic=true",
)
"""A run of 3 epochs x 4 steps (8 training images, batch 2) with dropout and AdamW: every piece of
state (weights, moments, schedule, random generators, sampler) matters for an exact resume."""


def train_args(data: Path, out: Path, *overrides: str) -> list[str]:
    """`cityseg train` arguments of a ``TINY`` run over ``data`` into ``out``."""
    return ["train", "--out", str(out), f"data.root={data}", *TINY, *overrides]
