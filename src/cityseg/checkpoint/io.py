"""Checkpoint files: atomic writes, safe reads, inference-only copies.

See :mod:`cityseg.checkpoint.format` for what a checkpoint holds.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from cityseg import faults, limits
from cityseg.checkpoint.format import FORMAT, INFERENCE_KEYS
from cityseg.checkpoint.integrity import nonfinite_tensor, zip_problem
from cityseg.checkpoint.model_folder import is_model_folder, read_model_folder
from cityseg.errors import CheckpointError


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, flushed and
    fsynced, then renamed over ``path``. A crash leaves the previous file or the new one, whole."""
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as file:
            try:
                torch.save(state, file)
            except RuntimeError as error:  # torch's writer says "unexpected pos" on a full disk
                raise _write_error(path, error) from None
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~_current_umask())  # mkstemp made it private (0600)
        faults.reached("save")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def _write_error(path: Path, error: RuntimeError) -> OSError:
    """The OSError behind a failed ``torch.save``: ENOSPC when the disk is (nearly) full."""
    full = shutil.disk_usage(path.parent).free < 64 * 2**20
    code = errno.ENOSPC if full else errno.EIO
    return OSError(code, os.strerror(code) + ("" if full else f" ({_last_line(error)})"))


def remove_partial_writes(folder: str | Path) -> list[Path]:
    """Delete the temporary files of checkpoint writes that never finished (a killed process);
    return them. The checkpoints themselves are never partial: they appear only by renaming."""
    partial = sorted(Path(folder).glob(".checkpoint_*.pt.*"))
    for path in partial:
        path.unlink(missing_ok=True)
    return partial


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


def checkpoint_file(path: str | Path) -> Path:
    """``path``, or for a run folder its ``checkpoint_best.pt`` (else ``checkpoint_last.pt``)."""
    path = Path(path)
    if path.is_dir():
        candidates = [path / "checkpoint_best.pt", path / "checkpoint_last.pt"]
        path = next((c for c in candidates if c.is_file()), candidates[0])
    return path


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a cityseg checkpoint (``weights_only=True``); CheckpointError if it is not one, or
    if it is damaged: a member whose bytes do not match the CRC-32 its zip stores, a truncated
    file, or a floating tensor holding NaN or infinite values.

    A run folder stands for its ``checkpoint_best.pt`` (or ``checkpoint_last.pt``); a model
    folder (``config.json`` and ``model.safetensors``, as on the Hugging Face Hub) is read as a
    checkpoint holding its inference keys (see :mod:`cityseg.checkpoint.model_folder`)."""
    if is_model_folder(path):
        return read_model_folder(path)
    path = checkpoint_file(path)
    problem = limits.regular_file_problem(path, limits.MAX_CHECKPOINT_BYTES)
    if problem is not None:
        raise CheckpointError(f"{path}: {problem}; give a .pt file written by training")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; give a .pt file written by training")
    try:
        damage = zip_problem(path)
    except OSError as error:
        raise CheckpointError(
            f"{path}: cannot be read ({error.strerror or error}); check the file's permissions"
        ) from None
    if damage is not None:
        raise _damaged(path, damage)
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except (MemoryError, torch.OutOfMemoryError):
        raise  # a readable file that does not fit: not a damaged one
    except Exception as error:  # noqa: BLE001 - whatever a damaged or foreign file raises
        unsafe = next((line for line in str(error).splitlines() if "GLOBAL" in line), None)
        if unsafe is not None:
            raise CheckpointError(
                f"{path}: refused: it holds Python objects other than tensors and plain data "
                f"({unsafe.strip()[:120]}), which could run code when loaded; use a "
                "checkpoint_*.pt written by `cityseg train`"
            ) from None
        raise CheckpointError(
            f"{path}: not a readable cityseg checkpoint ({_last_line(error)}); use a "
            "checkpoint_*.pt file written by `cityseg train`"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"{path}: not a cityseg checkpoint (format {found!r}, expected {FORMAT!r}); "
            "use a checkpoint_*.pt file written by `cityseg train`"
        )
    tensor = nonfinite_tensor(state)
    if tensor is not None:
        raise _damaged(path, f"{tensor} holds NaN or infinite values")
    return state


def _damaged(path: Path, reason: str) -> CheckpointError:
    return CheckpointError(
        f"{path}: damaged checkpoint ({reason}); copy it again from where it came from, or use "
        "another checkpoint of the run (checkpoint_last.pt or checkpoint_best.pt)"
    )


def _last_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    boilerplate = ("Weights only", "Check the", "Please")
    useful = [line for line in lines if not line.startswith(boilerplate)]
    return (useful or lines or ["unreadable"])[0][:120]


def slim_checkpoint(
    source: str | Path,
    destination: str | Path,
    dtype: torch.dtype = torch.float16,
    training: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write an inference-only copy of a checkpoint: the floating-point weights in ``dtype``
    (``load_model`` upcasts them to float32), no optimiser, schedule or random states.

    Keeps ``INFERENCE_KEYS``, the training ``config``, ``epoch``/``iteration`` and ``training``,
    a summary such as the validation scores. Returns the written dict."""
    state = load_checkpoint(source)
    weights = {
        name: tensor.to(dtype) if tensor.is_floating_point() else tensor
        for name, tensor in state["model"].items()
    }
    slim = {key: state[key] for key in INFERENCE_KEYS if key in state}
    slim |= {"model": weights, "config": state.get("config"), "training": dict(training or {})}
    slim |= {key: state[key] for key in ("epoch", "iteration") if key in state}
    save_checkpoint(destination, slim)
    return slim
