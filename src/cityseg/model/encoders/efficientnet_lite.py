"""EfficientNet-Lite (Tan & Le 2019; the Lite variants of Google's TensorFlow release): the stem,
the 16+ MBConv blocks (no squeeze-excitation, ReLU6) and, for classification, the head.

Parameter names follow the published PyTorch conversion (``_conv_stem``, ``_bn0``,
``_blocks.N._depthwise_conv``, ...) so its files load strictly. The network was trained in
TensorFlow: BatchNorm uses eps 1e-3, and strided convolutions pad as TensorFlow's "SAME" does
(more on the bottom and right), see :class:`SamePadConv2d`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from cityseg.model.encoders.depthwise import Conv2d

BN_EPS = 1e-3
BN_MOMENTUM = 0.01
STEM_WIDTH = 32
HEAD_WIDTH = 1280


@dataclass(frozen=True)
class Stage:
    """Repeats of one MBConv block: kernel, first stride, expansion ratio and output width."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    width: int


# EfficientNet-B0's stages; every Lite variant scales them by (width, depth).
STAGES = (
    Stage(1, 3, 1, 1, 16),
    Stage(2, 3, 2, 6, 24),
    Stage(2, 5, 2, 6, 40),
    Stage(3, 3, 2, 6, 80),
    Stage(3, 5, 1, 6, 112),
    Stage(4, 5, 2, 6, 192),
    Stage(1, 3, 1, 6, 320),
)
# name: (width multiplier, depth multiplier)
VARIANTS = {
    "efficientnet-lite0": (1.0, 1.0),
    "efficientnet-lite1": (1.0, 1.1),
    "efficientnet-lite2": (1.1, 1.2),
}


def round_width(width: int, multiplier: float, divisor: int = 8) -> int:
    """Channels scaled by ``multiplier`` and rounded to a multiple of ``divisor`` (never by more
    than 10% down), as the reference implementation does."""
    scaled = width * multiplier
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


class SamePadConv2d(Conv2d):
    """A convolution padded like TensorFlow's "SAME": for stride 2 on an even size the padding is
    ``kernel - 2`` in total, the larger half at the bottom and right; stride 1 pads symmetrically.

    Inputs of strided convolutions must have even height and width (the encoders pad images to a
    multiple of 32 first), so the padding is fixed and export keeps dynamic shapes.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1):
        # Stride 1: the symmetric padding the convolution does itself (no extra copy).
        padding = kernel // 2 if stride == 1 else 0
        super().__init__(in_ch, out_ch, kernel, stride, padding, groups=groups, bias=False)
        total = kernel - stride
        before = total // 2
        self.same_pad = (before, total - before, before, total - before) if stride > 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same_pad is not None:
            x = nn.functional.pad(x, self.same_pad)
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand -> depthwise kxk (strided) -> 1x1 project; identity skip
    when the shape is kept."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_ch * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(in_ch, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = SamePadConv2d(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = _bn(hidden)
        self._project_conv = nn.Conv2d(hidden, out_ch, 1, bias=False)
        self._bn2 = _bn(out_ch)
        self.act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if hasattr(self, "_expand_conv"):
            y = self.act(self._bn0(self._expand_conv(y)))
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    """The EfficientNet-Lite feature extractor; ``feature_maps(x)`` returns the maps at strides
    2, 4, 8, 16 and 32. With ``num_classes`` it also carries the ImageNet head (``_conv_head``,
    ``_bn1``, ``_fc``) and ``forward`` returns class logits."""

    def __init__(self, variant: str, in_channels: int = 3, num_classes: int | None = None) -> None:
        super().__init__()
        width_mult, depth_mult = VARIANTS[variant]
        self._conv_stem = SamePadConv2d(in_channels, STEM_WIDTH, 3, stride=2)
        self._bn0 = _bn(STEM_WIDTH)
        self.act = nn.ReLU6(inplace=True)
        blocks: list[nn.Module] = []
        self.stage_ends: list[int] = []  # index of the last block before each downsampling
        in_ch = STEM_WIDTH
        for index, stage in enumerate(STAGES):
            out_ch = round_width(stage.width, width_mult)
            # The Lite variants keep the first and last stage's repeats unscaled.
            fixed = index in (0, len(STAGES) - 1)
            repeats = stage.repeats if fixed else int(math.ceil(stage.repeats * depth_mult))
            if stage.stride > 1:
                self.stage_ends.append(len(blocks) - 1)
            for repeat in range(repeats):
                stride = stage.stride if repeat == 0 else 1
                blocks.append(MBConv(in_ch, out_ch, stage.kernel, stride, stage.expand))
                in_ch = out_ch
        self.stage_ends.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        self.out_channels = [blocks[i]._bn2.num_features for i in self.stage_ends]
        if num_classes is not None:
            self._conv_head = nn.Conv2d(in_ch, HEAD_WIDTH, 1, bias=False)
            self._bn1 = _bn(HEAD_WIDTH)
            self._fc = nn.Linear(HEAD_WIDTH, num_classes)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps at strides 2, 4, 8, 16, 32 (height and width multiples of 32)."""
        x = self.act(self._bn0(self._conv_stem(x)))
        maps = []
        for index, block in enumerate(self._blocks):
            x = block(x)
            if index in self.stage_ends:
                maps.append(x)
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (only with the head)."""
        x = self.feature_maps(x)[-1]
        x = self.act(self._bn1(self._conv_head(x)))
        return self._fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
