"""Two processes through torchrun on the CPU (gloo): DDP training, metrics over both ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from cityseg.checkpoint.loading import load_model
from cityseg.data import open_dataset
from cityseg.errors import ConfigError
from cityseg.normalization import IMAGENET_NORMALIZATION
from cityseg.train.distributed import DistInfo, setup_distributed, wrap_model
from tests.helpers import write_scenes
from tests.helpers.ddp import run_ranks, train_rank, train_rank_sync_bn
from tests.helpers.syncbn import CpuSyncBatchNorm, enable_cpu_sync_batchnorm


def test_single_process_needs_no_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = setup_distributed()
    assert info == DistInfo() and info.is_main and not info.enabled
    model = torch.nn.Conv2d(3, 3, 1)
    wrapped, note = wrap_model(model, torch.device("cpu"), info, sync_bn=True)
    assert wrapped is model and "sync_bn ignored" in note  # never an error on one device


def pixel_accuracy(run_dir, root) -> float:
    model, meta = load_model(run_dir / "checkpoint_last.pt")
    mean = torch.tensor(IMAGENET_NORMALIZATION["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_NORMALIZATION["std"]).view(1, 3, 1, 1)
    correct = labelled = 0
    for image, target in open_dataset(root, "val"):
        x = (torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255 - mean) / std
        with torch.no_grad():
            prediction = model(x).argmax(1)[0].numpy()
        valid = target != 255
        correct += int((prediction[valid] == target[valid]).sum())
        labelled += int(valid.sum())
    return correct / labelled


def test_two_processes_with_gloo(tmp_path):
    root = write_scenes(tmp_path / "data", {"train": 8, "val": 3})
    run = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "cityseg",
        "train",
        "--out",
        str(run),
        f"data.root={root}",
        "data.size=[64,128]",
        "data.workers=0",
        "model.base_width=8",
        "model.depth=2",
        "train.epochs=2",
        "train.batch_size=4",
        "train.device=cpu",
        "train.precision=fp32",
        "train.sync_bn=true",
        "train.progress=false",
    ]
    env = {**os.environ, "CITYSEG_ALLOCATOR": "system", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "2 processes" in out and out.count("epoch 2/2 |") == 1  # only rank 0 prints
    assert "batch 4 = 2 process(es) x 2 x 1 accumulation" in out
    assert "sync_bn ignored" in out  # CPU: no SyncBatchNorm, and no error either
    state = torch.load(run / "checkpoint_last.pt", weights_only=True)
    assert state["world_size"] == 2 and state["iteration"] == 4  # 8 images / 4 per step x 2
    assert not any(key.startswith("module.") for key in state["model"])
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    # 3 validation images split 2 + 1 over the ranks: the summed confusion sees all of them
    assert np.isclose(record["pixel_accuracy"], pixel_accuracy(run, root), atol=1e-6)


class FakeNode:
    """A torchrun process on a node with ``gpus`` GPUs: what it would set up, never done."""

    def __init__(self, monkeypatch, gpus: int, processes: int = 2) -> None:
        self.backends, self.devices = [], []
        for name, value in {"WORLD_SIZE": processes, "LOCAL_WORLD_SIZE": processes}.items():
            monkeypatch.setenv(name, str(value))
        monkeypatch.setenv("RANK", "0")
        monkeypatch.setenv("LOCAL_RANK", "0")
        monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
        monkeypatch.setattr(torch.cuda, "set_device", self.devices.append)
        monkeypatch.setattr(dist, "is_initialized", lambda: False)
        monkeypatch.setattr(dist, "init_process_group", self.init_process_group)

    def init_process_group(self, backend, **kwargs):
        self.backends.append(backend)


def test_the_backend_follows_the_training_device(monkeypatch):
    node = FakeNode(monkeypatch, gpus=8)
    info = setup_distributed("cpu")  # CPU tensors on a GPU node: gloo, no GPU taken
    assert node.backends == ["gloo"] and node.devices == []
    assert (info.world_size, info.local_world_size) == (2, 2)
    setup_distributed("cuda")
    assert node.backends == ["gloo", "nccl"] and node.devices == [torch.device("cuda", 0)]
    setup_distributed("auto")
    assert node.backends[-1] == "nccl"


def test_more_processes_than_gpus_is_a_clear_error(monkeypatch):
    node = FakeNode(monkeypatch, gpus=1, processes=2)
    for device in ("cuda", "auto"):
        with pytest.raises(ConfigError) as error:
            setup_distributed(device)
        (problem,) = error.value.problems
        assert "2 processes on this node but only 1 GPU(s) visible" in problem
        assert "--nproc_per_node=1" in problem
    assert node.backends == [] and node.devices == []  # nothing set up
    setup_distributed("cpu")  # the same job on the CPU is fine
    assert node.backends == ["gloo"]


SMALL = ("data.size=[32, 64]", "train.epochs=1", "train.batch_size=2", "model.base_width=4")
"""8 images, one per process and step: 4 steps."""


def test_a_process_whose_images_are_all_unreadable_keeps_in_step(tmp_path):
    """With data.skip_bad_samples, a process whose whole micro-batch is unreadable still takes
    part in the step (the others would wait for it until the job timed out)."""
    scenes = write_scenes(tmp_path / "scenes", {"train": 8, "val": 2}, 32, 64)
    images = sorted(scenes.glob("leftImg8bit/train/*/*.png"))
    first_of_rank1 = next(iter(DistributedSampler(range(8), num_replicas=2, rank=1, seed=0)))
    images[first_of_rank1].write_bytes(images[first_of_rank1].read_bytes()[:100])
    run = tmp_path / "run"
    overrides = (*SMALL, "data.skip_bad_samples=true")
    assert run_ranks(train_rank, (scenes, run, overrides, None), timeout=150) == [0, 0]
    state = torch.load(run / "checkpoint_last.pt", weights_only=True)
    assert state["iteration"] == 4
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_blank_step_keeps_sync_batchnorm_in_step(tmp_path, precision):
    """With SyncBatchNorm, whose forward and backward gather every process's statistics in
    training mode only, the blank micro-step of a process whose images were all unreadable must
    make the same collectives as the others' steps (in eval mode it made none: the job hung until
    the distributed timeout, here 30 s). Under bf16 autocast the others' statistics are float32:
    so must the blank step's be, or the all-gather mixes types."""
    scenes = write_scenes(tmp_path / "scenes", {"train": 8, "val": 2}, 32, 64)
    images = sorted(scenes.glob("leftImg8bit/train/*/*.png"))
    first_of_rank1 = next(iter(DistributedSampler(range(8), num_replicas=2, rank=1, seed=0)))
    images[first_of_rank1].write_bytes(images[first_of_rank1].read_bytes()[:100])
    run = tmp_path / "run"
    overrides = (*SMALL, "data.skip_bad_samples=true", f"train.precision={precision}")
    assert run_ranks(train_rank_sync_bn, (scenes, run, overrides), timeout=150) == [0, 0]
    state = torch.load(run / "checkpoint_last.pt", weights_only=True)
    assert state["iteration"] == 4
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


