"""Checkpoints of tiny random networks, written as training writes them: the header comes from
:func:`cityseg.checkpoint.format.checkpoint_header` of a real configuration."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from cityseg.checkpoint.format import checkpoint_header
from cityseg.checkpoint.io import save_checkpoint
from cityseg.config import load_config
from cityseg.model import model_from_config


def save_tiny_checkpoint(
    path: Path,
    input_size: Sequence[int] = (64, 128),
    seed: int = 0,
    base_width: int = 8,
    depth: int = 3,
    *overrides: str,
) -> Path:
    """A random-init plain U-Net saved in the cityseg checkpoint format at ``path``.

    Args:
        path: the ``.pt`` file to write (its folder must exist).
        input_size: the (height, width) it was "trained" at.
        seed: the torch seed of the random weights.
        base_width: channels of the U-Net's first level.
        depth: levels of the U-Net.
        *overrides: further ``section.key=value`` settings of its configuration.
    """
    config = load_config(
        None,
        [
            f"model.base_width={base_width}",
            f"model.depth={depth}",
            f"data.size=[{input_size[0]}, {input_size[1]}]",
            *overrides,
        ],
    )
    torch.manual_seed(seed)
    model = model_from_config(config.model.model_kwargs())
    state = {
        **checkpoint_header(config),
        "model_config": model.config,
        "model": model.state_dict(),
        "epoch": 1,
        "iteration": 1,
    }
    save_checkpoint(path, state)
    return path
