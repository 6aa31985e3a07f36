"""Which memory allocator the CPU commands run with (``CITYSEG_ALLOCATOR``).

``glibc`` (the default; ``system`` is the same) keeps glibc's allocator but raises two of its
thresholds: blocks up to 256 MiB come from the heap instead of fresh ``mmap`` pages, and up to 1
GiB of freed heap is kept for reuse instead of being handed back to the kernel. A training step
frees and reallocates the same activation buffers every iteration; with glibc's defaults each one
is a new mapping whose pages fault in again (seconds of system time per epoch). On the AMD Zen 4
measured, tuned glibc trained 1.0-1.4x faster than untuned glibc and 1.3-1.9x faster than jemalloc,
and tcmalloc came within 0.93-1.10x of it (BENCHMARKS.md, sections 6 and 7); on an Intel Xeon with
AMX, untuned glibc already beat jemalloc. ``glibc-defaults`` leaves glibc as it comes; ``jemalloc``
or ``tcmalloc`` preload that library when it is installed. The thresholds are set in-process
(``mallopt``); another allocator can only be preloaded before the process starts, so the console
entry point then re-executes itself once with ``LD_PRELOAD``.

OpenMP's waiting is left as it comes (a short spin, then sleep): ``OMP_WAIT_POLICY=PASSIVE``, which
cityseg once set, made training steps 1.3-2.4x slower on the idle 2-core Zen 4 (BENCHMARKS.md,
section 6). On cores shared with other work, the measured step setting picks one thread where
two lose (:mod:`cityseg.runtime.tuning`), and ``OMP_WAIT_POLICY=PASSIVE`` can still be set by hand.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys

from cityseg.errors import ConfigError

VARIABLE = "CITYSEG_ALLOCATOR"
LIBRARIES = {
    "jemalloc": ("/usr/lib/*/libjemalloc.so.2", "/usr/lib/libjemalloc.so.2"),
    "tcmalloc": ("/usr/lib/*/libtcmalloc_minimal.so.4", "/usr/lib/*/libtcmalloc.so.4"),
}
CHOICES = ("glibc", "glibc-defaults", *LIBRARIES)
ALIASES = {"system": "glibc"}
MMAP_THRESHOLD = 256 << 20  # blocks below this come from the heap
TRIM_THRESHOLD = 1 << 30  # free heap kept before it is returned to the kernel
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_MARK = "CITYSEG_ALLOCATOR_PRELOADED"
_tuned = False


def requested_allocator(environ: dict[str, str] = os.environ) -> str:
    """The allocator ``CITYSEG_ALLOCATOR`` asks for ('glibc' when unset).

    Raises:
        ConfigError: a value that is not one of ``CHOICES`` (or ``ALIASES``).
    """
    choice = environ.get(VARIABLE, "glibc").strip().lower() or "glibc"
    choice = ALIASES.get(choice, choice)
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


def tune_glibc() -> bool:
    """Raise glibc's mmap and trim thresholds in this process (and the children it forks), so
    freed buffers are reused instead of mapped and faulted in again. False where the C library
    is not glibc (nothing changed)."""
    global _tuned
    if not sys.platform.startswith("linux") or active_allocator() != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        ok = libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    except (OSError, AttributeError):  # musl or another C library: keep its defaults
        return False
    _tuned = _tuned or ok
    return ok


def active_allocator() -> str:
    """Name of the allocator this process runs with: 'jemalloc', 'tcmalloc' or 'glibc'."""
    preload = os.environ.get("LD_PRELOAD", "")
    for name in LIBRARIES:
        if name in preload:
            return name
    return "glibc"


def describe_allocator() -> str:
    """The allocator in words, for the line a run starts with ('glibc, tuned', 'jemalloc')."""
    name = active_allocator()
    return f"{name}, tuned" if name == "glibc" and _tuned else name


def prepare_allocator(argv: list[str], program: list[str] | None = None) -> None:
    """Set up the allocator of a heavy command before torch is loaded: glibc's thresholds raised
    (the default); or, when ``CITYSEG_ALLOCATOR`` names an installed
    allocator that is not active yet, this process replaced by ``program`` + ``argv`` (default:
    ``python -m cityseg``) with it preloaded. A requested allocator that is not installed leaves
    glibc's, with one line saying so."""
    choice = requested_allocator()
    if choice == "glibc":
        tune_glibc()
        return
    if choice == "glibc-defaults" or os.environ.get(_MARK) or active_allocator() == choice:
        return
    if not sys.platform.startswith("linux"):
        return
    library = find_allocator(choice)
    if library is None:
        print(
            f"warning: {VARIABLE}={choice}: lib{choice} is not installed; using glibc's allocator",
            file=sys.stderr,
        )
        tune_glibc()
        return
    env = dict(os.environ)
    env["LD_PRELOAD"] = " ".join(filter(None, [library, env.get("LD_PRELOAD", "")]))
    env[_MARK] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    program = program or [sys.executable, "-m", "cityseg"]
    os.execve(program[0], [*program, *argv], env)
