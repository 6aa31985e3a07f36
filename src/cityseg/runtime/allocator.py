"""Which memory allocator the CPU commands run with (``CITYSEG_ALLOCATOR``).

``system`` (the default) keeps glibc's allocator; ``jemalloc`` or ``tcmalloc`` preload that
library when it is installed. Measured on both CPU kinds this project runs on (an Intel Xeon with
AMX and an AMD Zen 4), glibc trained as fast or faster at every configuration tried (BENCHMARKS.md,
section 6), so the others are only used when asked for. An allocator can only be preloaded before
the process starts, so the console entry point then re-executes itself once with ``LD_PRELOAD``.

Whatever the allocator, the heavy commands set ``OMP_WAIT_POLICY=PASSIVE`` before torch is loaded:
spinning OpenMP threads collapse when the cores are shared.
"""

from __future__ import annotations

import glob
import os
import sys

from cityseg.errors import ConfigError

VARIABLE = "CITYSEG_ALLOCATOR"
LIBRARIES = {
    "jemalloc": ("/usr/lib/*/libjemalloc.so.2", "/usr/lib/libjemalloc.so.2"),
    "tcmalloc": ("/usr/lib/*/libtcmalloc_minimal.so.4", "/usr/lib/*/libtcmalloc.so.4"),
}
CHOICES = ("system", *LIBRARIES)
_MARK = "CITYSEG_ALLOCATOR_PRELOADED"


def requested_allocator(environ: dict[str, str] = os.environ) -> str:
    """The allocator ``CITYSEG_ALLOCATOR`` asks for ('system' when unset).

    Raises:
        ConfigError: a value that is not one of ``CHOICES``.
    """
    choice = environ.get(VARIABLE, "system").strip().lower() or "system"
    if choice not in CHOICES:
        raise ConfigError(
            f"{VARIABLE}={environ[VARIABLE]!r}: unknown allocator; use one of {', '.join(CHOICES)}"
        )
    return choice


def find_allocator(name: str) -> str | None:
    """Path of the installed shared library of allocator ``name``, or None."""
    for pattern in LIBRARIES.get(name, ()):
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


def active_allocator() -> str:
    """Name of the allocator this process runs with: 'jemalloc', 'tcmalloc' or 'glibc'."""
    preload = os.environ.get("LD_PRELOAD", "")
    for name in LIBRARIES:
        if name in preload:
            return name
    return "glibc"


def prepare_allocator(argv: list[str]) -> None:
    """Set up the CPU runtime of a heavy command before torch is loaded: passive OpenMP waiting,
    and, when ``CITYSEG_ALLOCATOR`` names an installed allocator that is not active yet, replace
    this process by itself with it preloaded. A requested allocator that is not installed leaves
    glibc's, with one line saying so."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    choice = requested_allocator()
    if choice == "system" or os.environ.get(_MARK) or active_allocator() == choice:
        return
    if not sys.platform.startswith("linux"):
        return
    library = find_allocator(choice)
    if library is None:
        print(
            f"warning: {VARIABLE}={choice}: lib{choice} is not installed; using the system "
            "allocator",
            file=sys.stderr,
        )
        return
    env = dict(os.environ)
    env["LD_PRELOAD"] = " ".join(filter(None, [library, env.get("LD_PRELOAD", "")]))
    env[_MARK] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "cityseg", *argv], env)
