"""``speed.json``: the step settings measured on this machine (:mod:`cityseg.runtime.tuning`),
read and written within bounds. No torch import here.

The cache folder is ``CITYSEG_CACHE_DIR``, else ``$XDG_CACHE_HOME/cityseg``, else
``$HOME/.cache/cityseg``; a relative or empty ``XDG_CACHE_HOME`` or ``HOME`` is ignored (an empty
``HOME`` would otherwise put the cache at ``/.cache``), and without any the measurement holds for
the run only. The file is read only when it is a regular file of at most ``MAX_CACHE_BYTES``
(a pipe or a device at its place is never opened, so it cannot block), holding JSON of the
expected shape (no ``Infinity``, no deep nesting); anything else counts as nothing remembered,
with one line saying why. It is written whole (a reader never sees half a file), its oldest
entries dropped to keep it within the bound, and never over something that is not a regular file.
"""

from __future__ import annotations

import json
import math
import os
import pwd
from pathlib import Path

from cityseg import environment, limits
from cityseg.outputs import write_text_atomically

CACHE_VARIABLE = "CITYSEG_CACHE_DIR"
CACHE_FILE = "speed.json"
MAX_CACHE_BYTES = 2**20
"""An entry is about 1 KB (its key names the CPU, the network, the batch and the size)."""
MAX_THREADS = 2**16


def cache_folder() -> Path | None:
    """Where cityseg keeps what it measured about this machine; None when no folder is known."""
    chosen = environment.text(CACHE_VARIABLE)
    if chosen is not None:
        return Path(chosen)
    xdg = environment.absolute_folder("XDG_CACHE_HOME")
    if xdg is not None:
        return xdg / "cityseg"
    if "HOME" in os.environ:
        home = environment.absolute_folder("HOME")
    else:  # as a login would set it
        try:
            home = Path(pwd.getpwuid(os.getuid()).pw_dir)
        except KeyError:
            home = None
    return home / ".cache" / "cityseg" if home is not None and home.is_absolute() else None


NO_FOLDER = (
    "no cache folder (HOME is empty or relative); set CITYSEG_CACHE_DIR to a folder to remember it"
)


def read_cache(path: Path) -> tuple[dict, str | None]:
    """The measurements remembered in ``path``, and why they count as none when the file is
    there but cannot be used (None when it is fine or missing)."""
    try:
        known = limits.read_json(path, MAX_CACHE_BYTES)
    except FileNotFoundError:
        return {}, None
    except ValueError as error:
        return {}, f"{path}: {error}"
    if not (isinstance(known, dict) and all(map(_valid_entry, known.values()))):
        return {}, f"{path}: not the measurements of cityseg (unexpected entries)"
    return known, None


def _valid_entry(entry: object) -> bool:
    """``{"setting": {"precision": str, "channels_last": bool, "threads": int}, "step_ms":
    {str: number}}``, each value of a sensible size."""
    if not isinstance(entry, dict) or not isinstance(entry.get("setting"), dict):
        return False
    setting, step_ms = entry["setting"], entry.get("step_ms", {})
    threads = setting.get("threads", 0)
    return (
        isinstance(setting.get("precision"), str)
        and len(setting["precision"]) <= 16
        and isinstance(setting.get("channels_last"), bool)
        and type(threads) is int
        and 0 <= threads <= MAX_THREADS
        and isinstance(step_ms, dict)
        and all(type(ms) in (int, float) and math.isfinite(ms) for ms in step_ms.values())
    )


def write_cache(path: Path, known: dict) -> str | None:
    """Write ``known`` to ``path`` whole, its oldest entries (the first) dropped while it is
    larger than ``MAX_CACHE_BYTES``; None when written, else why not (the choice then holds for
    this run only)."""
    text = json.dumps(known, indent=1)
    entries = dict(known)
    while len(text.encode()) > MAX_CACHE_BYTES and len(entries) > 1:
        del entries[next(iter(entries))]
        text = json.dumps(entries, indent=1)
    try:
        if path.exists() and not path.is_file():
            return f"{path} is not a regular file; remove it"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(path, text)
    except OSError as error:
        return f"{path}: {error.strerror or error}"
    return None
