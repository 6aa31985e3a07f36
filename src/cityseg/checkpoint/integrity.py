"""Is a checkpoint file whole? The CRC-32 sums its zip stores, and finite weights.

``torch.save`` writes a zip archive (uncompressed members, each with the CRC-32 of its bytes)
that ``torch.load`` never checks: a flipped bit in a weight, or a tensor overwritten with 0xff
bytes (NaN), loads without a word and predicts nonsense. :func:`zip_problem` reads every member
once and compares its sum (one pass over the file's bytes); :func:`nonfinite_tensor` finds a
NaN or infinite value in any floating tensor of a loaded state, which also catches a file
damaged before it was zipped (or re-zipped with fresh sums).
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch

ZIP_SIGNATURE = b"PK\x03\x04"
"""How a zip archive (every checkpoint ``torch.save`` writes) starts."""


def zip_problem(path: Path) -> str | None:
    """Why the zip archive at ``path`` is damaged (a member whose bytes do not match its stored
    CRC-32, a truncated or garbled directory), or None when it is whole or is no zip at all
    (then ``torch.load`` says what it is)."""
    try:
        with open(path, "rb") as file:
            if file.read(len(ZIP_SIGNATURE)) != ZIP_SIGNATURE:
                return None
        with zipfile.ZipFile(path) as archive:
            member = archive.testzip()
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError) as error:
        reason = " ".join(str(error).split())[:120] or type(error).__name__
        return f"its zip structure is broken, e.g. truncated: {reason}"
    if member is not None:
        return f"the bytes of {member} do not match their stored CRC-32 sum"
    return None


def nonfinite_tensor(state: Any) -> str | None:
    """The name (``model.head.weight``) of the first floating tensor in ``state`` holding a NaN
    or an infinite value, or None when every one is finite.

    Each list, dict and tensor is looked at once, however often the file refers to it: a pickle
    can share one list many times over, so that a small file stands for billions of items."""
    seen: set[int] = set()
    pending: list[tuple[str, Any]] = [("", state)]
    while pending:
        name, value = pending.pop()
        if not isinstance(value, (torch.Tensor, dict, list, tuple)) or id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, torch.Tensor):
            if (value.is_floating_point() or value.is_complex()) and not _finite(value):
                return name
            continue
        items = value.items() if isinstance(value, dict) else enumerate(value)
        children = [(_child_name(name, key, isinstance(value, dict)), item) for key, item in items]
        pending.extend(reversed(children))  # depth-first, in the file's order
    return None


def _finite(tensor: torch.Tensor) -> bool:
    return bool(torch.isfinite(tensor).all())


def _child_name(parent: str, key: Any, mapping: bool) -> str:
    if not mapping:
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else str(key)
