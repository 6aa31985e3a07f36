"""MobileNetV2 (Sandler et al. 2018) as a feature extractor, with torchvision's parameter names
(``features.N.conv.M``, ``classifier.1``) so its published ImageNet file loads strictly."""

from __future__ import annotations

import torch
from torch import nn

from cityseg.model.encoders.depthwise import Conv2d

# (expansion, output channels, repeats, first stride) of the inverted-residual stages
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
          (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip
STEM_WIDTH = 32
HEAD_WIDTH = 1280


class ConvBNReLU6(nn.Sequential):
    """Convolution (same padding), BatchNorm, ReLU6: torchvision's ``Conv2dNormActivation``."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """1x1 expand (unless the ratio is 1), 3x3 depthwise (strided), 1x1 linear projection; identity
    shortcut when the shape is kept."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_ch * expand
        layers: list[nn.Module] = [ConvBNReLU6(in_ch, hidden, 1)] if expand != 1 else []
        layers += [
            ConvBNReLU6(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    """The MobileNetV2 feature extractor (``features.0`` to ``features.17``); ``feature_maps(x)``
    returns the maps at strides 2, 4, 8, 16 and 32. With ``num_classes`` it also carries the
    1x1 head ``features.18`` and ``classifier``, and ``forward`` returns ImageNet logits."""

    def __init__(self, in_channels: int = 3, num_classes: int | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBNReLU6(in_channels, STEM_WIDTH, 3, 2)]
        self.stage_ends: list[int] = []  # index in ``features`` of the last layer of each stride
        in_ch = STEM_WIDTH
        for expand, out_ch, repeats, stride in STAGES:
            if stride > 1:
                self.stage_ends.append(len(layers) - 1)
            for repeat in range(repeats):
                layers.append(InvertedResidual(in_ch, out_ch, stride if repeat == 0 else 1, expand))
                in_ch = out_ch
        self.stage_ends.append(len(layers) - 1)
        self.out_channels = [16, 24, 32, 96, 320]
        if num_classes is not None:
            layers.append(ConvBNReLU6(in_ch, HEAD_WIDTH, 1))
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(HEAD_WIDTH, num_classes))
        self.features = nn.Sequential(*layers)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps at strides 2, 4, 8, 16, 32."""
        maps = []
        for index in range(self.stage_ends[-1] + 1):
            x = self.features[index](x)
            if index in self.stage_ends:
                maps.append(x)
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (only with the head)."""
        x = self.features[-1](self.feature_maps(x)[-1])
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
