"""A U-Net decoder on an ImageNet-pretrained encoder (EfficientNet-Lite, ResNet, MobileNetV2)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cityseg.architectures import (
    DECODER_BLOCKS,
    DEFAULT_DECODER_WIDTHS,
    ENCODER_NAMES,
    min_input_side,
    total_stride,
)
from cityseg.model.base import SegmentationModel, check_block_config, is_int
from cityseg.model.encoders import ENCODERS
from cityseg.model.parts import ConvBlock, OutConv


class DecoderBlock(nn.Module):
    """Double the resolution (bilinear, or a 2x2 transposed conv), concatenate the encoder's skip
    (if any), then a ConvBlock."""

    def __init__(
        self, in_ch: int, skip_ch: int, out_ch: int, convs: int, norm: str, upsampling: str,
        dropout: float,
    ) -> None:  # fmt: skip
        super().__init__()
        if upsampling == "transpose":
            self.up: nn.Module = nn.ConvTranspose2d(in_ch, in_ch, kernel_size=2, stride=2)
        else:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.conv = ConvBlock(in_ch + skip_ch, out_ch, convs, norm, dropout)

    def forward(self, below: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = self.up(below)
        return self.conv(x if skip is None else torch.cat([skip, x], dim=1))


class EncoderUNet(SegmentationModel):
    """U-Net with a pretrained encoder: the encoder's feature maps at strides 2, 4, 8, 16 and 32
    are the skips; five decoder blocks go from stride 32 back to the input's resolution.

    The weights are random when built; :func:`cityseg.model.load_encoder_weights` fills the
    encoder with its ImageNet (or any published-format) weights. Inputs are padded inside to a
    multiple of 32, so any height and width of at least 32 works.

    Args:
        encoder: a name of :data:`cityseg.model.encoders.ENCODERS`.
        in_channels: channels of the input image (ImageNet weights need 3).
        num_classes: channels of the output logits.
        decoder_widths: channels of the five decoder blocks, from stride 16 to stride 1.
        convs_per_block: 3x3 convolutions in each decoder block.
        norm: "batch", "group" or "none" in the decoder (the encoder keeps its BatchNorm).
        upsampling: "bilinear" or "transpose" in the decoder.
        dropout: channel dropout at the end of every decoder block.
        final_kernel: kernel size of the final conv, 1 or 3.

    Example:
        >>> import torch
        >>> from cityseg.model import EncoderUNet
        >>> model = EncoderUNet("efficientnet-lite0", decoder_widths=[32, 16, 16, 8, 8]).eval()
        >>> model(torch.randn(1, 3, 37, 100)).shape
        torch.Size([1, 19, 37, 100])
    """

    CONFIG_KEYS = (
        "encoder", "in_channels", "num_classes", "decoder_widths", "convs_per_block", "norm",
        "upsampling", "dropout", "final_kernel",
    )  # fmt: skip

    def __init__(
        self,
        encoder: str = "efficientnet-lite0",
        in_channels: int = 3,
        num_classes: int = 19,
        decoder_widths: Sequence[int] | None = None,
        convs_per_block: int = 2,
        norm: str = "batch",
        upsampling: str = "bilinear",
        dropout: float = 0.0,
        final_kernel: int = 1,
    ) -> None:
        super().__init__()
        decoder_widths = list(DEFAULT_DECODER_WIDTHS if decoder_widths is None else decoder_widths)
        check_config(encoder, in_channels, num_classes, decoder_widths, convs_per_block, norm,
                     upsampling, dropout, final_kernel)  # fmt: skip
        self._config = {
            "encoder": encoder,
            "in_channels": in_channels,
            "num_classes": num_classes,
            "decoder_widths": decoder_widths,
            "convs_per_block": convs_per_block,
            "norm": norm,
            "upsampling": upsampling,
            "dropout": float(dropout),
            "final_kernel": final_kernel,
        }
        self.in_channels, self.num_classes = in_channels, num_classes
        self.multiple, self.min_size = total_stride(encoder), min_input_side(encoder)
        self.encoder = ENCODERS[encoder].build(in_channels, None)
        skips = list(reversed(self.encoder.out_channels[:-1])) + [0]  # strides 16, 8, 4, 2, none
        below = self.encoder.out_channels[-1]
        blocks = []
        for skip_ch, out_ch in zip(skips, decoder_widths, strict=True):
            blocks.append(
                DecoderBlock(below, skip_ch, out_ch, convs_per_block, norm, upsampling, dropout)
            )
            below = out_ch
        self.decoder = nn.ModuleList(blocks)
        self.head = OutConv(below, num_classes, final_kernel)
        for module in self.decoder.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        skips = self.encoder.feature_maps(x)
        x = skips.pop()
        for block in self.decoder:
            x = block(x, skips.pop() if skips else None)
        return self.head(x)

    @property
    def normalization(self) -> dict[str, list[float]]:
        """How the encoder's ImageNet training normalised RGB in [0, 1]."""
        return {
            key: list(values)
            for key, values in ENCODERS[self._config["encoder"]].normalization.items()
        }

    def describe(self) -> str:
        return f"EncoderUNet ({self._config['encoder']})"


def check_config(
    encoder: str, in_channels: int, num_classes: int, decoder_widths: list, convs_per_block: int,
    norm: str, upsampling: str, dropout: float, final_kernel: int,
) -> None:  # fmt: skip
    """Raise a ValueError naming the first invalid constructor argument."""
    if encoder not in ENCODERS:
        raise ValueError(f"encoder must be one of {list(ENCODER_NAMES)}, got {encoder!r}")
    if len(decoder_widths) != DECODER_BLOCKS or not all(
        is_int(w) and w > 0 for w in decoder_widths
    ):
        raise ValueError(
            f"decoder_widths must be {DECODER_BLOCKS} positive integers (strides 16, 8, 4, 2, 1), "
            f"got {decoder_widths!r}"
        )
    check_block_config(
        "EncoderUNet", in_channels, num_classes, convs_per_block, norm, upsampling, dropout,
        final_kernel,
    )  # fmt: skip
