"""Resizing images for the network: anti-aliased when shrinking, on the CPU for a device whose
torch has no anti-aliased kernel (Apple's MPS before torch 2.7), exact sizes either way."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cityseg.inference import windows
from cityseg.inference.windows import antialias_device, resize_image


@pytest.mark.parametrize(
    ("device_type", "version", "where"),
    [
        ("mps", "2.5.1", "cpu"),
        ("mps", "2.6.0", "cpu"),
        ("mps", "2.7.0", "mps"),
        ("mps", "2.13.0+cpu", "mps"),
        ("cuda", "2.5.1", "cuda"),
        ("cpu", "2.5.1", "cpu"),
    ],
)
def test_the_antialiased_shrink_runs_where_torch_has_the_kernel(device_type, version, where):
    assert antialias_device(device_type, version) == where


def stripes(height: int, width: int) -> torch.Tensor:
    """A batch of one image of one-pixel vertical stripes, 0 and 1."""
    row = (torch.arange(width) % 2).float()
    return row.expand(1, 3, height, width).contiguous()


def test_a_shrink_is_antialiased_and_an_enlargement_is_plain_bilinear():
    x = stripes(12, 48)
    small = resize_image(x, (4, 16))  # a third: plain bilinear would pick every third stripe
    assert small.shape == (1, 3, 4, 16)
    assert torch.allclose(small, torch.full_like(small, 0.5), atol=0.06)  # the stripes average
    aliased = F.interpolate(x, size=(4, 16), mode="bilinear", align_corners=False)
    assert torch.equal(aliased.unique(), torch.tensor([0.0, 1.0]))
    large = resize_image(x, (24, 96))
    plain = F.interpolate(x, size=(24, 96), mode="bilinear", align_corners=False)
    assert torch.equal(large, plain)
    assert resize_image(x, (12, 48)) is x


def test_the_shrink_asks_where_to_run_for_the_image_device(monkeypatch):
    asked = []

    def record(device_type: str) -> str:
        asked.append(device_type)
        return "cpu"

    monkeypatch.setattr(windows, "antialias_device", record)
    x = stripes(16, 64)
    resize_image(x, (32, 128))
    assert asked == []  # enlarging needs no anti-aliasing
    small = resize_image(x, (8, 32))
    assert asked == ["cpu"] and small.device == x.device
