"""The training loop end to end on a tiny dataset: run folder, records, checkpoints, resume."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from torch.overrides import TorchFunctionMode

from cityseg.checkpoint.format import FORMAT
from cityseg.checkpoint.loading import load_model
from cityseg.errors import CheckpointError, ConfigError
from cityseg.train.engine import train
from tests.helpers import tiny_config, write_scenes

RECORD_KEYS = {
    "epoch",
    "iteration",
    "train_loss",
    "val_loss",
    "pixel_accuracy",
    "mean_iou",
    "lr",
    "time",
    "images_per_s",
}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return write_scenes(tmp_path_factory.mktemp("scenes"), {"train": 12, "val": 4})


def test_run_folder_holds_everything(scenes, tmp_path, capsys):
    run = tmp_path / "run"
    record = train(tiny_config(scenes, "train.epochs=2"), run)
    assert {p.name for p in run.iterdir()} >= {
        "config.yaml",
        "checkpoint_last.pt",
        "checkpoint_best.pt",
        "metrics.jsonl",
        "curves.png",
        "tensorboard",
    }
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and set(records[0]) == RECORD_KEYS
    assert records[-1] == record and record["iteration"] == 6  # 12 images / batch 4, 2 epochs
    assert 0 <= record["mean_iou"] <= 1 and record["images_per_s"] > 0
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"] == 2
    assert not list(run.glob(".*"))  # no temporary file left behind

    state = torch.load(run / "checkpoint_last.pt", weights_only=True)
    assert state["format"] == FORMAT and state["epoch"] == 2 and state["iteration"] == 6
    assert state["input_size"] == [64, 128] and len(state["class_names"]) == 19
    assert state["normalization"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    for key in ("optimizer", "scheduler", "scaler", "early_stopping", "rng", "config"):
        assert key in state
    model, meta = load_model(run / "checkpoint_best.pt")
    assert (
        not model.training
        and "optimizer" not in meta
        and meta["model_config"]["widths"] == [8, 16, 32]
    )
    assert model(torch.zeros(1, 3, 64, 128)).shape == (1, 19, 64, 128)

    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("device cpu") and "precision fp32" in out
    assert "allocator" in out.splitlines()[0]
    assert "epoch 2/2 | step 6 |" in out


def test_refuses_to_overwrite_a_run_and_resume_needs_one(scenes, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(scenes, "train.epochs=1"), run)
    with pytest.raises(ConfigError, match="already holds a run"):
        train(tiny_config(scenes, "train.epochs=1"), run)
    with pytest.raises(CheckpointError, match="checkpoint_last.pt"):
        train(tiny_config(scenes), tmp_path / "empty", resume=True)


def test_resume_is_bit_exact(scenes, tmp_path):
    """2 epochs, then resume for 2 more == 4 epochs straight: same weights, bit for bit."""
    common = (
        "train.max_iterations=12",  # fixes the poly schedule's length for both runs
        "data.rotation=5",
        "data.color_jitter=0.2",
        "model.dropout=0.1",
        "train.optimizer=adamw",
        "train.weight_decay=0.01",
    )
    straight = tmp_path / "straight"
    train(tiny_config(scenes, "train.epochs=4", *common), straight)
    resumed = tmp_path / "resumed"
    train(tiny_config(scenes, "train.epochs=2", *common), resumed)
    halfway = torch.load(resumed / "checkpoint_last.pt", weights_only=True)
    assert halfway["epoch"] == 2 and halfway["iteration"] == 6
    train(tiny_config(scenes, "train.epochs=4", *common), resumed, resume=True)

    a = torch.load(straight / "checkpoint_last.pt", weights_only=True)
    b = torch.load(resumed / "checkpoint_last.pt", weights_only=True)
    assert (a["epoch"], a["iteration"]) == (b["epoch"], b["iteration"]) == (4, 12)
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert not torch.equal(a["model"]["outc.weight"], halfway["model"]["outc.weight"])
    for index, state in a["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg_sq"], b["optimizer"]["state"][index]["exp_avg_sq"])
    lines = (resumed / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]
    assert json.loads(lines[-1])["mean_iou"] == a["metrics"]["mean_iou"]


def test_held_out_validation_accumulation_and_options(scenes, tmp_path, capsys):
    record = train(
        tiny_config(
            scenes,
            "train.epochs=1",
            "data.val_split=null",
            "data.val_fraction=0.25",
            "train.accumulate=2",
            "train.clip_grad_norm=1.0",
            "train.schedule=cosine",
            "train.warmup_iterations=1",
            "loss.class_weights=median",
            "loss.ohem_thresh=0.7",
            "loss.ohem_min_kept=100",
            "train.channels_last=false",
            "data.crop=[48, 64]",
            "data.workers=1",
        ),
        tmp_path / "run",
    )
    out = capsys.readouterr().out
    assert "9 training images, 3 validation (3 held out of 'train', seed 0)" in out
    assert "class weights (median, from 9 labels)" in out
    assert "batch 4 = 1 process(es) x 2 x 2 accumulation" in out
    assert record["iteration"] == 2  # 9 images -> 4 micro-batches of 2 -> 2 steps of 4
    state = torch.load(tmp_path / "run" / "checkpoint_last.pt", weights_only=True)
    assert len(state["class_weights"]) == 19 and state["input_size"] == [64, 128]
    assert state["crop_size"] == [48, 64]


def test_early_stopping_stops(scenes, tmp_path, capsys):
    record = train(
        tiny_config(scenes, "train.epochs=20", "train.lr=1e-9", "train.early_stopping=1"),
        tmp_path / "run",
    )
    assert record["epoch"] < 20
    assert "early stopping" in capsys.readouterr().out


def test_config_problems_found_before_training(scenes, tmp_path):
    with pytest.raises(ConfigError, match="not divisible"):
        train(tiny_config(scenes, "train.batch_size=6", "train.accumulate=4"), tmp_path / "a")
    with pytest.raises(ConfigError, match="need validation"):
        train(
            tiny_config(
                scenes, "data.val_split=null", "data.val_fraction=0", "train.schedule=plateau"
            ),
            tmp_path / "b",
        )
    with pytest.raises(ConfigError, match="fp16"):
        train(tiny_config(scenes, "train.precision=fp16"), tmp_path / "c")


def test_a_run_starts_from_another_runs_weights(scenes, tmp_path, capsys):
    first = tmp_path / "first"
    train(tiny_config(scenes, "train.epochs=2"), first)
    best = torch.load(first / "checkpoint_best.pt", weights_only=True)
    second = tmp_path / "second"
    config = tiny_config(scenes, "train.epochs=1", "train.lr=1e-12", f"train.init_from={first}")
    train(config, second)
    assert f"weights from {first / 'checkpoint_best.pt'} (epoch {best['epoch']})" in (
        capsys.readouterr().out
    )
    started = torch.load(second / "checkpoint_last.pt", weights_only=True)["model"]
    for name, tensor in best["model"].items():
        if name.endswith("weight") and "running" not in name:  # lr 1e-12: the weights stay
            torch.testing.assert_close(started[name], tensor)

    train(tiny_config(scenes, "train.epochs=2", f"train.init_from={first}"), second, resume=True)
    assert "weights from" not in capsys.readouterr().out  # a resumed run keeps its own


def test_resume_in_another_precision(scenes, tmp_path, monkeypatch, capsys):
    """precision=auto resolves on each machine: a run saved without a gradient scaler continues
    where auto means fp16 (a GPU without native bf16), and back; each change is said."""
    from cityseg.runtime.tuning import StepSetting
    from cityseg.train import run as training_run

    resolved = {"name": "fp32"}
    monkeypatch.setattr(
        training_run,
        "choose_step_setting",
        lambda *args, **keywords: (StepSetting(resolved["name"], True), ""),
    )
    run = tmp_path / "run"
    train(tiny_config(scenes, "train.epochs=1", "train.precision=auto"), run)
    assert torch.load(run / "checkpoint_last.pt", weights_only=True)["precision"] == "fp32"
    capsys.readouterr()

    resolved["name"] = "fp16"  # (CPU autocast runs float16 too, with a CPU gradient scaler)
    train(tiny_config(scenes, "train.epochs=2", "train.precision=auto"), run, resume=True)
    state = torch.load(run / "checkpoint_last.pt", weights_only=True)
    assert state["epoch"] == 2 and state["precision"] == "fp16" and state["scaler"]["scale"] > 0
    out = capsys.readouterr().out
    assert "the run was trained in fp32 and continues in fp16 (train.precision=auto here)" in out

    resolved["name"] = "bf16"
    train(tiny_config(scenes, "train.epochs=3", "train.precision=auto"), run, resume=True)
    state = torch.load(run / "checkpoint_last.pt", weights_only=True)
    assert state["epoch"] == 3 and state["precision"] == "bf16" and state["scaler"] == {}
    assert "trained in fp16 and continues in bf16" in capsys.readouterr().out


class Float64Watch(TorchFunctionMode):
    """Names the torch operations that produce a float64 tensor (which MPS cannot hold)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        outputs = result if isinstance(result, (tuple, list)) else (result,)
        if any(isinstance(t, torch.Tensor) and t.dtype == torch.float64 for t in outputs):
            self.seen.append(getattr(func, "__name__", repr(func)))
        return result


