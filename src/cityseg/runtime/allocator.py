"""Which memory allocator the CPU commands run with (``CITYSEG_ALLOCATOR``).

``auto`` (the default) is tcmalloc where its library is installed (Debian and Ubuntu:
``libtcmalloc-minimal4``), otherwise glibc's allocator with two of its thresholds raised: the
two that train fastest, in that order (BENCHMARKS.md, the epoch tables of ``bench_epoch.py``;
jemalloc and glibc as it comes are slower). The choices by hand: ``tcmalloc``, ``jemalloc``
(preloaded when installed), ``glibc`` (``system`` is the same: tuned), ``glibc-defaults`` (as it
comes).

Tuned glibc serves blocks up to 256 MiB from the heap instead of fresh ``mmap`` pages and keeps up
to 1 GiB of freed heap for reuse instead of handing it back to the kernel: a training step frees
and reallocates the same activation buffers every iteration, and with glibc's defaults each one
is a new mapping whose pages fault in again (seconds of system time per epoch). The thresholds
are set in-process (``mallopt``); another allocator can only be preloaded before the process
starts, so the console entry point then re-executes itself once with ``LD_PRELOAD``.

OpenMP's waiting is left as it comes (a short spin, then sleep): ``OMP_WAIT_POLICY=PASSIVE`` makes
training steps slower on idle cores (the ``omp-passive`` switch of BENCHMARKS.md's epoch
tables). On cores shared with other work, the measured step setting picks one thread where
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
CHOICES = ("auto", "glibc", "glibc-defaults", *LIBRARIES)
ALIASES = {"system": "glibc"}
MMAP_THRESHOLD = 256 << 20  # blocks below this come from the heap
TRIM_THRESHOLD = 1 << 30  # free heap kept before it is returned to the kernel
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
# tcmalloc reports every allocation above 1 GiB on stderr; a full-size evaluation makes some
_QUIET = {"TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": str(1 << 42)}
_MARK = "CITYSEG_ALLOCATOR_PRELOADED"
# Every variable the choice reads or sets: without them, a process gets the default.
ENVIRONMENT = (VARIABLE, _MARK, "LD_PRELOAD", "GLIBC_TUNABLES", *_QUIET)
_tuned = False


def requested_allocator(environ: dict[str, str] = os.environ) -> str:
    """The allocator ``CITYSEG_ALLOCATOR`` asks for ('auto' when unset).

    Raises:
        ConfigError: a value that is not one of ``CHOICES`` (or ``ALIASES``).
    """
    choice = environ.get(VARIABLE, "auto").strip().lower() or "auto"
    choice = ALIASES.get(choice, choice)
    if choice not in CHOICES:
        raise ConfigError(
            f"{VARIABLE}={environ[VARIABLE]!r}: unknown allocator; use one of {', '.join(CHOICES)}"
        )
    return choice


def default_allocator() -> str:
    """What ``auto`` stands for on this machine: 'tcmalloc' where it is installed, else 'glibc'."""
    return "tcmalloc" if find_allocator("tcmalloc") else "glibc"


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
    """Set up the allocator of a heavy command before torch is loaded: when the allocator asked
    for (by default tcmalloc, where installed) is not active yet, this process is replaced by
    ``program`` + ``argv`` (default: ``python -m cityseg``) with it preloaded; with glibc's, its
    thresholds are raised. An allocator asked for by name that is not installed leaves glibc's,
    tuned, with one line saying so."""
    choice = requested_allocator()
    if choice == "auto":
        choice = default_allocator()
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
    if choice == "tcmalloc":
        env = {**_QUIET, **env}
    sys.stdout.flush()
    sys.stderr.flush()
    program = program or [sys.executable, "-m", "cityseg"]
    os.execve(program[0], [*program, *argv], env)
