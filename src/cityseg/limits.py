"""How much cityseg reads from one file, and how large an image it decodes: every reader checks
these before reading, so a device file, a runaway symlink or a giant image is refused with one
line instead of filling the memory. No torch import here.

``CITYSEG_MAX_PIXELS`` raises the pixel limit for users with larger photos.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from cityseg import environment

MAX_IMAGE_BYTES = 512 * 2**20
"""A PNG or JPEG larger than this is refused before reading (a 2048x1024 frame is ~2-4 MB)."""
MAX_CONFIG_BYTES = 2**20
MAX_CHECKPOINT_BYTES = 8 * 2**30
DEFAULT_MAX_PIXELS = 100_000_000
"""An image of more pixels than this (e.g. 10000 x 10000) is refused before decoding."""


MAX_PIXELS_VARIABLE = "CITYSEG_MAX_PIXELS"


def max_pixels() -> int:
    """The pixel limit: ``CITYSEG_MAX_PIXELS`` when set, else 100 M; ConfigError when it is not
    a whole number from 1 to 2^40."""
    return environment.whole_number(MAX_PIXELS_VARIABLE, DEFAULT_MAX_PIXELS, 1, 2**40)


def regular_file_problem(path: Path, max_bytes: int) -> str | None:
    """Why ``path`` may not be read even though it exists: not a regular file (a device, a pipe),
    or larger than ``max_bytes``; None otherwise, also when it is missing, a folder or cannot be
    looked at (the reader names those in its own terms)."""
    try:
        info = os.stat(path)  # follows symbolic links: their target is what would be read
    except OSError:
        return None
    if stat.S_ISDIR(info.st_mode):
        return None
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file (a device, pipe or socket); give a file"
    if info.st_size > max_bytes:
        return f"{info.st_size / 2**20:.0f} MiB, more than the {max_bytes / 2**20:.0f} MiB limit"
    return None


def pixels_problem(width: int, height: int) -> str | None:
    """Why an image of ``width`` x ``height`` may not be decoded, or None."""
    limit = max_pixels()
    if width * height > limit:
        return (
            f"{width}x{height} pixels, more than the {limit:,} pixel limit; downscale it, or "
            "raise CITYSEG_MAX_PIXELS"
        )
    return None


def read_json(path: Path, max_bytes: int) -> Any:
    """The JSON document in ``path``, read only as a regular file of at most ``max_bytes`` (opened
    without blocking: a pipe in its place is never waited on).

    Raises:
        FileNotFoundError: there is no such file.
        ValueError: why it cannot be read, in a few words: a folder, not a regular file, too
            large, not UTF-8 or not JSON, nested too deeply, or holding NaN or Infinity (which
            JSON does not have).
    """
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except OSError as error:
        raise ValueError(error.strerror or str(error)) from None
    info = os.fstat(handle)
    if not stat.S_ISREG(info.st_mode):
        os.close(handle)
        raise ValueError("not a regular file (a pipe, device or folder)")
    with os.fdopen(handle, "rb") as file:
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"more than the {_bytes(max_bytes)} limit")
    try:
        return json.loads(data, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except ValueError as error:  # (also bytes that are not UTF-8)
        raise ValueError(f"not valid JSON ({str(error)[:80]})") from None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _bytes(count: int) -> str:
    if count >= 2**20:
        return f"{count / 2**20:.0f} MiB"
    return f"{count / 2**10:.0f} KiB" if count >= 2**10 else f"{count} bytes"
