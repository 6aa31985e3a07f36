"""ResNet-18/34/50 (He et al. 2016) as feature extractors, with torchvision's parameter names
(``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``, ...) so its published ImageNet
files load strictly."""

from __future__ import annotations

import torch
from torch import nn

# name: (block kind, blocks per layer)
VARIANTS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}


def _downsample(in_ch: int, out_ch: int, stride: int) -> nn.Module | None:
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and the shortcut."""

    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_ch, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided, as torchvision's v1.5), 1x1 expand by 4, and the shortcut."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + shortcut)


class ResNet(nn.Module):
    """The ResNet feature extractor; ``feature_maps(x)`` returns the maps at strides 2 (after the
    stem conv), 4, 8, 16 and 32. With ``num_classes`` it also carries ``fc`` and ``forward`` returns
    ImageNet logits."""

    def __init__(self, variant: str, in_channels: int = 3, num_classes: int | None = None) -> None:
        super().__init__()
        kind, counts = VARIANTS[variant]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_ch = 64
        for index, count in enumerate(counts):
            width = 64 * 2**index
            blocks = []
            for number in range(count):
                stride = 2 if index > 0 and number == 0 else 1
                blocks.append(block(in_ch, width, stride))
                in_ch = width * block.expansion
            setattr(self, f"layer{index + 1}", nn.Sequential(*blocks))
        self.out_channels = [64] + [64 * 2**i * block.expansion for i in range(4)]
        if num_classes is not None:
            self.fc = nn.Linear(in_ch, num_classes)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps at strides 2, 4, 8, 16, 32."""
        x = self.relu(self.bn1(self.conv1(x)))
        maps = [x]
        x = self.maxpool(x)
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            maps.append(x)
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (only with ``fc``)."""
        return self.fc(
            torch.flatten(nn.functional.adaptive_avg_pool2d(self.feature_maps(x)[-1], 1), 1)
        )
