"""The fastest step setting: measured once per machine and configuration, then remembered."""

from __future__ import annotations

import json
import time

import pytest

from cityseg.runtime import tuning
from cityseg.runtime.tuning import StepSetting, candidate_settings, fastest_setting

BF16_CL, BF16, FP32_CL, FP32 = (
    StepSetting("bf16", True),
    StepSetting("bf16", False),
    StepSetting("fp32", True),
    StepSetting("fp32", False),
)
SETTINGS = [BF16_CL, BF16, FP32_CL, FP32]


def sleeping_steps(seconds: dict[StepSetting, float], calls: list[StepSetting]):
    """A step factory whose steps sleep a setting's seconds and record the setting."""

    def make_step(setting: StepSetting):
        def step() -> None:
            calls.append(setting)
            time.sleep(seconds[setting])

        return step

    return make_step


def refusing_steps(setting: StepSetting):
    raise AssertionError("measured again: the remembered setting was not used")


def test_candidates_are_every_combination_in_order_without_repeats():
    by_threads = candidate_settings(["bf16"], [True], [2, 1])
    assert by_threads == [StepSetting("bf16", True, 2), StepSetting("bf16", True, 1)]
    assert candidate_settings(["bf16", "fp32"], [True, False]) == SETTINGS
    assert candidate_settings(["fp32", "fp32"], [True]) == [FP32_CL]


def test_the_fastest_setting_is_measured_remembered_and_reused(tmp_path):
    seconds = {BF16_CL: 0.03, BF16: 0.03, FP32_CL: 0.03, FP32: 0.001}
    calls: list[StepSetting] = []
    choice, note = fastest_setting(
        "net | batch 8", SETTINGS, sleeping_steps(seconds, calls), tmp_path
    )
    assert choice == FP32
    assert sorted(set(calls), key=SETTINGS.index) == SETTINGS  # each was timed
    # an untimed and a timed step of each, then only of those within 1.5x of the fastest
    assert len(calls) == 4 * 2 + 2 and calls[8:] == [FP32, FP32]
    assert note.startswith("speed: fp32, contiguous, the fastest of a step measured in")
    assert f"remembered in {tmp_path / 'speed.json'}" in note
    (entry,) = json.loads((tmp_path / "speed.json").read_text()).values()
    assert entry["setting"] == {"precision": "fp32", "channels_last": False, "threads": 0}
    assert set(entry["step_ms"]) == {s.describe() for s in SETTINGS}

    again, note = fastest_setting("net | batch 8", SETTINGS, refusing_steps, tmp_path)
    assert again == FP32 and "the fastest when measured before" in note


def test_a_step_after_another_settings_step_is_not_the_one_timed():
    # Like oneDNN's kernel cache: a step right after another setting's rebuilds its kernels.
    base = {BF16_CL: 0.004, BF16: 0.012, FP32_CL: 0.012, FP32: 0.012}
    last: list[StepSetting] = []

    def make_step(setting: StepSetting):
        def step() -> None:
            rebuilt = last and last[-1] != setting
            time.sleep(base[setting] + (0.04 if rebuilt else 0.0))
            last.append(setting)

        return step

    times = tuning.time_settings(make_step, SETTINGS)
    assert max(times.values()) < 0.035  # no timed step paid for a rebuild
    assert min(times, key=times.get) == BF16_CL


def test_a_close_call_is_timed_again_and_a_clear_one_is_not(tmp_path):
    seconds = {BF16_CL: 0.03, BF16: 0.010, FP32_CL: 0.03, FP32: 0.0108}
    calls: list[StepSetting] = []
    choice, note = fastest_setting("net", SETTINGS, sleeping_steps(seconds, calls), tmp_path)
    assert choice == BF16
    # a round of all four, one of the two still in the race, then four more rounds of the two
    # within 10% of each other
    assert len(calls) == 4 * 2 + 2 * 2 + 2 * 2 * tuning.CLOSE_CALL_STEPS
    assert calls[8:] == [BF16, BF16, FP32, FP32] * (1 + tuning.CLOSE_CALL_STEPS)
    assert "bf16, contiguous 1" in note and "bf16, channels_last 3" in note


