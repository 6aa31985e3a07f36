"""The run's own steps against the step measured for its setting (:mod:`cityseg.runtime.tuning`):
a measurement made on busy cores, or on a machine that has changed since, is measured again.

The loop's work on each batch (not the wait for the next one) is timed: the first
``CHECK_AFTER_STEPS`` are left out (kernels built), and where the median of the next
``CHECK_STEPS`` is more than ``STALE_FACTOR`` slower or faster than the step remembered for the
setting, the measurement is marked stale in ``speed.json`` and one line says so; the next run of
the configuration measures the settings again (within its share of that run).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from cityseg.runtime.speed_cache import CACHE_FILE, cache_folder, read_cache, write_cache
from cityseg.runtime.tuning import StepSetting, cache_key, remembered_setting

# The run's own steps: the first few skipped (kernels built), the median of the next ones.
CHECK_AFTER_STEPS = 5
CHECK_STEPS = 20
# A median this factor slower or faster than the measured step marks the measurement stale. The
# loop around a step (reading and augmenting the batch in the process, the progress bar) makes a
# run's step up to a third slower than the probe's on idle cores; a measurement made on busy ones
# is off by twice or more.
STALE_FACTOR = 1.5


def step_time_check(
    key: str, settings: Sequence[StepSetting], setting: StepSetting, folder: Path | None = None
) -> StepTimeCheck:
    """A check of the run's steps against the step measured for ``setting`` among ``settings``
    for ``key`` (as :func:`~cityseg.runtime.tuning.fastest_setting` remembered it); one that
    checks nothing where no step of ``setting`` is remembered (given, the rule's, or stale)."""
    folder = folder or cache_folder()
    if len(settings) == 1 or folder is None:
        return StepTimeCheck()
    path, full_key = folder / CACHE_FILE, cache_key(key, settings)
    known, _ = read_cache(path)
    if remembered_setting(known, full_key) != setting or known[full_key].get("stale") is True:
        return StepTimeCheck()
    measured_ms = known[full_key].get("step_ms", {}).get(setting.describe())
    if not measured_ms or measured_ms <= 0:
        return StepTimeCheck()
    return StepTimeCheck(path, full_key, setting, measured_ms / 1000)


Batch = TypeVar("Batch")


class StepTimeCheck:
    """The run's own steps against the step measured for its setting, as the module says;
    built without a measurement, it checks nothing.

    Args:
        path: the ``speed.json`` holding the measurement.
        key: its key there (:func:`~cityseg.runtime.tuning.cache_key`).
        setting: the setting the run trains with.
        measured_s: the step measured for it, in seconds.
    """

    def __init__(
        self,
        path: Path | None = None,
        key: str = "",
        setting: StepSetting | None = None,
        measured_s: float = 0.0,
    ) -> None:
        self.path, self.key, self.setting, self.measured_s = path, key, setting, measured_s
        self.times: list[float] = []
        self.done = path is None or setting is None

    def timed(self, batches: Iterable[Batch]) -> Iterator[Batch]:
        """``batches`` as they come, the work on each timed until the check is done."""
        return iter(batches) if self.done else self._timed(batches)

    def _timed(self, batches: Iterable[Batch]) -> Iterator[Batch]:
        for batch in batches:
            begun = time.perf_counter()
            yield batch
            if not self.done:
                self.observe(time.perf_counter() - begun)

    def observe(self, seconds: float) -> str | None:
        """Count a step of ``seconds``; once enough are counted, check them and return the line
        saying the measurement is stale (printed too), or None."""
        if self.done:
            return None
        self.times.append(seconds)
        if len(self.times) < CHECK_AFTER_STEPS + CHECK_STEPS:
            return None
        self.done = True
        median = statistics.median(self.times[CHECK_AFTER_STEPS:])
        ratio = median / self.measured_s
        if 1 / STALE_FACTOR <= ratio <= STALE_FACTOR:
            return None
        unwritten = mark_stale(self.path, self.key, median)
        then = (
            "the next run of this configuration measures the settings again"
            if unwritten is None
            else f"not marked for measuring again: {unwritten}"
        )
        line = (
            f"speed: this run's steps ({self.setting.describe()}) took {1000 * median:.0f} ms, "
            f"{ratio:.2f}x the {1000 * self.measured_s:.0f} ms measured before; {then}"
        )
        print(line, flush=True)
        return line


def mark_stale(path: Path, key: str, run_seconds: float) -> str | None:
    """Mark the measurement ``key`` of ``path`` stale, with the run's step that found it so;
    None when marked, else why not."""
    known, problem = read_cache(path)
    if problem is not None:
        return problem
    if key not in known:
        return f"{path}: the measurement is no longer there"
    known[key]["stale"] = True
    known[key]["run_step_ms"] = round(1000 * run_seconds, 1)
    return write_cache(path, known)
