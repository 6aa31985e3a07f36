"""The fastest number format, memory layout and thread count of a training step on this machine:
measured once, in a few steps of each candidate, and remembered.

Which of bf16 autocast and float32, channels_last and contiguous, all threads or one, trains a
network fastest on a CPU depends on more than its instruction set: on the network (how much of
it is dense convolution), on its input size and batch (channels_last weights slow the fused Adam
of a large network at batch 1), and on whether the cores are shared (one thread can then beat
two). No rule on the CPU's features
gets all of these right, so where ``train.precision`` or ``train.channels_last`` is ``auto`` on a
CPU, the trainer times each candidate setting on the run's own network, batch and size, keeps
the fastest and remembers it in ``speed.json`` of the cache folder (``CITYSEG_CACHE_DIR``, else
``$XDG_CACHE_HOME/cityseg``, else ``~/.cache/cityseg``; read and written within bounds by
:mod:`cityseg.runtime.speed_cache`), under a key naming the CPU, its threads, the torch version,
the network, the batch and the size: the measurement runs once per machine and configuration
(seconds), and runs that share them take the same setting.

The measurement pays for itself. Given the run's planned steps, it costs at most
``MEASURE_SHARE`` (5%) of the run it serves, reckoned at the rule's step (the first candidate):

- a run of fewer than ``len(settings) * SLOWER_CANDIDATES / MEASURE_SHARE`` steps (240 for eight
  candidates) trains with the rule's setting unmeasured: even at no fixed cost, a step of each
  candidate would be more than the share;
- a longer run times the rule's step first (a copy of the network built and stepped once, then a
  step timed): where a round of all candidates (for each, a copy built and stepped once as long
  as the rule's took, and a timed step ``SLOWER_CANDIDATES`` times the rule's) would cost more
  than the share, the rule's setting is taken; otherwise the candidates are timed, each further
  round only while what is left of the share pays for it. Where a copy of the network takes as
  long as four of its steps to build and step once, eight candidates are measured from about 900
  planned steps (8 x (4 + 1.5) steps within 5% of the run). A setting skipped for a short run is
  not remembered: a longer run measures it.

A remembered setting is checked against the run's own steps (:mod:`cityseg.runtime.step_check`):
where their median is 1.5x slower or faster than the step measured for that setting, the
measurement is marked stale and the next run of the configuration measures again (it was
measured on busy cores, or the machine changed since).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from cityseg import processes
from cityseg.runtime.speed_cache import (
    CACHE_FILE,
    NO_FOLDER,
    cache_folder,
    read_cache,
    write_cache,
)

# Settings whose step is within this factor of the fastest are a close call: timed again, longer.
# Two timed steps each tell apart settings 10% apart, not 5%: settings 5% apart can come out in
# either order from one measurement to the next.
CLOSE_CALL = 1.10
CLOSE_CALL_STEPS = 4
OUT_OF_THE_RACE = 1.5
# The measurement costs at most this share of the run it serves.
MEASURE_SHARE = 0.05
# A candidate's step against the rule's, before any is timed: float32 and one thread are mostly
# slower than the rule's bf16 on all threads, and some candidates win.
SLOWER_CANDIDATES = 1.5


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
    budget: float | None = None,
) -> dict[StepSetting, float]:
    """Seconds of a step of each setting: ``steps`` rounds in turns (a, b, c, a, b, c: other load
    on the machine falls on all alike), each step timed right after an untimed one of the same
    setting; the fastest of each. A setting ``OUT_OF_THE_RACE`` times slower than the fastest
    after a round is not timed again (it cannot win, and its steps would be the longest of the
    measurement); the settings within
    ``CLOSE_CALL`` of the fastest at the end are timed ``CLOSE_CALL_STEPS`` rounds more.

    The untimed step brings back what the other settings displaced: oneDNN keeps the kernels it
    built (per layer, number format, layout and thread count) in a cache of 1,024, fewer than eight
    settings of a U-Net need, so a step right after another setting's builds its kernels again
    and would be timed too slow; a change of thread count costs a step of its own too.

    With a ``budget`` (seconds), the first round runs whole and each later one only while what is
    left of the budget pays for its two steps of each setting, at their best times so far.
    """
    started = time.perf_counter()
    calls = {setting: make_step(setting) for setting in settings}
    best = dict.fromkeys(settings, float("inf"))

    def affordable(group: Sequence[StepSetting]) -> bool:
        spent = time.perf_counter() - started
        return budget is None or spent + 2 * sum(best[s] for s in group) <= budget

    for round_number in range(steps):
        fastest = min(best.values())
        racing = [s for s in settings if best[s] <= OUT_OF_THE_RACE * fastest]
        if round_number and not affordable(racing):
            return best
        _time_round(calls, racing, best)
    fastest = min(best.values())
    close = [s for s in settings if best[s] <= CLOSE_CALL * fastest]
    if len(close) > 1:
        for _ in range(CLOSE_CALL_STEPS):
            if not affordable(close):
                break
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
        f"{processes.cpu_model()} | {torch.backends.cpu.get_cpu_capability()} | "
        f"{torch.get_num_threads()} threads | torch {torch.__version__}"
    )


def fastest_setting(
    key: str,
    settings: Sequence[StepSetting],
    make_step: Callable[[StepSetting], Callable[[], None]],
    folder: Path | None = None,
    planned_steps: int | None = None,
) -> tuple[StepSetting, str]:
    """The fastest of ``settings`` for ``key`` (a description of the network, batch and size):
    remembered if it was measured before on this machine (and not found stale since), else
    measured now (:func:`time_settings`) and remembered. Also returns one line saying what was
    chosen and why.

    With ``planned_steps``, the steps of the run the setting serves, the measurement costs at most
    ``MEASURE_SHARE`` of that run (see the module's description): where it would cost more, the
    first of ``settings`` (the rule's) is taken unmeasured and nothing is remembered.
    """
    if len(settings) == 1:
        return settings[0], ""
    folder = folder or cache_folder()
    path = folder / CACHE_FILE if folder is not None else None
    full_key = cache_key(key, settings)
    known, problem = read_cache(path) if path is not None else ({}, None)
    if problem is not None:
        print(f"warning: {problem}; counted as no speed cache", file=sys.stderr, flush=True)
    remembered = remembered_setting(known, full_key)
    stale = remembered is not None and known[full_key].get("stale") is True
    if remembered in settings and not stale:
        return remembered, (
            f"speed: {remembered.describe()}, the fastest when measured before ({path})"
        )
    again = " (measured before, found stale)" if stale else ""
    started = time.perf_counter()
    make_step = _built_once(make_step)
    budget = None
    if planned_steps is not None:
        rule, count = settings[0], len(settings)
        least = least_steps_to_measure(count)
        if planned_steps < least:
            return rule, (
                f"speed: {rule.describe()}, the rule's, unmeasured{again}: a run of "
                f"{planned_steps} steps is too short for measuring {count} settings to pay "
                f"(at most {MEASURE_SHARE:.0%} of a run; measured from {least} steps)"
            )
        step_s, projected = _first_estimate(make_step(rule), count, started)
        budget = MEASURE_SHARE * planned_steps * step_s
        if projected > budget:
            return rule, (
                f"speed: {rule.describe()}, the rule's, unmeasured{again}: measuring {count} "
                f"settings (about {projected:.0f} s) would cost more than {MEASURE_SHARE:.0%} "
                f"of this run ({planned_steps} steps of {1000 * step_s:.0f} ms)"
            )
        budget -= time.perf_counter() - started
    times = time_settings(make_step, settings, budget=budget)
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
        f"speed: {choice.describe()}, the fastest of a step measured in {spent:.0f} s{again} "
        f"({measured}); {where}"
    )


def cache_key(key: str, settings: Sequence[StepSetting]) -> str:
    """The key of a measurement in ``speed.json``: the machine, ``key`` and the candidates."""
    return f"{machine_key()} | {key} | {' / '.join(s.describe() for s in settings)}"


def least_steps_to_measure(candidates: int) -> int:
    """The fewest planned steps for which measuring ``candidates`` settings can pay: a step of
    each, at ``SLOWER_CANDIDATES`` times the rule's, within ``MEASURE_SHARE`` of the run."""
    return math.ceil(candidates * SLOWER_CANDIDATES / MEASURE_SHARE)


def _first_estimate(
    step: Callable[[], None], candidates: int, started: float
) -> tuple[float, float]:
    """Seconds of a step of the rule's setting (its second step; ``started`` when its copy of
    the network began to be built), and what a first round over ``candidates`` settings would
    cost: for each, building and a first step as the rule's took, and a timed step at
    ``SLOWER_CANDIDATES`` times the rule's."""
    step()
    built = time.perf_counter() - started
    begun = time.perf_counter()
    step()
    step_s = time.perf_counter() - begun
    return step_s, candidates * (built + SLOWER_CANDIDATES * step_s)


def _built_once(
    make_step: Callable[[StepSetting], Callable[[], None]],
) -> Callable[[StepSetting], Callable[[], None]]:
    """``make_step`` that builds each setting's step once (the rule's is built for the first
    estimate, then timed with the others)."""
    built: dict[StepSetting, Callable[[], None]] = {}

    def make(setting: StepSetting) -> Callable[[], None]:
        if setting not in built:
            built[setting] = make_step(setting)
        return built[setting]

    return make


def remembered_setting(known: dict, key: str) -> StepSetting | None:
    try:
        fields = known[key]["setting"]
        return StepSetting(
            str(fields["precision"]), bool(fields["channels_last"]), int(fields.get("threads", 0))
        )
    except (KeyError, TypeError, ValueError):
        return None
