"""A convolution whose depthwise form computes in float32 under CPU autocast.

On the CPU measured (BENCHMARKS.md, section 9: AMD Zen 4 with AVX512-BF16), oneDNN's bf16
depthwise convolutions ran 1.6x (3x3) to 2.7x (5x5) slower than float32, forward and backward,
while every other kind of layer gained from bf16. With the cast of its input included, the
EfficientNet-Lite0 U-Net's depthwise layers took 50 ms instead of 99 ms of a training step at
128x256, batch 8. So under CPU autocast a depthwise convolution runs in float32; what follows
takes its float32 output as autocast would (BatchNorm in float32, the next convolution casts back
to bf16). Elsewhere, GPUs included, autocast decides as usual. Parameter names are those of
``nn.Conv2d``, so published weights load unchanged.
"""

from __future__ import annotations

import torch
from torch import nn


class Conv2d(nn.Conv2d):
    """``nn.Conv2d``, except that a depthwise one (one group per input channel) computes in
    float32 under CPU autocast."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        depthwise = self.groups > 1 and self.groups == self.in_channels
        if depthwise and x.is_cpu and torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                return super().forward(x.float())
        return super().forward(x)
