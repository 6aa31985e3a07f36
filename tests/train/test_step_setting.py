"""The precision and layout a run trains with: given, kept on resume, or measured on a CPU."""

from __future__ import annotations

import json

import pytest
import torch

from cityseg.runtime.precision import cpu_bf16_support
from cityseg.runtime.step_check import CHECK_AFTER_STEPS, CHECK_STEPS
from cityseg.runtime.tuning import StepSetting, cache_key
from cityseg.train import step_setting
from cityseg.train.engine import train
from cityseg.train.step_setting import choose_step_setting, probe_step
from tests.helpers import write_scenes
from tests.helpers.training import tiny_config

CPU = torch.device("cpu")


@pytest.fixture
def cache(monkeypatch, tmp_path):
    monkeypatch.setenv("CITYSEG_CACHE_DIR", str(tmp_path))
    return tmp_path / "speed.json"


@pytest.fixture
def no_measuring(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("measured")

    monkeypatch.setattr(step_setting, "fastest_setting", refuse)


def config(tmp_path, *overrides):
    """A tiny run's configuration, measured where it says auto (not deterministic)."""
    base = ("model.base_width=4", "data.size=[32, 64]", "train.deterministic=false")
    return tiny_config(tmp_path, *base, *overrides)


def test_a_given_precision_and_layout_are_used_unmeasured(tmp_path, cache, no_measuring):
    chosen = choose_step_setting(
        config(tmp_path, "train.precision=fp32", "train.channels_last=false"), CPU, 2
    )
    assert chosen == (StepSetting("fp32", False), "")
    assert not cache.exists()


def test_auto_on_a_cpu_is_measured_once_and_remembered(tmp_path, cache):
    auto = config(tmp_path, "train.precision=auto", "train.channels_last=auto")
    setting, note = choose_step_setting(auto, CPU, 2)
    precisions = {"bf16", "fp32"} if cpu_bf16_support() != "none" else {"fp32"}
    assert setting.precision in precisions
    assert note.startswith(f"speed: {setting.describe()}, the fastest of a step measured in")
    (entry,) = json.loads(cache.read_text()).values()
    assert len(entry["step_ms"]) == 2 * len(precisions)  # each precision, both layouts
    again, note = choose_step_setting(auto, CPU, 2)
    assert again == setting and "the fastest when measured before" in note
    _, note = choose_step_setting(auto, CPU, 4)  # another batch: measured apart
    assert "measured in" in note and len(json.loads(cache.read_text())) == 2


def test_only_the_auto_part_is_measured(tmp_path, cache):
    setting, _ = choose_step_setting(
        config(tmp_path, "train.precision=fp32", "train.channels_last=auto"), CPU, 2
    )
    assert setting.precision == "fp32"
    (entry,) = json.loads(cache.read_text()).values()
    assert set(entry["step_ms"]) == {"fp32, channels_last", "fp32, contiguous"}


def test_a_resumed_run_keeps_the_setting_its_checkpoint_recorded(tmp_path, no_measuring):
    auto = config(tmp_path, "train.precision=auto", "train.channels_last=auto")
    state = {"precision": "fp32", "channels_last": False}
    setting, note = choose_step_setting(auto, CPU, 2, resume_state=state)
    assert setting == StepSetting("fp32", False)
    assert note == "speed: fp32, contiguous, as the run trained so far"
    older = {"precision": "fp32"}  # written before the layout was recorded: channels_last
    assert choose_step_setting(auto, CPU, 2, resume_state=older)[0] == StepSetting("fp32", True)


def test_a_setting_the_configuration_now_excludes_is_not_kept_on_resume(tmp_path, no_measuring):
    given = config(tmp_path, "train.precision=fp32", "train.channels_last=true")
    state = {"precision": "bf16", "channels_last": False}
    assert choose_step_setting(given, CPU, 2, resume_state=state)[0] == StepSetting("fp32", True)


def test_several_processes_take_the_rule_unmeasured(tmp_path, no_measuring):
    auto = config(tmp_path, "train.precision=auto", "train.channels_last=auto")
    setting, note = choose_step_setting(auto, CPU, 2, world_size=2)
    assert setting.channels_last and note == ""


def test_the_probe_trains_a_copy_and_leaves_the_random_state_alone(tmp_path):
    dropout = config(tmp_path, "model.dropout=0.5", "train.precision=fp32")
    torch.manual_seed(123)
    before = torch.get_rng_state()
    step = probe_step(dropout, CPU, StepSetting("fp32", True), 2, (32, 64))
    step()
    step()
    assert torch.equal(torch.get_rng_state(), before)


@pytest.fixture
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def test_with_several_threads_one_thread_is_a_candidate_and_the_probe_restores_them(
    tmp_path, cache, two_threads
):
    auto = config(tmp_path, "train.precision=fp32", "train.channels_last=auto")
    setting, note = choose_step_setting(auto, CPU, 2)
    assert setting.threads in (1, 2) and torch.get_num_threads() == 2
    (entry,) = json.loads(cache.read_text()).values()
    assert set(entry["step_ms"]) == {
        f"fp32, {layout}, {threads}" for layout in ("channels_last", "contiguous")
        for threads in ("2 threads", "1 thread")
    }  # fmt: skip
    assert entry["setting"]["threads"] == setting.threads


def test_threads_are_left_alone_when_nothing_is_auto(tmp_path, cache, two_threads, no_measuring):
    given = config(tmp_path, "train.precision=fp32", "train.channels_last=true")
    assert choose_step_setting(given, CPU, 2) == (StepSetting("fp32", True), "")


def test_a_checkpoint_without_threads_resumes_with_all_of_them(tmp_path, two_threads, no_measuring):
    auto = config(tmp_path, "train.precision=auto", "train.channels_last=auto")
    state = {"precision": "fp32", "channels_last": True}
    assert choose_step_setting(auto, CPU, 2, resume_state=state)[0] == StepSetting("fp32", True, 2)


def test_a_deterministic_run_takes_the_rule_unmeasured(tmp_path, cache, no_measuring, two_threads):
    auto = config(tmp_path, "train.precision=auto", "train.channels_last=auto")
    deterministic = config(tmp_path, "train.precision=auto", "train.channels_last=auto",
                           "train.deterministic=true")  # fmt: skip
    setting, note = choose_step_setting(deterministic, CPU, 2, planned_steps=10**6)
    rule = step_setting.candidates(auto, CPU, 1)[0][0]
    assert setting == rule and rule.channels_last and rule.threads == 2  # all threads
    assert rule.precision == ("bf16" if cpu_bf16_support() != "none" else "fp32")
    assert note == f"speed: {rule.describe()}, the rule's, unmeasured: train.deterministic fixes it"
    assert not cache.exists()


def test_a_run_too_short_for_measuring_to_pay_takes_the_rule(tmp_path, cache):
    auto = config(tmp_path, "train.precision=auto", "train.channels_last=auto")
    setting, note = choose_step_setting(auto, CPU, 2, planned_steps=12)
    assert setting == step_setting.candidates(auto, CPU, 1)[0][0]
    assert "the rule's, unmeasured: a run of 12 steps is too short" in note
    assert not cache.exists()


def test_the_run_checks_its_steps_against_the_step_measured_for_its_setting(tmp_path, cache):
    auto = config(tmp_path, "train.precision=auto", "train.channels_last=auto")
    setting, _ = choose_step_setting(auto, CPU, 2)
    check = step_setting.step_time_check(auto, CPU, setting, 2)
    (entry,) = json.loads(cache.read_text()).values()
    assert not check.done and check.measured_s == entry["step_ms"][setting.describe()] / 1000
    others = [s for s in step_setting.candidates(auto, CPU, 1)[0] if s != setting]
    assert step_setting.step_time_check(auto, CPU, others[0], 2).done  # e.g. a resumed one
    assert step_setting.step_time_check(auto, CPU, setting, 4).done  # not measured at batch 4
    for unlike_the_probe in ("train.accumulate=2", "train.compile=true"):
        changed = config(tmp_path, "train.precision=auto", "train.channels_last=auto",
                         unlike_the_probe)  # fmt: skip
        assert step_setting.step_time_check(changed, CPU, setting, 2).done


def test_the_trainer_bounds_the_measurement_by_its_run_and_checks_its_steps(
    tmp_path, cache, capsys
):
    scenes = write_scenes(tmp_path / "scenes", {"train": 16, "val": 1}, 32, 64)
    given = ("train.precision=fp32", "train.channels_last=auto", "train.batch_size=1")
    short = config(scenes, *given, "train.epochs=1", "train.max_iterations=3")
    train(short, tmp_path / "short")
    assert "a run of 3 steps is too short" in capsys.readouterr().out and not cache.exists()

    steps = CHECK_AFTER_STEPS + CHECK_STEPS
    run = config(scenes, *given, "train.epochs=2", f"train.max_iterations={steps}")
    settings = step_setting.candidates(run, CPU, 1)[0]
    remembered = {  # as if measured at a step of 1 microsecond: this run's steps are far slower
        "setting": {"precision": "fp32", "channels_last": True, "threads": settings[0].threads},
        "step_ms": {settings[0].describe(): 0.001},
    }
    key = cache_key(step_setting.speed_key(run, 1), settings)
    cache.write_text(json.dumps({key: remembered}))
    train(run, tmp_path / "run")
    out = capsys.readouterr().out
    assert f"speed: {settings[0].describe()}, the fastest when measured before" in out
    assert "the 0 ms measured before; the next run of this configuration measures" in out
    assert json.loads(cache.read_text())[key]["stale"] is True
