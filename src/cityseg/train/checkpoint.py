"""Self-describing checkpoints: atomic writes, safe reads, random generator states.

A checkpoint is a plain dict saved with ``torch.save`` and read with
``torch.load(weights_only=True)`` (so it holds only tensors, dicts, lists, strings and numbers).
It carries what ``evaluate``, ``predict`` and ``export`` need, and the whole training state for an
exact resume::

    format            "cityseg-checkpoint-v1"
    model_config      UNet constructor arguments (``model.config``)
    model             state_dict
    class_names       list of the class names, indexed by trainId
    palette           list of [r, g, b], indexed by trainId
    normalization     {"mean": [...], "std": [...]} applied to RGB in [0, 1]
    input_size        [H, W] the network was trained at
    config            the resolved training configuration (dict)
    epoch, iteration  completed epochs and optimiser steps
    optimizer, scheduler, scaler, early_stopping, class_weights, best_mean_iou, metrics, rng

Example:
    >>> from cityseg.train.checkpoint import load_model
    >>> model, meta = load_model("runs/tiny/checkpoint_best.pt")  # doctest: +SKIP
    >>> meta["class_names"][:2], meta["input_size"]  # doctest: +SKIP
    (['road', 'sidewalk'], [128, 256])
"""

from __future__ import annotations

import os
import pickle
import random
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cityseg.errors import CheckpointError

FORMAT = "cityseg-checkpoint-v1"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TRAINING_KEYS = ("optimizer", "scheduler", "scaler", "rng")
"""Keys that ``load_model`` leaves out of ``meta`` (large, and only useful to resume)."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, flushed and
    fsynced, then renamed over ``path``. A crash leaves the previous file or the new one, whole."""
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~_current_umask())  # mkstemp made it private (0600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def _current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _fsync_folder(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a cityseg checkpoint (``weights_only=True``); CheckpointError if it is not one.

    A run folder stands for its ``checkpoint_best.pt`` (or ``checkpoint_last.pt``)."""
    path = Path(path)
    if path.is_dir():
        candidates = [path / "checkpoint_best.pt", path / "checkpoint_last.pt"]
        path = next((c for c in candidates if c.is_file()), candidates[0])
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; give a .pt file written by training")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError) as error:
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else "unreadable"
        raise CheckpointError(
            f"{path}: not a readable cityseg checkpoint ({reason}); use a checkpoint_*.pt file "
            "written by `cityseg train`"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"{path}: not a cityseg checkpoint (format {found!r}, expected {FORMAT!r}); "
            "use a checkpoint_*.pt file written by `cityseg train`"
        )
    return state


def load_model(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The trained UNet (in eval mode, on ``device``) and the checkpoint's description ``meta``
    (everything but the weights and the optimiser/scaler/random states)."""
    from cityseg.model import UNet

    state = load_checkpoint(path, device)
    try:
        model = UNet.from_config(state["model_config"])
        model.load_state_dict(state["model"])
    except (KeyError, ValueError, TypeError, RuntimeError) as error:
        reason = str(error).strip().splitlines()[0][:200]
        raise CheckpointError(
            f"{path}: the weights do not fit the stored model configuration ({reason}); "
            "the file is damaged or from another version"
        ) from None
    meta = {key: value for key, value in state.items() if key not in ("model", *TRAINING_KEYS)}
    return model.to(device).eval(), meta


def capture_rng_state() -> dict[str, Any]:
    """The states of the torch, CUDA, numpy (global) and python random generators, as plain data."""
    numpy_state = np.random.get_state(legacy=False)
    python_version, python_internal, python_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "bit_generator": numpy_state["bit_generator"],
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "python": [python_version, list(python_internal), python_gauss],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back the generator states saved by ``capture_rng_state``."""
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    numpy_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": numpy_state["bit_generator"],
            "state": {
                "key": numpy_state["key"].numpy().astype(np.uint32),
                "pos": numpy_state["pos"],
            },
            "has_gauss": numpy_state["has_gauss"],
            "gauss": numpy_state["gauss"],
        }
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