def test_another_configuration_or_candidate_list_is_measured_apart(tmp_path):
    seconds = {BF16_CL: 0.001, BF16: 0.02, FP32_CL: 0.02, FP32: 0.02}
    calls: list[StepSetting] = []
    fastest_setting("net | batch 8", SETTINGS, sleeping_steps(seconds, calls), tmp_path)
    first = len(calls)
    choice, _ = fastest_setting("net | batch 1", SETTINGS, sleeping_steps(seconds, calls), tmp_path)
    assert choice == BF16_CL and len(calls) == 2 * first
    apart = {BF16: 0.001, FP32: 0.02}
    two = [BF16, FP32]
    choice, _ = fastest_setting("net | batch 1", two, sleeping_steps(apart, calls), tmp_path)
    assert choice == BF16 and len(calls) == 2 * first + 4 + 2
    assert len(json.loads((tmp_path / "speed.json").read_text())) == 3


def test_a_remembered_setting_is_for_this_machine_only(tmp_path, monkeypatch):
    seconds = dict.fromkeys(SETTINGS, 0.001)
    fastest_setting("net", SETTINGS, sleeping_steps(seconds, []), tmp_path)
    monkeypatch.setattr(tuning.processes, "cpu_model", lambda: "Another CPU")
    calls: list[StepSetting] = []
    fastest_setting("net", SETTINGS, sleeping_steps(seconds, calls), tmp_path)
    assert calls  # measured again


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"k": {"setting": 3}}'])
def test_a_damaged_cache_counts_as_nothing_remembered(tmp_path, content):
    (tmp_path / "speed.json").write_text(content)
    seconds = {BF16_CL: 0.02, BF16: 0.02, FP32_CL: 0.001, FP32: 0.02}
    choice, note = fastest_setting("net", SETTINGS, sleeping_steps(seconds, []), tmp_path)
    assert choice == FP32_CL and "remembered in" in note
    assert json.loads((tmp_path / "speed.json").read_text())  # rewritten whole


