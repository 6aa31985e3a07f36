"""The environment variables cityseg reads, each validated where it is read: a value that cannot
be used is one line naming the variable and what it accepts, never a traceback and never a silent
default. An empty variable counts as unset (as a shell's ``VAR= cityseg ...`` means). No torch
import here.

Example:
    >>> whole_number("WORLD_SIZE", 1, minimum=1, environ={"WORLD_SIZE": "2"})
    2
    >>> whole_number("WORLD_SIZE", 1, minimum=1, environ={})
    1
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

from cityseg.errors import ConfigError


def text(name: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """The variable's value, or None when it is unset or empty."""
    return environ.get(name) or None


def whole_number(
    name: str,
    default: int,
    minimum: int = 0,
    maximum: int | None = None,
    environ: Mapping[str, str] = os.environ,
) -> int:
    """The variable as a whole number between ``minimum`` and ``maximum``, or ``default`` when it
    is unset or empty; ConfigError otherwise."""
    value = text(name, environ)
    if value is None:
        return default
    accepted = f"a whole number of at least {minimum}"
    if maximum is not None:
        accepted = f"a whole number from {minimum} to {maximum}"
    stripped = value.strip()
    if not stripped.isascii() or not stripped.isdigit():
        raise ConfigError(f"{name}={value!r}: not a whole number; give {accepted}, or unset it")
    number = int(stripped) if len(stripped) <= 18 else math.inf
    if number < minimum or (maximum is not None and number > maximum) or number == math.inf:
        raise ConfigError(f"{name}={value!r}: out of range; give {accepted}, or unset it")
    return number


def seconds(
    name: str, default: float, maximum: float, environ: Mapping[str, str] = os.environ
) -> float:
    """The variable as a number of seconds above 0 and at most ``maximum``, or ``default`` when it
    is unset or empty; ConfigError otherwise."""
    value = text(name, environ)
    if value is None:
        return default
    accepted = f"a number of seconds above 0 and at most {maximum:g}, such as {default:g}"
    try:
        number = float(value.strip()) if value.strip().isascii() else math.nan
    except ValueError:
        number = math.nan
    if not 0 < number <= maximum:  # also NaN and infinity
        raise ConfigError(f"{name}={value!r}: not a usable time; give {accepted}, or unset it")
    return number


def absolute_folder(name: str, environ: Mapping[str, str] = os.environ) -> Path | None:
    """The variable as an absolute folder path, or None when it is unset, empty or relative
    (the XDG convention: a relative ``XDG_CACHE_HOME`` or ``HOME`` is ignored, so that an empty
    ``HOME`` never puts files at the root of the file system or in the working folder)."""
    value = text(name, environ)
    return Path(value) if value is not None and os.path.isabs(value) else None
