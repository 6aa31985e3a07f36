"""Inference modes shared by ``evaluate`` and ``predict``: whole image, sliding window, and
test-time augmentation (horizontal flip, several scales), all averaged in probability space.

Images travel as uint8 and are normalised on the device. Probabilities always come back at the
size the caller asks for (by default the image's own), so evaluation scores at the ground truth's
resolution whatever size the network ran at.

Example:
    >>> import numpy as np, torch
    >>> from cityseg.evaluate.inference import InferenceOptions, Predictor
    >>> model = torch.nn.Conv2d(3, 19, 3, padding=1)
    >>> options = InferenceOptions(mode="slide", tile=(32, 32))
    >>> predictor = Predictor(model, mean=(0.5,) * 3, std=(0.25,) * 3, options=options)
    >>> image = np.zeros((37, 50, 3), np.uint8)
    >>> predictor.probabilities(image).shape, predictor.predict(image).dtype
    (torch.Size([19, 37, 50]), torch.uint8)
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cityseg.errors import ConfigError

MODES = ("whole", "slide")
WINDOWS = ("uniform", "gaussian")
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
TTA_SCALES = (0.75, 1.0, 1.25)
"""The scales ``--tta`` averages when no ``--scales`` are given."""

Size = tuple[int, int]
LogitsFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class InferenceOptions:
    """How to turn an image into class probabilities.

    Args:
        mode: "whole" (one forward pass over the image) or "slide" (overlapping tiles at full
            resolution, blended; memory bounded by the tile size).
        resize: whole mode: run the network at this (height, width), e.g. the training size, and
            resize the logits back. None runs at the image size times ``scale``.
        scale: whole mode without ``resize``: run at the image size times this factor.
        tile: slide mode: tile (height, width); None uses the training size given to the
            predictor, or 512x1024. Tiles larger than the image shrink to it.
        stride: slide mode: step between tiles; None uses 2/3 of the tile (a third overlaps).
        tile_batch: slide mode: tiles per forward pass.
        window: slide mode: "uniform" (plain average of overlapping tiles) or "gaussian" (tile
            centres weigh more than their borders, which see less context).
        flip: also run on the horizontally flipped image and average.
        scales: run at each of these factors (of the whole-mode size, or of the image in slide
            mode) and average; (0.75, 1.0, 1.25) is common.
        precision: "fp32", or autocast to "bf16" (CPU and recent GPUs) or "fp16" (CUDA only);
            "auto" picks bf16 on GPUs that compute it natively (else fp16) and on CPUs with AMX,
            else fp32.
        channels_last: run the network in channels-last memory format (faster convolutions on
            recent GPUs and on CPUs with oneDNN).
    """

    mode: str = "whole"
    resize: Size | None = None
    scale: float = 1.0
    tile: Size | None = None
    stride: Size | None = None
    tile_batch: int = 4
    window: str = "gaussian"
    flip: bool = False
    scales: tuple[float, ...] = field(default=(1.0,))
    precision: str = "fp32"
    channels_last: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.mode not in MODES:
            problems.append(f"inference mode {self.mode!r} is unknown; use one of {list(MODES)}")
        if self.window not in WINDOWS:
            problems.append(f"window {self.window!r} is unknown; use one of {list(WINDOWS)}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision {self.precision!r} is unknown; use one of {PRECISIONS}")
        for name in ("resize", "tile", "stride"):
            size = getattr(self, name)
            if size is not None and (len(size) != 2 or min(size) < 1):
                problems.append(f"{name} {size} must be two positive integers (height, width)")
        if self.tile_batch < 1:
            problems.append(f"tile_batch {self.tile_batch} must be at least 1")
        if not self.scales or min(self.scales) <= 0 or self.scale <= 0:
            problems.append(f"scales {self.scales} and scale {self.scale} must be positive")
        if problems:
            raise ConfigError(*problems)

    @property
    def passes(self) -> int:
        """Forward passes (over the whole image or all its tiles) per image."""
        return len(self.scales) * (2 if self.flip else 1)


class Predictor:
    """Class probabilities and trainIds of uint8 RGB images, by any of the inference modes.

    Args:
        model: a network mapping a normalised float batch (N, 3, H, W) to logits (N, C, H, W).
        mean: per-channel mean of the normalisation, on the 0..1 scale.
        std: per-channel standard deviation of the normalisation.
        device: where the network runs and the probabilities live.
        options: the inference mode and its settings.
        training_size: (height, width) the network was trained at: the default tile.

    Example:
        >>> predictor = Predictor.from_checkpoint("runs/demo", "cpu")  # doctest: +SKIP
        >>> train_ids = predictor.predict(image_uint8_hw3).cpu().numpy()  # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        device: str | torch.device = "cpu",
        options: InferenceOptions | None = None,
        training_size: Size | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.options = options or InferenceOptions()
        self.precision = resolve_precision(self.options.precision, self.device)
        memory_format = torch.channels_last if self.options.channels_last else torch.preserve_format
        self.model = model.eval().to(self.device, memory_format=memory_format)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.min_size = int(getattr(model, "min_size", 1))
        self.meta: dict = {}  # the checkpoint's metadata, set by from_checkpoint
        self.fell_back = False  # whole mode ran out of memory: sliding windows instead
        self.tile = self.options.tile or training_size or (512, 1024)
        self.stride = self.options.stride or tuple(max(1, (2 * t) // 3) for t in self.tile)
        if self.options.mode == "slide":
            _check_tiling(self.tile, self.stride, self.min_size)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str | torch.device = "cpu", **options
    ) -> Predictor:
        """A predictor for a cityseg checkpoint; ``options`` are :class:`InferenceOptions` fields.

        ``resize="train"`` runs whole-image inference at the checkpoint's training size.
        """
        from cityseg.train.checkpoint import load_model

        model, meta = load_model(path, device)
        training_size = tuple(meta["input_size"]) if meta.get("input_size") else None
        if options.get("resize") == "train":
            options["resize"] = training_size
        norm = meta["normalization"]
        predictor = cls(
            model, norm["mean"], norm["std"], device, InferenceOptions(**options), training_size
        )
        predictor.meta = meta
        return predictor

    def settings(self) -> dict:
        """The inference options in effect, tile and stride resolved, as a JSON-ready dict."""
        settings = asdict(self.options) | {"precision": self.precision}
        if self.options.mode == "slide" or self.fell_back:
            settings |= {"tile": self.tile, "stride": self.stride}
        if self.fell_back:
            settings["out_of_memory_fallback"] = "slide"
        return json.loads(json.dumps(settings))

    @torch.no_grad()
    def probabilities(
        self, images: np.ndarray | torch.Tensor, output_size: Size | None = None
    ) -> torch.Tensor:
        """Float32 class probabilities on the device: (C, H, W) for one image (H, W, 3), or
        (N, C, H, W) for a batch (N, H, W, 3), at ``output_size`` (default: the image size)."""
        batch = torch.as_tensor(images)
        single = batch.dim() == 3
        if single:
            batch = batch.unsqueeze(0)
        if batch.dim() != 4 or batch.shape[-1] != 3 or batch.dtype != torch.uint8:
            raise ValueError(
                f"expected uint8 RGB images (H, W, 3) or (N, H, W, 3), got {tuple(batch.shape)} "
                f"{batch.dtype}"
            )
        x = self._normalize(batch)
        output_size = tuple(output_size or x.shape[-2:])
        total = None
        for scale in self.options.scales:
            for flipped in (False, True) if self.options.flip else (False,):
                probs = self._single_pass(x.flip(-1) if flipped else x, scale, output_size)
                probs = probs.flip(-1) if flipped else probs
                total = probs if total is None else total.add_(probs)
        total /= self.options.passes
        return total[0] if single else total

    def predict(
        self, images: np.ndarray | torch.Tensor, output_size: Size | None = None
    ) -> torch.Tensor:
        """uint8 trainIds on the device: (H, W) for one image, (N, H, W) for a batch."""
        probs = self.probabilities(images, output_size)
        return probs.argmax(dim=-3).to(torch.uint8)

    def _normalize(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.to(self.device, non_blocking=True).permute(0, 3, 1, 2).contiguous().float()
        return x.div_(255).sub_(self.mean).div_(self.std)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.options.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        autocast = (
            torch.autocast(self.device.type, dtype=_DTYPES[self.precision])
            if self.precision != "fp32"
            else nullcontext()
        )
        with autocast:
            return self.model(x).float()

    def _single_pass(self, x: torch.Tensor, scale: float, output_size: Size) -> torch.Tensor:
        """Probabilities (N, C, *output_size) of one pass at one scale."""
        options = self.options
        if options.mode == "whole":
            base = options.resize or _scaled(x.shape[-2:], options.scale)
            x = resize_image(x, self._at_least_min(_scaled(base, scale)))
            if not self.fell_back:
                try:
                    logits = resize_map(self._logits(x), output_size)
                    return logits.softmax(dim=1)
                except torch.OutOfMemoryError:
                    self._fall_back_to_slide(x.shape[-2:])
            return self._slide_all(x, output_size)
        x = resize_image(x, self._at_least_min(_scaled(x.shape[-2:], scale)))
        return self._slide_all(x, output_size)

    def _slide_all(self, x: torch.Tensor, output_size: Size) -> torch.Tensor:
        probs = [self._slide(image[None]) for image in x]
        return torch.cat([resize_map(p, output_size) for p in probs])

    def _fall_back_to_slide(self, size: Sequence[int]) -> None:
        """After running out of memory on a whole image: slide windows from now on."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        _check_tiling(self.tile, self.stride, self.min_size)
        self.fell_back = True
        print(
            f"out of {self.device.type} memory on a whole {size[0]}x{size[1]} image: falling back "
            f"to sliding-window inference (tiles of {self.tile[0]}x{self.tile[1]}) for this and "
            "the following images (--mode slide --tile HxW chooses it from the start)",
            file=sys.stderr,
            flush=True,
        )

    def _slide(self, x: torch.Tensor) -> torch.Tensor:
        tile = (min(self.tile[0], x.shape[-2]), min(self.tile[1], x.shape[-1]))
        return sliding_window_probabilities(
            self._logits, x, tile, self.stride, self.options.tile_batch, self.options.window
        )

    def _at_least_min(self, size: Size) -> Size:
        return (max(size[0], self.min_size), max(size[1], self.min_size))


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device) -> str:
    """The autocast format to use: ``precision`` itself, or what "auto" means on ``device``."""
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"precision fp16 needs a CUDA device, not {device}; use bf16 or fp32")
    if precision != "auto":
        return precision
    from cityseg.train.precision import cpu_bf16_support, cuda_bf16_support

    if device.type == "cuda":
        return "bf16" if cuda_bf16_support(device) == "native" else "fp16"
    if device.type == "cpu":
        return "bf16" if cpu_bf16_support() == "amx" else "fp32"
    return "fp32"


def _check_tiling(tile: Size, stride: Size, min_size: int) -> None:
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


def _scaled(size: Sequence[int], scale: float) -> Size:
    return (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))


def resize_image(x: torch.Tensor, size: Size) -> torch.Tensor:
    """Bilinear resize of a float batch (N, 3, H, W), antialiased when it shrinks."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrinks = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrinks)


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
