"""From decoded photos to the network's input, on the device: the one normalisation of training,
inference and the exported ONNX graph.

Photos travel as uint8 RGB, channels last (N, H, W, 3), as a decoder gives them; on the device
they become float32 (N, 3, H, W), ``(x / 255 - mean) / std`` with the mean and std of the
checkpoint (see :mod:`cityseg.normalization`).

Example:
    >>> import torch
    >>> normalize = Normalize(mean=[0.5] * 3, std=[0.5] * 3)
    >>> normalize(torch.full((1, 2, 2, 3), 255, dtype=torch.uint8))[0, :, 0, 0].tolist()
    [1.0, 1.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Normalize(nn.Module):
    """uint8 RGB photos (N, H, W, 3) to normalised float32 (N, 3, H, W).

    Args:
        mean: per-channel mean on the 0..1 scale.
        std: per-channel standard deviation on the 0..1 scale.
        channels_last: leave the batch in the channels-last memory order the NHWC photos already
            have (what convolutions in channels_last want); else make it contiguous NCHW.
    """

    def __init__(
        self, mean: Sequence[float], std: Sequence[float], channels_last: bool = False
    ) -> None:
        super().__init__()
        self.channels_last = channels_last
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float()
        x = (x / 255 - self.mean) / self.std
        return x if self.channels_last else x.contiguous()


def batch_to_device(
    images: torch.Tensor, targets: torch.Tensor, normalize: Normalize
) -> tuple[torch.Tensor, torch.Tensor]:
    """A uint8 training batch moved to the device of ``normalize``: the images normalised, the
    targets (trainIds) left uint8 until the loss."""
    device = normalize.mean.device
    non_blocking = device.type == "cuda"
    images = normalize(images.to(device, non_blocking=non_blocking))
    return images, targets.to(device, non_blocking=non_blocking)
