"""The guards around the training step: the losses read later still name the first bad step; the
steps float16's scaler skips are counted; one process stops when it is asked."""

from __future__ import annotations

import math

import torch

from cityseg.train.distributed import DistInfo
from cityseg.train.guards import LossWatch, SkippedSteps, StopVote

CPU = torch.device("cpu")


def test_the_loss_watch_names_the_first_step_whose_loss_was_not_finite():
    watch = LossWatch(DistInfo(), CPU, read_every=3)
    for iteration, losses in enumerate([[1.0, 2.0], [3.0, math.nan], [math.inf]], start=1):
        for loss in losses:
            watch.micro_step(torch.tensor(loss))
        watch.step(iteration, 1, lr=0.1 * iteration)
    assert watch.due()
    loss, step = watch.first_nonfinite()
    assert math.isnan(loss) and (step.iteration, step.epoch, step.lr) == (2, 1, 0.2)
    assert not watch.due() and watch.first_nonfinite() is None  # read once
    watch.micro_step(torch.tensor(0.5))
    watch.step(4, 2, 0.4)
    assert watch.first_nonfinite() is None and watch.last.item() == 0.5


def test_skipped_float16_steps_are_counted_in_a_row():
    parameter = torch.nn.Parameter(torch.ones(1))
    optimizer = torch.optim.SGD([parameter], lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    skips = SkippedSteps(scaler)

    def step(gradient: float) -> bool:
        scaler.scale((parameter * gradient).sum()).backward()
        return skips.take(lambda: (scaler.step(optimizer), scaler.update(), optimizer.zero_grad()))

    assert not step(math.inf) and not step(math.inf) and skips.in_a_row == 2
    assert step(1.0) and skips.in_a_row == 0
    never = SkippedSteps(torch.amp.GradScaler("cpu", enabled=False))
    assert never.take(lambda: None) and never.in_a_row == 0


def test_one_process_stops_when_asked_and_only_then():
    vote = StopVote(DistInfo(), CPU)
    assert vote.after_step(False) is False and vote.after_step(True) is True
    assert vote.flush() is False
