"""Sliding-window inference: tiles, their blending weights, and resizing of images and maps."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch.torch_version import TorchVersion

from cityseg.errors import ConfigError
from cityseg.inference.options import Size

LogitsFn = Callable[[torch.Tensor], torch.Tensor]


def check_tiling(tile: Size, stride: Size, min_size: int) -> None:
    problems = []
    if min(tile) < min_size:
        problems.append(
            f"tile {tile[0]}x{tile[1]} is smaller than the network's minimum "
            f"{min_size}x{min_size}; choose a larger --tile"
        )
    if stride[0] > tile[0] or stride[1] > tile[1]:
        problems.append(
            f"stride {stride[0]}x{stride[1]} is larger than the tile "
            f"{tile[0]}x{tile[1]} and would leave gaps; choose a smaller --stride"
        )
    if problems:
        raise ConfigError(*problems)


# The first torch with an anti-aliased bilinear kernel for Apple's MPS (earlier: not implemented)
MPS_ANTIALIAS_SINCE = "2.7"


def antialias_device(device_type: str, version: str = torch.__version__) -> str:
    """Where an anti-aliased shrink of an image held on ``device_type`` runs: on that device, or
    on the CPU for MPS before torch 2.7, which has no such kernel there (the same result as on
    every other device, for one copy each way)."""
    if device_type == "mps" and TorchVersion(version) < MPS_ANTIALIAS_SINCE:
        return "cpu"
    return device_type


def resize_image(x: torch.Tensor, size: Size) -> torch.Tensor:
    """Bilinear resize of a float batch (N, 3, H, W), antialiased when it shrinks (on the CPU
    where the device cannot: :func:`antialias_device`)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if size[0] >= x.shape[-2] and size[1] >= x.shape[-1]:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    where = antialias_device(x.device.type)
    shrunk = F.interpolate(
        x.to(where), size=size, mode="bilinear", align_corners=False, antialias=True
    )
    return shrunk.to(x.device)


def resize_map(maps: torch.Tensor, size: Size) -> torch.Tensor:
    """Bilinear resize of logits or probabilities (N, C, H, W) to ``size`` (no-op if equal)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


def tile_origins(length: int, tile: int, stride: int) -> list[int]:
    """Start of each tile along one axis: every ``stride``, the last one flush with the end."""
    if tile >= length:
        return [0]
    count = math.ceil((length - tile) / stride) + 1
    return sorted({min(i * stride, length - tile) for i in range(count)})


def window_weights(tile: Size, window: str, device: torch.device | str = "cpu") -> torch.Tensor:
    """Blending weight (h, w) of each tile pixel: ones, or a separable Gaussian (sigma = a
    quarter of the tile) that peaks at 1 in the centre, falls to 0.13 in the middle of each border
    and to 0.02 in the corners, never to 0 (every pixel keeps a weight)."""
    if window == "uniform":
        return torch.ones(tile, device=device)
    axes = []
    for length in tile:
        position = torch.arange(length, dtype=torch.float32, device=device) - (length - 1) / 2
        axes.append(torch.exp(-0.5 * (position / (length / 4)) ** 2))
    return axes[0][:, None] * axes[1][None, :]


def _tile_batches(
    origins: list[tuple[int, int]], tile_batch: int
) -> Iterator[list[tuple[int, int]]]:
    for start in range(0, len(origins), tile_batch):
        yield origins[start : start + tile_batch]


def sliding_window_probabilities(
    logits_fn: LogitsFn,
    x: torch.Tensor,
    tile: Size,
    stride: Size,
    tile_batch: int = 4,
    window: str = "gaussian",
) -> torch.Tensor:
    """Blended class probabilities (1, C, H, W) of one normalised image ``x`` (1, 3, H, W).

    Overlapping tiles go through ``logits_fn`` ``tile_batch`` at a time; each tile's softmax,
    weighted by the window, is added into one float32 (C, H, W) buffer, which is divided by the
    summed weights at the end. Beyond the image and that buffer, memory holds only one batch of
    tiles, so a 2048x1024 image runs on a small GPU or a laptop.
    """
    height, width = x.shape[-2:]
    tile = (min(tile[0], height), min(tile[1], width))
    origins = [
        (top, left)
        for top in tile_origins(height, tile[0], stride[0])
        for left in tile_origins(width, tile[1], stride[1])
    ]
    weights = window_weights(tile, window, x.device)
    weight_sum = torch.zeros((height, width), dtype=torch.float32, device=x.device)
    buffer = None
    for batch in _tile_batches(origins, tile_batch):
        crops = [x[0, :, t : t + tile[0], left : left + tile[1]] for t, left in batch]
        probs = logits_fn(torch.stack(crops)).float().softmax(dim=1)
        if buffer is None:
            buffer = torch.zeros((probs.shape[1], height, width), device=x.device)
        for (top, left), tile_probs in zip(batch, probs, strict=True):
            buffer[:, top : top + tile[0], left : left + tile[1]].addcmul_(tile_probs, weights)
            weight_sum[top : top + tile[0], left : left + tile[1]] += weights
        del probs
    return buffer.div_(weight_sum)[None]
