"""What every segmentation network of cityseg shares: any input size (padded inside to a multiple
of the network's total stride, logits cropped back), a helpful input check, a plain-dict config,
and parameter / multiply-add counts."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cityseg.architectures import FINAL_KERNELS, NORMS, UPSAMPLINGS
from cityseg.model import complexity
from cityseg.normalization import IMAGENET_NORMALIZATION


class SegmentationModel(nn.Module):
    """Base of :class:`UNet` and :class:`EncoderUNet`.

    A subclass sets ``in_channels``, ``num_classes``, ``multiple`` (the total stride: inputs are
    padded to a multiple of it), ``min_size`` and ``_config`` (its constructor arguments), and
    implements :meth:`forward_padded`.
    """

    in_channels: int
    num_classes: int
    multiple: int
    min_size: int
    _config: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments as a plain YAML-safe dict: ``type(model)(**model.config)``."""
        return {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in self._config.items()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SegmentationModel:
        """Build the model from ``model.config`` (or any dict of constructor arguments)."""
        unknown = sorted(set(config) - set(cls.CONFIG_KEYS))
        if unknown:
            raise ValueError(
                f"{cls.__name__} config has unknown keys {unknown}; "
                f"known keys: {list(cls.CONFIG_KEYS)}"
            )
        return cls(**config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes, H, W) of a normalised float batch (N, in_channels, H, W)."""
        self.check_input(x)
        height, width = x.shape[-2], x.shape[-1]
        # The padded size is written as multiple * ceil(size / multiple) and the crop as a negative
        # pad (a copy, not a view) so that torch.export proves every shape for any height and width
        # instead of specialising on the example input.
        multiple = self.multiple
        padded_height = (height + multiple - 1) // multiple * multiple
        padded_width = (width + multiple - 1) // multiple * multiple
        pad = (0, padded_width - width, 0, padded_height - height)
        logits = self.forward_padded(F.pad(x, pad, mode="replicate"))
        return F.pad(logits, [-amount for amount in pad])

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """The network itself, for inputs whose height and width are multiples of ``multiple``."""
        raise NotImplementedError

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ValueError naming the nearest valid shape if ``x`` cannot be segmented."""
        if torch.jit.is_tracing():  # legacy ONNX export: a check would be frozen into the trace
            return
        name, shape = type(self).__name__, tuple(x.shape)
        if x.dim() != 4:
            hint = f" (add the batch dimension: {(1, *shape)})" if x.dim() == 3 else ""
            raise ValueError(
                f"{name} expects a 4-D input (N, {self.in_channels}, H, W), got shape {shape}{hint}"
            )
        n, channels, height, width = shape
        if channels != self.in_channels or height < self.min_size or width < self.min_size:
            nearest = (n, self.in_channels, max(height, self.min_size), max(width, self.min_size))
            raise ValueError(
                f"{name} expects input (N, {self.in_channels}, H, W) with H, W >= {self.min_size}, "
                f"got {shape}; the nearest valid shape is {nearest}"
            )

    def count_parameters(self, trainable_only: bool = False) -> int:
        """Number of parameters (only those that require a gradient if ``trainable_only``)."""
        return complexity.count_parameters(self, trainable_only)

    def count_macs(self, height: int, width: int) -> int:
        """Exact conv multiply-adds of one forward pass on one (in_channels, height, width) image,
        counted at the padded size that actually runs; see :func:`complexity.count_macs`."""
        return complexity.count_macs(
            lambda: type(self)(**self.config), self.in_channels, height, width
        )

    def summary(self, height: int, width: int) -> str:
        """One line, e.g. "UNet: 7.24 M parameters, 93.7 GMACs at 512x1024"."""
        params = self.count_parameters() / 1e6
        macs = self.count_macs(height, width) / 1e9
        return f"{self.describe()}: {params:.2f} M parameters, {macs:.3g} GMACs at {height}x{width}"

    @property
    def normalization(self) -> dict[str, list[float]]:
        """The input normalisation it expects: mean and std of RGB in [0, 1] (ImageNet's)."""
        return {key: list(values) for key, values in IMAGENET_NORMALIZATION.items()}

    def describe(self) -> str:
        """A few words naming the architecture."""
        return type(self).__name__


def is_int(value: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_block_config(
    model: str,
    in_channels: int,
    num_classes: int,
    convs_per_block: int,
    norm: str,
    upsampling: str,
    dropout: float,
    final_kernel: int,
) -> None:
    """Raise a ValueError naming the first invalid argument that every network here takes."""
    for name, value in [
        ("in_channels", in_channels),
        ("num_classes", num_classes),
        ("convs_per_block", convs_per_block),
    ]:
        if not is_int(value) or value < 1:
            raise ValueError(f"{model} {name} must be a positive integer, got {value!r}")
    if norm not in NORMS:
        raise ValueError(f"{model} norm must be one of {list(NORMS)}, got {norm!r}")
    if upsampling not in UPSAMPLINGS:
        raise ValueError(
            f"{model} upsampling must be one of {list(UPSAMPLINGS)}, got {upsampling!r}"
        )
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"{model} dropout must be a probability in [0, 1), got {dropout!r}")
    if final_kernel not in FINAL_KERNELS or isinstance(final_kernel, bool):
        kernels = " or ".join(str(kernel) for kernel in FINAL_KERNELS)
        raise ValueError(f"{model} final_kernel must be {kernels}, got {final_kernel!r}")
