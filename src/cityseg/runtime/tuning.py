"""The fastest number format, memory layout and thread count of a training step on this machine:
measured once, in a few steps of each candidate, and remembered.

Which of bf16 autocast and float32, channels_last and contiguous, all threads or one, trains a
network fastest on a CPU depends on more than its instruction set. On the 2-core Zen 4 of
BENCHMARKS.md, with bf16 depthwise convolutions, float32 (contiguous) trained the EfficientNet-Lite0
U-Net 1.3x faster than bf16 + channels_last at 64x128 and 1.7x slower at 128x256; channels_last
weights made the fused Adam of a 31 M-parameter U-Net slow enough that contiguous won its step at
batch 1; and one thread can beat two where the cores are shared. No rule on the CPU's features
gets all of these right, so where ``train.precision`` or ``train.channels_last`` is ``auto`` on a
CPU, the trainer times each candidate setting on the run's own network, batch and size, keeps
the fastest and remembers it in ``speed.json`` of the cache folder (``CITYSEG_CACHE_DIR``, else
``$XDG_CACHE_HOME/cityseg``, else ``~/.cache/cityseg``; read and written within bounds by
:mod:`cityseg.runtime.speed_cache`), under a key naming the CPU, its threads, the torch version,
the network, the batch and the size: the measurement runs once per machine and configuration
(seconds), and runs that share them take the same setting.
"""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from cityseg.runtime.speed_cache import (
    CACHE_FILE,
    NO_FOLDER,
    cache_folder,
    read_cache,
    write_cache,
)

# Settings whose step is within this factor of the fastest are a close call: timed again, longer.
# Two timed steps each tell apart settings 10% apart, not 5%: the peer U-Net's two layouts (208
# against 219 ms) came out in the other order in the next measurement and in a whole epoch.
CLOSE_CALL = 1.10
CLOSE_CALL_STEPS = 4
OUT_OF_THE_RACE = 1.5


@dataclass(frozen=True)
class StepSetting:
    """How a training step runs: its number format, its memory layout and its CPU threads
    (0: whatever torch has)."""

    precision: str
    channels_last: bool
    threads: int = 0

    def describe(self) -> str:
        layout = "channels_last" if self.channels_last else "contiguous"
        if not self.threads:
            return f"{self.precision}, {layout}"
        return f"{self.precision}, {layout}, {self.threads} thread{'s' * (self.threads > 1)}"


def candidate_settings(
    precisions: Sequence[str], layouts: Sequence[bool], threads: Sequence[int] = (0,)
) -> list[StepSetting]:
    """Every combination of the precisions, layouts and thread counts, in order, no repeats;
    grouped by thread count (changing it between steps costs a step of its own)."""
    settings = [StepSetting(p, lay, n) for n in threads for p in precisions for lay in layouts]
    return list(dict.fromkeys(settings))


def time_settings(
    make_step: Callable[[StepSetting], Callable[[], None]],
    settings: Sequence[StepSetting],
    steps: int = 2,
) -> dict[StepSetting, float]:
    """Seconds of a step of each setting: ``steps`` rounds in turns (a, b, c, a, b, c: other load
    on the machine falls on all alike), each step timed right after an untimed one of the same
    setting; the fastest of each. A setting ``OUT_OF_THE_RACE`` times slower than the fastest
    after a round is not timed again (float32 on one thread took 3.6-4.2 s a step of the
    31 M-parameter U-Net at batch 8, where bf16 on two took 0.9 s); the settings within
    ``CLOSE_CALL`` of the fastest at the end are timed ``CLOSE_CALL_STEPS`` rounds more.

    The untimed step brings back what the other settings displaced: oneDNN keeps the kernels it
    built (per layer, number format, layout and thread count) in a cache of 1,024, fewer than eight
    settings of a U-Net need, so a step right after another setting's builds its kernels again
    (on the 2-core Zen 4 of BENCHMARKS.md, 176 ms against 99 ms for the EfficientNet-Lite0 U-Net
    at 64x128), and a change of thread count costs a step of its own.
    """
    calls = {setting: make_step(setting) for setting in settings}
    best = dict.fromkeys(settings, float("inf"))
    for _ in range(steps):
        fastest = min(best.values())
        _time_round(calls, [s for s in settings if best[s] <= OUT_OF_THE_RACE * fastest], best)
    fastest = min(best.values())
    close = [s for s in settings if best[s] <= CLOSE_CALL * fastest]
    if len(close) > 1:
        for _ in range(CLOSE_CALL_STEPS):
            _time_round(calls, close, best)
    return best


def _time_round(
    calls: dict[StepSetting, Callable[[], None]],
    settings: Sequence[StepSetting],
    best: dict[StepSetting, float],
) -> None:
    """An untimed and a timed step of each of ``settings``, in turns; ``best`` keeps the fastest."""
    for setting in settings:
        calls[setting]()
        started = time.perf_counter()
        calls[setting]()
        best[setting] = min(best[setting], time.perf_counter() - started)


def machine_key() -> str:
    """The CPU, the threads torch uses and the torch version: what a measurement holds for."""
    return (
        f"{cpu_model()} | {torch.backends.cpu.get_cpu_capability()} | "
        f"{torch.get_num_threads()} threads | torch {torch.__version__}"
    )


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fastest_setting(
    key: str,
    settings: Sequence[StepSetting],
    make_step: Callable[[StepSetting], Callable[[], None]],
    folder: Path | None = None,
) -> tuple[StepSetting, str]:
    """The fastest of ``settings`` for ``key`` (a description of the network, batch and size):
    remembered if it was measured before on this machine, else measured now
    (:func:`time_settings`) and remembered. Also returns one line saying what was chosen and
    why."""
    if len(settings) == 1:
        return settings[0], ""
    folder = folder or cache_folder()
    path = folder / CACHE_FILE if folder is not None else None
    full_key = f"{machine_key()} | {key} | {' / '.join(s.describe() for s in settings)}"
    known, problem = read_cache(path) if path is not None else ({}, None)
    if problem is not None:
        print(f"warning: {problem}; counted as no speed cache", file=sys.stderr, flush=True)
    remembered = remembered_setting(known, full_key)
    if remembered in settings:
        return remembered, (
            f"speed: {remembered.describe()}, the fastest when measured before ({path})"
        )
    started = time.perf_counter()
    times = time_settings(make_step, settings)
    choice = min(times, key=times.get)
    spent = time.perf_counter() - started
    measured = ", ".join(f"{s.describe()} {1000 * t:.0f} ms" for s, t in times.items())
    known.pop(full_key, None)  # (re)measured: the newest entry, the last dropped
    known[full_key] = {
        "setting": {
            "precision": choice.precision,
            "channels_last": choice.channels_last,
            "threads": choice.threads,
        },
        "step_ms": {s.describe(): round(1000 * t, 1) for s, t in times.items()},
    }
    unwritten = write_cache(path, known) if path is not None else NO_FOLDER
    where = f"remembered in {path}" if unwritten is None else f"not remembered: {unwritten}"
    return choice, (
        f"speed: {choice.describe()}, the fastest of a step measured in {spent:.0f} s "
        f"({measured}); {where}"
    )


def remembered_setting(known: dict, key: str) -> StepSetting | None:
    try:
        fields = known[key]["setting"]
        return StepSetting(
            str(fields["precision"]), bool(fields["channels_last"]), int(fields.get("threads", 0))
        )
    except (KeyError, TypeError, ValueError):
        return None
