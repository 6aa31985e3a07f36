"""A convolution whose depthwise form computes in float32 under CPU autocast.

On a CPU without AMX, oneDNN's bf16 depthwise convolutions are slower than float32 ones, forward
and backward, while every other kind of layer gains from bf16 (BENCHMARKS.md, the layer table
of ``bench_layers.py``). So under CPU autocast a depthwise convolution runs in float32; what follows
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
