"""Pretrained models found by name: a checkpoint shipped with cityseg
(``cityseg/pretrained/<name>.pt``) or a model on the Hugging Face Hub (``hf:USER/NAME[@REVISION]``,
see :mod:`cityseg.pretrained.hub`).

Used by ``Segmenter.from_pretrained``, ``cityseg evaluate --pretrained`` and ``train.init_from``.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from cityseg.errors import CheckpointError
from cityseg.pretrained.hub import download_hub_model, is_hub_name


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
    """The file of the shipped checkpoint ``name``, or for ``hf:USER/NAME[@REVISION]`` the cached
    folder of the Hub model (``config.json`` and ``model.safetensors``, which every checkpoint
    reader accepts in place of a ``.pt`` file).

    Raises:
        CheckpointError: no such checkpoint; the message lists the available names.
        ConfigError: a malformed Hub name, or huggingface_hub is not installed.
    """
    if is_hub_name(name):
        return download_hub_model(name)
    resource = pretrained_folder() / f"{name}.pt"
    if not resource.is_file():
        names = ", ".join(available_pretrained()) or "none are installed with this cityseg"
        raise CheckpointError(
            f"pretrained model {name!r} not found in {pretrained_folder()}; available: {names}; "
            "hf:USER/NAME for a model on the Hugging Face Hub; or pass a checkpoint file instead"
        )
    return Path(str(resource))
