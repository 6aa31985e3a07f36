"""The U-Net of Ronneberger et al. (2015), configurable and exportable."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from cityseg.architectures import PLAIN_UNET, min_input_side, total_stride
from cityseg.model.base import SegmentationModel, check_block_config, is_int
from cityseg.model.parts import ConvBlock, Down, OutConv, Up

CONFIG_KEYS = (
    "in_channels",
    "num_classes",
    "widths",
    "base_width",
    "depth",
    "convs_per_block",
    "norm",
    "upsampling",
    "dropout",
    "final_kernel",
)


class UNet(SegmentationModel):
    """U-Net: an encoder of conv blocks that halve the resolution, a decoder that upsamples and
    concatenates the encoder's skip connection at each level, and a final conv to class logits.

    Any input height and width of at least ``min_size`` (32, or ``2**depth`` if larger) works: the
    input is padded inside (replicating its border) to the next multiple of ``2**depth`` and the
    logits are cropped back, so the output always has the input's height and width. The padding is
    computed from the input's shape with symbolic-friendly integer ops, so ``torch.export``,
    ``torch.onnx.export`` and ``torch.compile`` keep height and width dynamic.

    Args:
        in_channels: channels of the input image.
        num_classes: channels of the output logits.
        widths: channels of each level, shallow to deep (``depth + 1`` values, none smaller than
            the one before). Give either this or ``base_width``/``depth``.
        base_width: channels of the first level when ``widths`` is not given (default 32).
        depth: number of downsamplings when ``widths`` is not given (default 4): the levels then
            have ``base_width * 2**i`` channels for i = 0..depth.
        convs_per_block: 3x3 convolutions in each encoder and decoder block.
        norm: "batch" (BatchNorm2d), "group" (GroupNorm, see ``parts.group_count`` for the number
            of groups) or "none" (convolutions then carry a bias).
        upsampling: "bilinear" (1x1 conv + bilinear upsampling) or "transpose" (2x2 transposed
            conv, as in the paper).
        dropout: channel dropout probability (Dropout2d) at the end of the bottleneck block and of
            every decoder block; 0 disables it.
        final_kernel: kernel size of the final conv, 1 or 3.

    Example:
        >>> import torch
        >>> from cityseg.model import UNet
        >>> model = UNet(num_classes=19, base_width=8, depth=3).eval()
        >>> model(torch.randn(1, 3, 37, 100)).shape
        torch.Size([1, 19, 37, 100])
        >>> UNet(**model.config).config == model.config
        True
    """

    CONFIG_KEYS = CONFIG_KEYS

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 19,
        widths: Sequence[int] | None = None,
        base_width: int | None = None,
        depth: int | None = None,
        convs_per_block: int = 2,
        norm: str = "batch",
        upsampling: str = "bilinear",
        dropout: float = 0.0,
        final_kernel: int = 1,
    ) -> None:
        super().__init__()
        widths = resolve_widths(widths, base_width, depth)
        check_block_config(
            "UNet", in_channels, num_classes, convs_per_block, norm, upsampling, dropout,
            final_kernel,
        )  # fmt: skip
        self._config: dict[str, Any] = {
            "in_channels": in_channels,
            "num_classes": num_classes,
            "widths": widths,
            "convs_per_block": convs_per_block,
            "norm": norm,
            "upsampling": upsampling,
            "dropout": float(dropout),
            "final_kernel": final_kernel,
        }
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.depth = len(widths) - 1
        self.multiple = total_stride(PLAIN_UNET, self.depth)
        self.min_size = min_input_side(PLAIN_UNET, self.depth)

        block = {"convs": convs_per_block, "norm": norm}
        self.inc = ConvBlock(in_channels, widths[0], **block)
        self.downs = nn.ModuleList(
            Down(widths[i], widths[i + 1], **block, dropout=dropout if i == self.depth - 1 else 0)
            for i in range(self.depth)
        )
        self.ups = nn.ModuleList(
            Up(widths[i + 1], widths[i], widths[i], **block, upsampling=upsampling, dropout=dropout)
            for i in reversed(range(self.depth))
        )
        self.outc = OutConv(widths[0], num_classes, final_kernel)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d) and module is not self.outc:
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """The network itself, for inputs whose height and width are multiples of ``2**depth``."""
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.outc(x)


def resolve_widths(
    widths: Sequence[int] | None, base_width: int | None, depth: int | None
) -> list[int]:
    """The channels of each level, from ``widths`` or from ``base_width`` and ``depth``."""
    if widths is not None:
        if base_width is not None or depth is not None:
            raise ValueError("UNet takes either widths or base_width/depth, not both")
        widths = list(widths)
    else:
        base_width = 32 if base_width is None else base_width
        depth = 4 if depth is None else depth
        if not is_int(base_width) or base_width < 1:
            raise ValueError(f"UNet base_width must be a positive integer, got {base_width!r}")
        if not is_int(depth) or depth < 1:
            raise ValueError(f"UNet depth must be an integer >= 1, got {depth!r}")
        widths = [base_width * 2**level for level in range(depth + 1)]
    if len(widths) < 2 or not all(is_int(w) and w > 0 for w in widths):
        raise ValueError(
            f"UNet widths must be at least 2 positive integers (depth >= 1), got {widths!r}"
        )
    if any(widths[i + 1] < widths[i] for i in range(len(widths) - 1)):
        raise ValueError(
            f"UNet widths go from the shallowest level to the deepest and must not decrease, "
            f"got {widths}; did you mean {sorted(widths)}?"
        )
    return widths