def test_an_unwritable_cache_folder_still_gives_the_fastest(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    seconds = {BF16_CL: 0.001, BF16: 0.02, FP32_CL: 0.02, FP32: 0.02}
    choice, note = fastest_setting("net", SETTINGS, sleeping_steps(seconds, []), blocker / "sub")
    assert choice == BF16_CL and "not remembered: " in note and str(blocker) in note


def test_a_single_candidate_is_not_measured(tmp_path):
    assert fastest_setting("net", [FP32], refusing_steps, tmp_path) == (FP32, "")
    assert not (tmp_path / "speed.json").exists()


def test_the_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CITYSEG_CACHE_DIR", str(tmp_path / "mine"))
    assert tuning.cache_folder() == tmp_path / "mine"
    monkeypatch.delenv("CITYSEG_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert tuning.cache_folder() == tmp_path / "xdg" / "cityseg"


class FakeClock:
    """``time.perf_counter`` of :mod:`cityseg.runtime.tuning`, moved on only by fake steps."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def fake_steps(clock: FakeClock, seconds: dict, calls: list, build: float = 0.0, built=None):
    """A step factory on ``clock``: building a step takes ``build`` s (and is noted in ``built``),
    a step its setting's seconds."""

    def make_step(setting: StepSetting):
        clock.now += build
        if built is not None:
            built.append(setting)

        def step() -> None:
            calls.append(setting)
            clock.now += seconds[setting]

        return step

    return make_step


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(tuning, "time", fake)
    return fake


def test_a_run_too_short_for_the_measurement_to_pay_takes_the_rule_unmeasured(tmp_path):
    least = tuning.least_steps_to_measure(len(SETTINGS))
    assert least == 120  # a step of each of 4 candidates at 1.5x the rule's within 5% of the run
    choice, note = fastest_setting("net", SETTINGS, refusing_steps, tmp_path, least - 1)
    assert choice == SETTINGS[0]
    assert note == (
        "speed: bf16, channels_last, the rule's, unmeasured: a run of 119 steps is too short for "
        "measuring 4 settings to pay (at most 5% of a run; measured from 120 steps)"
    )
    assert not (tmp_path / "speed.json").exists()  # a longer run measures


def test_a_measurement_that_would_cost_more_than_its_share_is_skipped(tmp_path, clock):
    seconds = {BF16_CL: 0.1, BF16: 0.1, FP32_CL: 0.1, FP32: 0.05}
    calls: list[StepSetting] = []
    # the rule's copy takes 1 s to build: a round of all four about 4 x (1.1 + 1.5 x 0.1) = 5 s,
    # more than 5% of 500 steps of 0.1 s
    built: list[StepSetting] = []
    steps = fake_steps(clock, seconds, calls, build=1.0, built=built)
    choice, note = fastest_setting("net", SETTINGS, steps, tmp_path, planned_steps=500)
    assert choice == BF16_CL and calls == [BF16_CL, BF16_CL]  # built, stepped, a step timed
    assert note == (
        "speed: bf16, channels_last, the rule's, unmeasured: measuring 4 settings (about 5 s) "
        "would cost more than 5% of this run (500 steps of 100 ms)"
    )
    assert not (tmp_path / "speed.json").exists()
    calls.clear()
    built.clear()
    choice, note = fastest_setting("net", SETTINGS, steps, tmp_path, planned_steps=1100)
    assert choice == FP32 and "the fastest of a step measured in" in note
    assert calls[:2] == [BF16_CL, BF16_CL] and built == SETTINGS  # the rule's copy built once


def test_rounds_of_the_measurement_stop_where_the_share_runs_out(tmp_path, clock):
    seconds = dict.fromkeys(SETTINGS, 0.1)  # all close calls: unbounded, 6 rounds in all
    calls: list[StepSetting] = []
    unbounded = fake_steps(clock, seconds, calls)
    fastest_setting("net", SETTINGS, unbounded, tmp_path / "unbounded")
    assert len(calls) == 8 * (2 + tuning.CLOSE_CALL_STEPS)
    calls.clear()
    clock.now = 0.0
    # 300 steps of 0.1 s: 1.5 s to measure in; the estimate (0.2 s) and a round (0.8 s) fit,
    # a second round does not
    choice, note = fastest_setting("net", SETTINGS, unbounded, tmp_path, planned_steps=300)
    assert len(calls) == 2 + 8 and clock.now <= 0.05 * 300 * 0.1
    assert "measured in" in note and "remembered in" in note
    clock.now = 0.0
    calls.clear()
    fastest_setting("net", SETTINGS, unbounded, tmp_path / "long", planned_steps=10**6)
    assert len(calls) == 2 + 8 * (2 + tuning.CLOSE_CALL_STEPS)


def test_a_measurement_marked_stale_is_measured_again(tmp_path):
    seconds = {BF16_CL: 0.02, BF16: 0.02, FP32_CL: 0.001, FP32: 0.02}
    fastest_setting("net", SETTINGS, sleeping_steps(seconds, []), tmp_path)
    path = tmp_path / "speed.json"
    known = json.loads(path.read_text())
    (entry,) = known.values()
    entry["stale"] = True  # as a run whose steps disagreed with it marks it
    path.write_text(json.dumps(known))
    choice, note = fastest_setting("net", SETTINGS, refusing_steps, tmp_path, planned_steps=10)
    assert choice == BF16_CL and "the rule's, unmeasured (measured before, found stale)" in note
    faster = {BF16_CL: 0.001, BF16: 0.02, FP32_CL: 0.02, FP32: 0.02}  # the cores are free now
    choice, note = fastest_setting("net", SETTINGS, sleeping_steps(faster, []), tmp_path)
    assert choice == BF16_CL and "measured in 0 s (measured before, found stale)" in note
    (entry,) = json.loads(path.read_text()).values()
    assert "stale" not in entry and entry["setting"]["precision"] == "bf16"
    again, note = fastest_setting("net", SETTINGS, refusing_steps, tmp_path)
    assert again == BF16_CL and "the fastest when measured before" in note
