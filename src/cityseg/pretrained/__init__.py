"""Checkpoints shipped with cityseg, found by name: ``cityseg/pretrained/<name>.pt``.

Used by ``Segmenter.from_pretrained``, ``cityseg evaluate --pretrained`` and ``train.init_from``.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from cityseg.errors import CheckpointError


def pretrained_folder():
    return importlib.resources.files("cityseg") / "pretrained"


def available_pretrained() -> list[str]:
    """Names of the checkpoints shipped in ``cityseg/pretrained/<name>.pt``."""
    folder = pretrained_folder()
    if not folder.is_dir():
        return []
    return sorted(
        entry.name[: -len(".pt")] for entry in folder.iterdir() if entry.name.endswith(".pt")
    )


def pretrained_path(name: str) -> Path:
    """The file of the shipped checkpoint ``name``.

    Raises:
        CheckpointError: no such checkpoint; the message lists the available names.
    """
    resource = pretrained_folder() / f"{name}.pt"
    if not resource.is_file():
        names = ", ".join(available_pretrained()) or "none are installed with this cityseg"
        raise CheckpointError(
            f"pretrained model {name!r} not found in {pretrained_folder()}; available: {names}; "
            "or pass a checkpoint file instead"
        )
    return Path(str(resource))