def _sync_batchnorm_rank(rank: int, result_dir) -> None:
    dist.init_process_group("gloo")
    enable_cpu_sync_batchnorm()
    generator = torch.Generator().manual_seed(0)
    full = torch.randn(6, 3, 4, 5, dtype=torch.float64, generator=generator)
    weights = torch.randn(6, 3, 4, 5, dtype=torch.float64, generator=generator)
    plain = torch.nn.BatchNorm2d(3).double()
    torch.nn.init.uniform_(plain.weight)
    torch.nn.init.uniform_(plain.bias)
    synced = torch.nn.SyncBatchNorm(3).double()
    synced.load_state_dict(plain.state_dict())
    synced.__class__ = CpuSyncBatchNorm
    whole = full.clone().requires_grad_()
    (plain(whole) * weights).sum().backward()
    part = [slice(0, 2), slice(2, 6), slice(6, 6)][rank]  # 2, 4 and no images
    mine = full[part].clone().requires_grad_()
    (synced(mine) * weights[part]).sum().backward()
    # (no images: no gradient, which autograd reads as zeros)
    mine_grad = mine.grad if mine.grad is not None else torch.zeros_like(mine)
    weight_grad = synced.weight.grad if synced.weight.grad is not None else plain.weight.grad * 0
    dist.all_reduce(weight_grad)
    good = (
        torch.allclose(mine_grad, whole.grad[part])
        and torch.allclose(weight_grad, plain.weight.grad)
        and torch.allclose(synced.running_mean, plain.running_mean)
        and torch.allclose(synced.running_var, plain.running_var)
    )
    dist.destroy_process_group()
    (result_dir / f"rank{rank}").write_text(str(good))


def test_the_cpu_sync_batchnorm_is_batchnorm_over_all_processes(tmp_path):
    """The CPU kernels of the test above: three processes holding 2, 4 and 0 of 6 images give the
    outputs' gradients, the weights' gradients and the running statistics of one BatchNorm over
    the 6 (a process with no images still takes part, as on GPUs)."""
    assert run_ranks(_sync_batchnorm_rank, (tmp_path,), world_size=3, timeout=120) == [0, 0, 0]
    assert [(tmp_path / f"rank{rank}").read_text() for rank in range(3)] == ["True"] * 3


def test_every_process_validates_the_model_that_is_saved(tmp_path):
    """Without SyncBatchNorm each process ends training with BatchNorm statistics of its own;
    validation, shared by the processes, must use rank 0's: those of the checkpoint."""
    scenes = write_scenes(tmp_path / "scenes", {"train": 8, "val": 2}, 32, 64)
    run, buffers = tmp_path / "run", tmp_path / "buffers"
    buffers.mkdir()
    overrides = (*SMALL, "train.sync_bn=false")
    assert run_ranks(train_rank, (scenes, run, overrides, buffers), timeout=150) == [0, 0]
    rank0 = torch.load(buffers / "rank0.pt", weights_only=True)
    rank1 = torch.load(buffers / "rank1.pt", weights_only=True)
    saved = torch.load(run / "checkpoint_last.pt", weights_only=True)["model"]
    statistics = [name for name in rank0 if "running" in name]
    assert statistics
    for name in statistics:
        assert torch.equal(rank0[name], rank1[name]), name
        assert torch.equal(rank0[name], saved[name]), name
