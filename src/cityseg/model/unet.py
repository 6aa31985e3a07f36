"""The U-Net of Ronneberger et al. (2015), configurable and exportable."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cityseg.model import complexity
from cityseg.model.parts import NORMS, UPSAMPLINGS, ConvBlock, Down, OutConv, Up

MIN_SIZE = 32
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


class UNet(nn.Module):
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
        check_config(
            in_channels, num_classes, convs_per_block, norm, upsampling, dropout, final_kernel
        )
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
        self.min_size = max(MIN_SIZE, 2**self.depth)

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

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments as a plain JSON/YAML-safe dict: ``UNet(**model.config)``."""
        return {**self._config, "widths": list(self._config["widths"])}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> UNet:
        """Build a UNet from ``model.config`` (or any dict of constructor arguments)."""
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            raise ValueError(
                f"UNet config has unknown keys {unknown}; known keys: {list(CONFIG_KEYS)}"
            )
        return cls(**config)

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d) and module is not self.outc:
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes, H, W) of a normalised float batch (N, in_channels, H, W)."""
        self.check_input(x)
        height, width = x.shape[-2], x.shape[-1]
        # The padded size is written as multiple * ceil(size / multiple) and the crop as a negative
        # pad (a copy, not a view) so that torch.export proves every shape for any height and width
        # instead of specialising on the example input.
        multiple = 2**self.depth
        padded_height = (height + multiple - 1) // multiple * multiple
        padded_width = (width + multiple - 1) // multiple * multiple
        pad = (0, padded_width - width, 0, padded_height - height)
        logits = self.forward_padded(F.pad(x, pad, mode="replicate"))
        return F.pad(logits, [-amount for amount in pad])

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """The network itself, for inputs whose height and width are multiples of ``2**depth``."""
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.outc(x)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ValueError naming the nearest valid shape if ``x`` cannot be segmented."""
        if torch.jit.is_tracing():  # legacy ONNX export: a check would be frozen into the trace
            return
        shape = tuple(x.shape)
        if x.dim() != 4:
            hint = f" (add the batch dimension: {(1, *shape)})" if x.dim() == 3 else ""
            raise ValueError(
                f"UNet expects a 4-D input (N, {self.in_channels}, H, W), got shape {shape}{hint}"
            )
        n, channels, height, width = shape
        if channels != self.in_channels or height < self.min_size or width < self.min_size:
            nearest = (n, self.in_channels, max(height, self.min_size), max(width, self.min_size))
            raise ValueError(
                f"UNet expects input (N, {self.in_channels}, H, W) with H, W >= {self.min_size}, "
                f"got {shape}; the nearest valid shape is {nearest}"
            )

    def count_parameters(self, trainable_only: bool = False) -> int:
        """Number of parameters (only those that require a gradient if ``trainable_only``)."""
        return complexity.count_parameters(self, trainable_only)

    def count_macs(self, height: int, width: int) -> int:
        """Exact conv multiply-adds of one forward pass on one (in_channels, height, width) image,
        counted at the padded size that actually runs; see :func:`complexity.count_macs`."""
        return complexity.count_macs(lambda: UNet(**self.config), self.in_channels, height, width)

    def summary(self, height: int, width: int) -> str:
        """One line, e.g. "UNet: 7.24 M parameters, 93.7 GMACs at 512x1024"."""
        params = self.count_parameters() / 1e6
        macs = self.count_macs(height, width) / 1e9
        return f"UNet: {params:.2f} M parameters, {macs:.3g} GMACs at {height}x{width}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
        if not _is_int(base_width) or base_width < 1:
            raise ValueError(f"UNet base_width must be a positive integer, got {base_width!r}")
        if not _is_int(depth) or depth < 1:
            raise ValueError(f"UNet depth must be an integer >= 1, got {depth!r}")
        widths = [base_width * 2**level for level in range(depth + 1)]
    if len(widths) < 2 or not all(_is_int(w) and w > 0 for w in widths):
        raise ValueError(
            f"UNet widths must be at least 2 positive integers (depth >= 1), got {widths!r}"
        )
    if any(widths[i + 1] < widths[i] for i in range(len(widths) - 1)):
        raise ValueError(
            f"UNet widths go from the shallowest level to the deepest and must not decrease, "
            f"got {widths}; did you mean {sorted(widths)}?"
        )
    return widths


def check_config(
    in_channels: int,
    num_classes: int,
    convs_per_block: int,
    norm: str,
    upsampling: str,
    dropout: float,
    final_kernel: int,
) -> None:
    """Raise a ValueError naming the first invalid constructor argument."""
    for name, value in [
        ("in_channels", in_channels),
        ("num_classes", num_classes),
        ("convs_per_block", convs_per_block),
    ]:
        if not _is_int(value) or value < 1:
            raise ValueError(f"UNet {name} must be a positive integer, got {value!r}")
    if norm not in NORMS:
        raise ValueError(f"UNet norm must be one of {list(NORMS)}, got {norm!r}")
    if upsampling not in UPSAMPLINGS:
        raise ValueError(f"UNet upsampling must be one of {list(UPSAMPLINGS)}, got {upsampling!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"UNet dropout must be a probability in [0, 1), got {dropout!r}")
    if final_kernel not in (1, 3) or isinstance(final_kernel, bool):
        raise ValueError(f"UNet final_kernel must be 1 or 3, got {final_kernel!r}")
