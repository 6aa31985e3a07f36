"""A remembered step setting is checked against the run's own steps: a median of them far from
the step measured for the setting marks the measurement stale, and the next run measures again."""

from __future__ import annotations

import json

import pytest

from cityseg.runtime import step_check
from cityseg.runtime.step_check import (
    CHECK_AFTER_STEPS,
    CHECK_STEPS,
    StepTimeCheck,
    step_time_check,
)
from cityseg.runtime.tuning import StepSetting, cache_key

RULE, OTHER = StepSetting("bf16", True), StepSetting("fp32", False)
SETTINGS = [RULE, OTHER]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(step_check, "time", fake)
    return fake


@pytest.fixture
def remembered(tmp_path) -> StepTimeCheck:
    """A check of a run of the rule's setting, remembered as measured at 100 ms a step."""
    measured = {
        "setting": {"precision": "bf16", "channels_last": True, "threads": 0},
        "step_ms": {RULE.describe(): 100.0, OTHER.describe(): 180.0},
    }
    (tmp_path / "speed.json").write_text(json.dumps({cache_key("net", SETTINGS): measured}))
    return step_time_check("net", SETTINGS, RULE, tmp_path)


def entry(tmp_path) -> dict:
    (only,) = json.loads((tmp_path / "speed.json").read_text()).values()
    return only


def run_steps(check: StepTimeCheck, clock: FakeClock, seconds: list[float], wait: float = 0.0):
    """The training loop: ``wait`` s for each batch, then ``seconds`` of work on it."""

    def loader():
        for index in range(len(seconds)):
            clock.now += wait
            yield index

    for index in check.timed(loader()):
        clock.now += seconds[index]


def test_steps_as_measured_leave_the_measurement_alone(tmp_path, remembered, clock, capsys):
    assert remembered.measured_s == pytest.approx(0.1) and not remembered.done
    run_steps(remembered, clock, [0.5] * CHECK_AFTER_STEPS + [0.135] * 30, wait=1.0)
    assert remembered.done and "stale" not in entry(tmp_path)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("step", [0.16, 0.06])
def test_steps_far_slower_or_faster_mark_it_stale_and_say_so(
    tmp_path, remembered, clock, capsys, step
):
    run_steps(remembered, clock, [step] * (CHECK_AFTER_STEPS + CHECK_STEPS + 10))
    assert entry(tmp_path)["stale"] is True
    assert entry(tmp_path)["run_step_ms"] == pytest.approx(1000 * step)
    ratio = step / 0.1
    assert capsys.readouterr().out == (
        f"speed: this run's steps (bf16, channels_last) took {1000 * step:.0f} ms, {ratio:.2f}x "
        "the 100 ms measured before; the next run of this configuration measures the settings "
        "again\n"
    )
    assert step_time_check("net", SETTINGS, RULE, tmp_path).done  # stale: nothing to check


def test_the_median_is_of_the_steps_after_the_first_few(tmp_path, remembered, clock):
    slow_start = [2.0] * CHECK_AFTER_STEPS  # kernels built
    outliers = [5.0] * (CHECK_STEPS // 2 - 1)  # fewer than half: the median stays
    run_steps(remembered, clock, slow_start + outliers + [0.1] * (CHECK_STEPS // 2 + 1))
    assert remembered.done and "stale" not in entry(tmp_path)
    too_few = step_time_check("net", SETTINGS, RULE, tmp_path)
    run_steps(too_few, clock, [1.0] * (CHECK_AFTER_STEPS + CHECK_STEPS - 1))
    assert not too_few.done and "stale" not in entry(tmp_path)  # a short run says nothing


def test_nothing_is_checked_without_a_step_measured_for_the_setting(tmp_path, remembered):
    assert step_time_check("net", SETTINGS, OTHER, tmp_path).done  # not the remembered one
    assert step_time_check("another net", SETTINGS, RULE, tmp_path).done
    assert step_time_check("net", [RULE], RULE, tmp_path).done  # given, not measured
    unchecked = StepTimeCheck()
    batches = iter([1, 2])
    assert unchecked.timed(batches) is batches and unchecked.observe(9.0) is None


def test_a_cache_replaced_since_is_not_marked(tmp_path, remembered, clock, capsys):
    (tmp_path / "speed.json").write_text("{}")
    run_steps(remembered, clock, [1.0] * (CHECK_AFTER_STEPS + CHECK_STEPS))
    assert "not marked for measuring again: " in capsys.readouterr().out
    assert json.loads((tmp_path / "speed.json").read_text()) == {}
