"""Depthwise convolutions compute in float32 under CPU autocast; other convolutions in bf16."""

from __future__ import annotations

import torch

from cityseg.model.encoders.depthwise import Conv2d
from cityseg.model.encoders.efficientnet_lite import SamePadConv2d


def test_a_depthwise_convolution_computes_in_float32_under_cpu_autocast():
    torch.manual_seed(0)
    depthwise = Conv2d(8, 8, 5, padding=2, groups=8, bias=False)
    x = torch.randn(2, 8, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = depthwise(x.bfloat16())
    assert y.dtype == torch.float32
    expected = torch.nn.functional.conv2d(
        x.bfloat16().float(), depthwise.weight, padding=2, groups=8
    )
    torch.testing.assert_close(y, expected)
    y.sum().backward()
    assert depthwise.weight.grad is not None and depthwise.weight.grad.dtype == torch.float32


def test_other_convolutions_and_other_places_keep_autocasts_choice():
    dense, x = Conv2d(8, 4, 3, padding=1), torch.randn(1, 8, 8, 8)
    grouped = Conv2d(8, 8, 3, padding=1, groups=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert dense(x).dtype == torch.bfloat16
        assert grouped(x).dtype == torch.bfloat16
    assert Conv2d(8, 8, 3, padding=1, groups=8)(x).dtype == torch.float32  # no autocast


def test_the_efficientnet_padding_convolution_is_one_and_loads_conv2d_weights():
    conv = SamePadConv2d(16, 16, 5, stride=2, groups=16)
    assert isinstance(conv, Conv2d) and set(conv.state_dict()) == {"weight"}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv(torch.randn(1, 16, 8, 8).bfloat16()).shape == (1, 16, 4, 4)
