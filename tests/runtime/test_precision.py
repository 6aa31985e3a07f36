"""Device and number-format choice, the one-line runtime report, and normalisation on the device."""

from __future__ import annotations

import contextlib

import pytest
import torch

from cityseg.errors import ConfigError
from cityseg.runtime import device, precision
from cityseg.runtime.normalize import Normalize, batch_to_device


def test_cpu_choices():
    cpu = device.resolve_device("cpu", option="train.device")
    assert cpu.type == "cpu"
    assert precision.choose_precision("fp32", cpu).name == "fp32"
    assert precision.choose_precision("bf16", cpu).name == "bf16"
    with pytest.raises(ConfigError, match="fp16"):
        precision.choose_precision("fp16", cpu)


def test_auto_precision_on_cpu_follows_native_bf16(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    assert precision.choose_precision("auto", cpu).name == "bf16"
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "amx_bf16"})
    assert precision.choose_precision("auto", cpu).name == "bf16"
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "avx512f"})
    assert precision.choose_precision("auto", cpu).name == "fp32"


def test_auto_device_falls_back_to_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert device.resolve_device("auto", option="train.device").type == "cpu"
    with pytest.raises(ConfigError, match="train.device=cuda"):
        device.resolve_device("cuda", option="train.device")


def test_autocast_and_scaler():
    bf16 = precision.choose_precision("bf16", torch.device("cpu"))
    with bf16.autocast():
        out = torch.nn.Conv2d(3, 4, 3)(torch.randn(1, 3, 8, 8))
    assert out.dtype == torch.bfloat16
    assert not bf16.grad_scaler().is_enabled()
    fp32 = precision.choose_precision("fp32", torch.device("cpu"))
    with fp32.autocast():
        assert torch.nn.Linear(2, 2)(torch.randn(1, 2)).dtype == torch.float32


def test_runtime_report_is_one_line(monkeypatch):
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    line = device.describe_runtime(precision.choose_precision("fp32", torch.device("cpu")), True)
    assert "\n" not in line
    assert line.startswith("device cpu") and "precision fp32" in line
    assert "channels_last" in line and "allocator jemalloc" in line


def test_batches_are_normalised_on_the_device_in_channels_last():
    images = torch.full((2, 4, 5, 3), 255, dtype=torch.uint8)
    targets = torch.zeros(2, 4, 5, dtype=torch.uint8)
    mean, std = [0.5, 0.25, 0.0], [0.5, 0.25, 1.0]
    x, y = batch_to_device(images, targets, Normalize(mean, std, channels_last=True))
    assert x.shape == (2, 3, 4, 5) and x.dtype == torch.float32 and y.dtype == torch.uint8
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(x[:, 0], torch.tensor(1.0)) and torch.allclose(x[:, 1], torch.tensor(3.0))
    x, _ = batch_to_device(images, targets, Normalize(mean, std, channels_last=False))
    assert x.is_contiguous()


def inference_precision(requested: str, where: torch.device) -> str:
    """The number format inference runs in (the rule of training, named as the CLI names it)."""
    return precision.choose_precision(requested, where, option="--precision").name


def test_auto_precision_is_one_rule_for_training_and_inference(monkeypatch):
    cpu = torch.device("cpu")
    for flags, expected in (({"avx512_bf16"}, "bf16"), ({"amx_bf16"}, "bf16"), (set(), "fp32")):
        monkeypatch.setattr(precision, "cpu_flags", lambda flags=flags: flags)
        assert precision.choose_precision("auto", cpu).name == expected
        assert inference_precision("auto", cpu) == expected
    with pytest.raises(ConfigError, match="--precision fp16: float16 is for GPUs"):
        inference_precision("fp16", cpu)


class FakeGPUs:
    """``torch.cuda``'s answers for GPUs that compute bfloat16 natively or only by emulation."""

    def __init__(self, monkeypatch, native: list[bool]) -> None:
        self.native, self.current, self.asked = native, 0, []
        monkeypatch.setattr(torch.cuda, "device", self.device)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", self.is_bf16_supported)

    @contextlib.contextmanager
    def device(self, device):
        previous = self.current
        index = torch.device(device).index
        self.current = previous if index is None else index
        try:
            yield
        finally:
            self.current = previous

    def is_bf16_supported(self, including_emulation: bool = True) -> bool:
        self.asked.append(self.current)
        return self.native[self.current] or including_emulation  # every GPU emulates it


def test_auto_precision_leaves_out_emulated_bf16(monkeypatch):
    """A T4, V100 or RTX 20xx emulates bf16 (slowly): auto means fp16 there, in training and in
    inference alike; bf16 asked for explicitly still runs."""
    FakeGPUs(monkeypatch, native=[False])
    t4 = torch.device("cuda", 0)
    assert precision.choose_precision("auto", t4).name == "fp16"
    assert inference_precision("auto", t4) == "fp16"
    assert precision.choose_precision("bf16", t4).name == "bf16"
    FakeGPUs(monkeypatch, native=[True])
    assert precision.choose_precision("auto", t4).name == "bf16"
    assert inference_precision("auto", t4) == "bf16"


def test_bf16_rule_asks_the_gpu_in_use(monkeypatch):
    """GPU 0 emulates bf16, GPU 1 computes it: the answer for cuda:1 is GPU 1's."""
    gpus = FakeGPUs(monkeypatch, native=[False, True])
    second = torch.device("cuda", 1)
    assert inference_precision("auto", second) == "bf16"
    assert precision.choose_precision("auto", second).name == "bf16"
    assert set(gpus.asked) == {1}
    assert inference_precision("auto", torch.device("cuda", 0)) == "fp16"
