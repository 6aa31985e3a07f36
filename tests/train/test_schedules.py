"""Learning-rate schedules (warm-up, poly, cosine, plateau), optimisers and early stopping."""

from __future__ import annotations

import math

import pytest
import torch

from cityseg.config import load_config
from cityseg.train.schedules import LRSchedule, Patience, build_optimizer, build_schedule


def optimizer(lr: float = 0.1):
    return torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=lr)


def test_poly_decays_to_the_floor():
    schedule = LRSchedule(optimizer(), "poly", total_steps=100, poly_power=0.9, min_lr=0.001)
    assert schedule.lr_at(0) == pytest.approx(0.1)
    assert schedule.lr_at(50) == pytest.approx(0.001 + 0.099 * 0.5**0.9)
    assert schedule.lr_at(100) == pytest.approx(0.001)
    assert schedule.lr_at(500) == pytest.approx(0.001)


def test_cosine_with_warmup():
    schedule = LRSchedule(optimizer(), "cosine", total_steps=110, warmup_steps=10)
    warmup = [schedule.lr_at(step) for step in range(10)]
    assert warmup == sorted(warmup) and warmup[0] == pytest.approx(0.1 / 11)
    assert schedule.lr_at(10) == pytest.approx(0.1)
    assert schedule.lr_at(60) == pytest.approx(0.05)
    assert schedule.lr_at(110) == pytest.approx(0.0, abs=1e-12)


def test_set_step_writes_the_optimizer():
    opt = optimizer()
    schedule = LRSchedule(opt, "poly", total_steps=10)
    lr = schedule.set_step(5)
    assert opt.param_groups[0]["lr"] == lr == pytest.approx(0.1 * 0.5**0.9)


def test_plateau_lowers_the_rate_after_patience_and_restores_from_state():
    schedule = LRSchedule(optimizer(), "plateau", 100, plateau_factor=0.5, plateau_patience=2)
    for score in (0.1, 0.2, 0.2, 0.15):
        schedule.observe(score)
    assert schedule.lr_at(50) == pytest.approx(0.05)
    schedule.observe(0.1)
    assert schedule.lr_at(50) == pytest.approx(0.05)  # waiting counts again from zero
    state = schedule.state_dict()
    restored = LRSchedule(optimizer(), "plateau", 100, plateau_factor=0.5, plateau_patience=2)
    restored.load_state_dict(state)
    assert restored.lr_at(50) == schedule.lr_at(50) and restored.plateau.wait == 1


def test_constant_ignores_scores():
    schedule = LRSchedule(optimizer(), "constant", 100)
    for score in (0.3, 0.1, 0.1, 0.1, 0.1):
        schedule.observe(score)
    assert schedule.lr_at(99) == 0.1


def test_patience_counts_validations_without_improvement():
    patience = Patience(3)
    assert [patience.observe(s) for s in (0.1, 0.05, 0.2, 0.2, 0.1, 0.19)] == [
        False,
        False,
        False,
        False,
        False,
        True,
    ]
    assert patience.best == 0.2
    never = Patience(None)
    assert not any(never.observe(0.0) for _ in range(50))


@pytest.mark.parametrize(
    "name, cls",
    [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)],
)
def test_optimizers(name, cls):
    config = load_config(
        None, [f"train.optimizer={name}", "train.lr=0.05", "train.weight_decay=1e-4"]
    )
    built = build_optimizer(torch.nn.Linear(2, 2), config.train)
    assert type(built) is cls
    assert built.param_groups[0]["lr"] == 0.05 and built.param_groups[0]["weight_decay"] == 1e-4
    if name == "sgd":
        assert built.param_groups[0]["momentum"] == 0.9


def test_build_schedule_from_config():
    config = load_config(None, ["train.schedule=cosine", "train.warmup_iterations=5"])
    schedule = build_schedule(optimizer(config.train.lr), config.train, total_steps=50)
    assert schedule.kind == "cosine" and schedule.warmup_steps == 5
    assert math.isclose(schedule.lr_at(5), config.train.lr)