def test_training_and_validation_need_no_float64(scenes, tmp_path):
    """Apple GPUs (MPS) have no float64: nothing the loop keeps on the device may use it."""
    watch = Float64Watch()
    with watch:
        record = train(tiny_config(scenes, "train.epochs=1"), tmp_path / "run")
    assert watch.seen == [] and record["val_loss"] > 0 and record["train_loss"] > 0


def test_the_measured_thread_count_holds_while_fitting_and_is_given_back(
    scenes, tmp_path, monkeypatch
):
    """A run measured to train on one thread trains on one, and a later run in the same process
    (the demo's second stage) starts from the thread count it found before."""
    from cityseg.runtime.tuning import StepSetting
    from cityseg.train import engine
    from cityseg.train import run as training_run

    monkeypatch.setattr(
        training_run, "choose_step_setting", lambda *a, **k: (StepSetting("fp32", True, 1), "")
    )
    seen, run_epochs = [], engine.Trainer._run_epochs

    def watched(self):
        seen.append(torch.get_num_threads())
        return run_epochs(self)

    monkeypatch.setattr(engine.Trainer, "_run_epochs", watched)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        train(tiny_config(scenes, "train.epochs=1"), tmp_path / "run")
        assert seen == [1] and torch.get_num_threads() == 2
        state = torch.load(tmp_path / "run" / "checkpoint_last.pt", weights_only=True)
        assert (state["precision"], state["channels_last"], state["threads"]) == ("fp32", True, 1)
    finally:
        torch.set_num_threads(previous)
