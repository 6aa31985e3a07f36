"""The U-Net building blocks: ConvBlock, Down, Up and OutConv, each a few lines."""

from __future__ import annotations

import torch
from torch import nn


def group_count(channels: int, max_groups: int = 32, min_group_size: int = 4) -> int:
    """Number of GroupNorm groups for ``channels``: the largest divisor of ``channels`` that is at
    most ``max_groups`` and keeps at least ``min_group_size`` channels per group (at least 1).

    32 -> 8 groups of 4, 64 -> 16 of 4, 128 and wider -> 32 groups, 48 -> 12 of 4, 6 -> 1 of 6.
    """
    limit = max(1, min(max_groups, channels // min_group_size))
    return max(g for g in range(1, limit + 1) if channels % g == 0)


def make_norm(norm: str, channels: int) -> nn.Module:
    """The normalisation layer named ``norm`` ("batch", "group" or "none") for ``channels``."""
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "group":
        return nn.GroupNorm(group_count(channels), channels)
    return nn.Identity()


class ConvBlock(nn.Sequential):
    """``convs`` times (3x3 conv -> norm -> ReLU), then optional channel dropout.

    The convolutions carry no bias when a normalisation follows them (it would cancel the bias).
    """

    def __init__(
        self, in_ch: int, out_ch: int, convs: int = 2, norm: str = "batch", dropout: float = 0.0
    ) -> None:
        layers: list[nn.Module] = []
        for index in range(convs):
            conv_in = in_ch if index == 0 else out_ch
            layers.append(nn.Conv2d(conv_in, out_ch, 3, padding=1, bias=norm == "none"))
            layers.append(make_norm(norm, out_ch))
            layers.append(nn.ReLU(inplace=True))
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


class Down(nn.Sequential):
    """Halve the resolution (2x2 max pool), then a ConvBlock."""

    def __init__(
        self, in_ch: int, out_ch: int, convs: int = 2, norm: str = "batch", dropout: float = 0.0
    ) -> None:
        super().__init__(nn.MaxPool2d(2), ConvBlock(in_ch, out_ch, convs, norm, dropout))


class Up(nn.Module):
    """Double the resolution, concatenate the skip connection, then a ConvBlock.

    ``upsampling="transpose"`` is the paper's 2x2 up-convolution (stride 2). ``"bilinear"`` is a
    1x1 conv followed by bilinear upsampling: the same as upsampling first and convolving after
    (both are linear and bilinear weights sum to 1), at a quarter of the multiply-adds.
    Both halve the channels to ``skip_ch`` before the concatenation.
    """

    def __init__(
        self,
        in_ch: int,
        skip_ch: int,
        out_ch: int,
        convs: int = 2,
        norm: str = "batch",
        upsampling: str = "bilinear",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if upsampling == "transpose":
            self.up: nn.Module = nn.ConvTranspose2d(in_ch, skip_ch, kernel_size=2, stride=2)
        else:
            self.up = nn.Sequential(
                nn.Conv2d(in_ch, skip_ch, kernel_size=1),
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            )
        self.conv = ConvBlock(2 * skip_ch, out_ch, convs, norm, dropout)

    def forward(self, below: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(below)], dim=1))


class OutConv(nn.Conv2d):
    """The final convolution to ``num_classes`` logits (kernel 1 or 3, same-size padding)."""

    def __init__(self, in_ch: int, num_classes: int, kernel_size: int = 1) -> None:
        super().__init__(in_ch, num_classes, kernel_size, padding=kernel_size // 2)
