"""The exponential moving average of the weights (train.ema_decay): the rule, the engine's use of
it (validated and saved as the model), and exact resume with it."""

from __future__ import annotations

import pytest
import torch

from cityseg.config import load_config
from cityseg.errors import ConfigError
from cityseg.train.averaging import WeightAverage
from cityseg.train.engine import train
from tests.helpers import tiny_config, write_scenes


def test_the_average_follows_the_rule():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    average = WeightAverage(model, decay=0.9)
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model[1].num_batches_tracked += 5
    decay = average.current_decay()
    assert decay == pytest.approx(2 / 11)  # the warm-up decay, below 0.9
    average.update(model)
    expected = decay * start + (1 - decay) * model[0].weight
    torch.testing.assert_close(average.model[0].weight, expected)
    assert average.model[1].num_batches_tracked == model[1].num_batches_tracked
    for _ in range(200):
        average.update(model)
    assert average.current_decay() == 0.9
    torch.testing.assert_close(average.model[0].weight, model[0].weight)
    assert not any(p.requires_grad for p in average.model.parameters())


def test_decay_out_of_range_is_refused():
    with pytest.raises(ConfigError, match=r"train.ema_decay: expected a value in \[0, 1\)"):
        load_config(None, ["train.ema_decay=1.0"])


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return write_scenes(tmp_path_factory.mktemp("scenes"), {"train": 8, "val": 2})


def test_the_average_is_validated_saved_and_resumed_exactly(scenes, tmp_path):
    common = ("train.ema_decay=0.9", "train.max_iterations=6")
    straight = tmp_path / "straight"
    train(tiny_config(scenes, *common, "train.epochs=3"), straight)
    a = torch.load(straight / "checkpoint_last.pt", weights_only=True)
    assert a["weight_average"]["updates"] == 6
    different = [n for n, t in a["model"].items() if not torch.equal(t, a["trained_model"][n])]
    assert "inc.0.weight" in different  # the saved model is the average, not the trained weights

    resumed = tmp_path / "resumed"
    train(tiny_config(scenes, *common, "train.epochs=1"), resumed)
    train(tiny_config(scenes, *common, "train.epochs=3"), resumed, resume=True)
    b = torch.load(resumed / "checkpoint_last.pt", weights_only=True)
    for key in ("model", "trained_model"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), (key, name)

    # the validation scores are those of the average: re-evaluating it gives the same mIoU
    from cityseg.evaluate.evaluator import evaluate_checkpoint

    metrics = evaluate_checkpoint(straight / "checkpoint_last.pt", scenes, "val", tmp_path / "ev")
    assert metrics["mean_iou"] == pytest.approx(a["metrics"]["mean_iou"], abs=1e-6)


def test_switching_the_average_on_when_resuming(scenes, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(scenes, "train.epochs=1"), run)
    plain = torch.load(run / "checkpoint_last.pt", weights_only=True)
    train(tiny_config(scenes, "train.epochs=2", "train.ema_decay=0.5"), run, resume=True)
    state = torch.load(run / "checkpoint_last.pt", weights_only=True)
    assert state["weight_average"]["updates"] == state["iteration"] - plain["iteration"]
