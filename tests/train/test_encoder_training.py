"""U-Nets on pretrained encoders through the whole product: training from ImageNet weights with
the encoder frozen and at a lower learning rate, exact resume, the normalisation in the
checkpoint, Segmenter, evaluation (whole, slide, TTA), ONNX, init_from and resume without reading
or downloading ImageNet weights, and two DDP processes."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from cityseg.evaluate.evaluator import evaluate_checkpoint
from cityseg.export import export_checkpoint
from cityseg.inference.options import InferenceOptions
from cityseg.model import EncoderUNet, factory, init_encoder
from cityseg.model.encoders.weights import imagenet_state_dict
from cityseg.normalization import TF_LITE_NORMALIZATION
from cityseg.predict import OnnxSegmenter, Segmenter
from cityseg.train.engine import train
from cityseg.train.schedules import build_optimizer
from tests.helpers import tiny_config, write_scenes

RESNET = ("model.encoder=resnet18", "model.decoder_widths=[16, 16, 8, 8, 8]")
LITE = (
    "model.encoder=efficientnet-lite0",
    "model.decoder_widths=[16, 16, 8, 8, 8]",
    "train.optimizer=adamw",
    "train.weight_decay=0.01",
)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return write_scenes(tmp_path_factory.mktemp("scenes"), {"train": 8, "val": 2})


@pytest.fixture(scope="module")
def lite_run(scenes, tmp_path_factory):
    run = tmp_path_factory.mktemp("lite") / "run"
    train(tiny_config(scenes, *LITE, "train.epochs=1"), run)
    return run


@pytest.fixture
def no_imagenet(monkeypatch, tmp_path):
    """No ImageNet weights to be had: an empty hub cache, and any read or download of them
    fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # torch.hub.get_dir() follows TORCH_HOME

    def fail(*args, **kwargs):
        raise AssertionError(f"ImageNet weights read or downloaded: {args}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fail)
    monkeypatch.setattr(factory, "imagenet_state_dict", fail)
    for name in ("resnet18", "efficientnet-lite0"):  # the trap is set
        with pytest.raises(AssertionError, match="ImageNet weights read or downloaded"):
            init_encoder(EncoderUNet(name, decoder_widths=[16, 16, 8, 8, 8]), "imagenet")


def encoder_state(state: dict) -> dict:
    return {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}


def test_frozen_encoder_then_resume_is_exact(scenes, tmp_path):
    common = (*LITE, "train.max_iterations=6", "train.freeze_encoder_epochs=1",
              "train.encoder_lr_mult=0.1")  # fmt: skip
    straight = tmp_path / "straight"
    train(tiny_config(scenes, *common, "train.epochs=3"), straight)
    resumed = tmp_path / "resumed"
    train(tiny_config(scenes, *common, "train.epochs=1"), resumed)
    first = torch.load(resumed / "checkpoint_last.pt", weights_only=True)
    imagenet = imagenet_state_dict("efficientnet-lite0")
    for name, tensor in encoder_state(first["model"]).items():  # weights and BN statistics
        assert torch.equal(tensor, imagenet[name]), name
    train(tiny_config(scenes, *common, "train.epochs=3"), resumed, resume=True)
    a = torch.load(straight / "checkpoint_last.pt", weights_only=True)
    b = torch.load(resumed / "checkpoint_last.pt", weights_only=True)
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    moved = [n for n, t in encoder_state(a["model"]).items() if not torch.equal(t, imagenet[n])]
    assert moved  # thawed after the first epoch
    assert not torch.equal(a["model"]["head.weight"], first["model"]["head.weight"])


def test_the_encoder_learns_at_its_own_rate():
    from cityseg.config import load_config

    config = load_config(None, [*LITE, "train.encoder_lr_mult=0.1", "train.lr=0.01"]).train
    model = EncoderUNet("efficientnet-lite0", decoder_widths=[16, 16, 8, 8, 8])
    optimizer = build_optimizer(model, config)
    from cityseg.train.schedules import LRSchedule

    LRSchedule(optimizer, "constant", 10).set_step(0)
    rates = {group["name"]: group["lr"] for group in optimizer.param_groups}
    assert rates == pytest.approx({"model": 0.01, "encoder": 0.001})
    counted = sum(len(group["params"]) for group in optimizer.param_groups)
    assert counted == len(list(model.parameters()))


def test_the_checkpoint_carries_the_encoder_normalisation(lite_run, scenes, tmp_path):
    state = torch.load(lite_run / "checkpoint_last.pt", weights_only=True)
    assert state["normalization"] == TF_LITE_NORMALIZATION
    assert state["model_config"]["encoder"] == "efficientnet-lite0"
    segmenter = Segmenter.from_checkpoint(lite_run, device="cpu")
    assert segmenter.normalization == TF_LITE_NORMALIZATION
    photo = np.random.default_rng(0).integers(0, 256, (45, 77, 3), dtype=np.uint8)
    labels = segmenter.predict(photo)
    assert labels.shape == (45, 77) and labels.max() < 19
    result = export_checkpoint(lite_run, tmp_path / "lite.onnx")
    assert result.max_abs_logit_diff < 1e-3
    onnx = OnnxSegmenter(tmp_path / "lite.onnx")
    assert onnx.normalization == TF_LITE_NORMALIZATION
    assert (onnx.predict(photo) == labels).mean() > 0.999


@pytest.mark.parametrize(("mode", "tta"), [("whole", False), ("slide", False), ("whole", True)])
def test_evaluate_every_mode(lite_run, scenes, tmp_path, mode, tta):
    metrics = evaluate_checkpoint(
        lite_run, scenes, "val", tmp_path / "eval", InferenceOptions.from_flags(mode, tta=tta),
        device="cpu", progress=False,
        report=mode == "whole" and not tta,
    )  # fmt: skip
    assert metrics["images"] == 2 and 0 <= metrics["mean_iou"] <= 1
    if mode == "whole" and not tta:
        assert (tmp_path / "eval" / "report.html").is_file()


def test_init_from_an_encoder_run_reads_no_imagenet_weights(
    lite_run, scenes, tmp_path, capsys, no_imagenet
):
    train(tiny_config(scenes, *LITE, "train.epochs=1", f"train.init_from={lite_run}"),
          tmp_path / "run")  # fmt: skip
    out = capsys.readouterr().out
    assert f"weights from {lite_run}" in out and "ImageNet weights" not in out


def test_a_resnet_fine_tune_and_its_resume_download_nothing(scenes, tmp_path, capsys, no_imagenet):
    source = tmp_path / "source"
    train(tiny_config(scenes, *RESNET, "model.encoder_weights=none", "train.epochs=1"), source)
    run = tmp_path / "run"
    config = (*RESNET, "model.encoder_weights=imagenet", f"train.init_from={source}")
    train(tiny_config(scenes, *config, "train.epochs=1"), run)
    out = capsys.readouterr().out
    assert f"weights from {source}" in out and "ImageNet" not in out
    first = torch.load(run / "checkpoint_last.pt", weights_only=True)
    train(tiny_config(scenes, *config, "train.epochs=2"), run, resume=True)
    last = torch.load(run / "checkpoint_last.pt", weights_only=True)
    assert (first["epoch"], last["epoch"]) == (1, 2)
    assert not list((tmp_path / "empty_torch_home").rglob("*.pth"))


def test_two_processes_with_gloo(scenes, tmp_path):
    run = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "cityseg", "train", "--out", str(run), f"data.root={scenes}", "data.size=[64,128]",
        "data.workers=0", *LITE, "train.epochs=1", "train.batch_size=4", "train.device=cpu",
        "train.precision=fp32", "train.progress=false", "train.freeze_encoder_epochs=1",
    ]  # fmt: skip
    env = {**os.environ, "CITYSEG_ALLOCATOR": "system", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(run / "checkpoint_last.pt", weights_only=True)
    assert state["world_size"] == 2 and state["model_config"]["encoder"] == "efficientnet-lite0"
