"""Use jemalloc or tcmalloc when the machine has one.

glibc's allocator returns the large activation buffers of a training step to the OS and maps them
again at the next step; a caching allocator avoids that (BENCHMARKS.md, section 6).
An allocator can only be preloaded before the process starts, so the console entry point re-executes
itself once with ``LD_PRELOAD`` set. ``CITYSEG_ALLOCATOR=system`` turns this off.
"""

from __future__ import annotations

import glob
import os
import sys

_CANDIDATES = (
    "/usr/lib/*/libjemalloc.so.2",
    "/usr/lib/libjemalloc.so.2",
    "/usr/lib/*/libtcmalloc_minimal.so.4",
    "/usr/lib/*/libtcmalloc.so.4",
)
_MARK = "CITYSEG_ALLOCATOR_PRELOADED"


def find_fast_allocator() -> str | None:
    """Path of an installed jemalloc or tcmalloc shared library, or None."""
    for pattern in _CANDIDATES:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


def active_allocator() -> str:
    """Name of the allocator this process runs with: 'jemalloc', 'tcmalloc' or 'glibc'."""
    preload = os.environ.get("LD_PRELOAD", "")
    for name in ("jemalloc", "tcmalloc"):
        if name in preload:
            return name
    return "glibc"


def reexec_with_fast_allocator(argv: list[str]) -> None:
    """Replace this process by itself with a fast allocator preloaded, when one is installed.

    Returns without doing anything when one is already active, none is installed, the platform is
    not Linux, or ``CITYSEG_ALLOCATOR=system``.
    """
    if (
        not sys.platform.startswith("linux")
        or os.environ.get("CITYSEG_ALLOCATOR", "auto") == "system"
        or os.environ.get(_MARK)
        or active_allocator() != "glibc"
    ):
        return
    library = find_fast_allocator()
    if library is None:
        return
    env = dict(os.environ)
    env["LD_PRELOAD"] = " ".join(filter(None, [library, env.get("LD_PRELOAD", "")]))
    env[_MARK] = "1"
    # Spinning OpenMP threads collapse when the cores are shared; passive waiting costs little
    # on idle cores (BENCHMARKS.md, section 6).
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "cityseg", *argv], env)
