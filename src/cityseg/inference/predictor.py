"""Inference modes shared by ``evaluate`` and ``predict``: whole image, sliding window, and
test-time augmentation (horizontal flip, several scales), all averaged in probability space.

Images travel as uint8 and are normalised on the device. Probabilities always come back at the
size the caller asks for (by default the image's own), so evaluation scores at the ground truth's
resolution whatever size the network ran at.

Example:
    >>> import numpy as np, torch
    >>> from cityseg.inference.options import InferenceOptions
    >>> from cityseg.inference.predictor import Predictor
    >>> model = torch.nn.Conv2d(3, 19, 3, padding=1)
    >>> options = InferenceOptions(mode="slide", tile=(32, 32))
    >>> predictor = Predictor(model, mean=(0.5,) * 3, std=(0.25,) * 3, options=options)
    >>> image = np.zeros((37, 50, 3), np.uint8)
    >>> predictor.probabilities(image).shape, predictor.predict(image).dtype
    (torch.Size([19, 37, 50]), torch.uint8)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cityseg.checkpoint.loading import load_model
from cityseg.inference.options import InferenceOptions, Size, describe_scale, scaled_size
from cityseg.inference.windows import (
    check_tiling,
    resize_image,
    resize_map,
    sliding_window_probabilities,
)
from cityseg.runtime.normalize import Normalize
from cityseg.runtime.precision import choose_precision


class Predictor:
    """Class probabilities and trainIds of uint8 RGB images, by any of the inference modes.

    Args:
        model: a network mapping a normalised float batch (N, 3, H, W) to logits (N, C, H, W).
        mean: per-channel mean of the normalisation, on the 0..1 scale.
        std: per-channel standard deviation of the normalisation.
        device: where the network runs and the probabilities live.
        options: the inference mode and its settings (default: whole images at the scale the
            network was trained at; see :mod:`cityseg.inference.options`).
        training_size: (height, width) the images were resized to in training: the size each
            image is resized to by default (``resize`` "auto" or "train"), and the default tile
            unless ``crop_size`` is known.
        crop_size: (height, width) of the training crops, if it trained on crops: the default tile.

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
        crop_size: Size | None = None,
    ) -> None:
        self.device = torch.device(device)
        options = options or InferenceOptions()
        self.options = options.for_training_size(training_size, crop_size)
        self.precision = choose_precision(self.options.precision, self.device, option="--precision")
        memory_format = torch.channels_last if self.options.channels_last else torch.preserve_format
        self.model = model.eval().to(self.device, memory_format=memory_format)
        self.normalize = Normalize(mean, std).to(self.device)
        self.min_size = int(getattr(model, "min_size", 1))
        self.meta: dict = {}  # the checkpoint's metadata, set by from_checkpoint
        self.fell_back = False  # whole mode ran out of memory: sliding windows instead
        self.tile = tuple(self.options.tile or crop_size or training_size or (512, 1024))
        self.stride = self.options.stride or tuple(max(1, (2 * t) // 3) for t in self.tile)
        if self.options.mode == "slide":
            check_tiling(self.tile, self.stride, self.min_size)
        self.scale_line = describe_scale(options, training_size, crop_size, self.tile)
        """The scale the network runs at, why, and how to change it: the line a command prints
        first (see :func:`~cityseg.inference.options.describe_scale`)."""
        self._tile_notice = self.options.mode == "slide" and self.options.tile is not None

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str | torch.device = "cpu",
        options: InferenceOptions | None = None,
    ) -> Predictor:
        """A predictor for a cityseg checkpoint (``resize="train"``: its training size)."""
        model, meta = load_model(path, device)
        training_size = tuple(meta["input_size"]) if meta.get("input_size") else None
        crop_size = tuple(meta["crop_size"]) if meta.get("crop_size") else None
        norm = meta["normalization"]
        predictor = cls(model, norm["mean"], norm["std"], device, options, training_size, crop_size)
        predictor.meta = meta
        return predictor

    def settings(self) -> dict:
        """The inference options in effect, tile and stride resolved, and the scale the network
        ran at, as a JSON-ready dict."""
        settings = asdict(self.options) | {"precision": self.precision.name}
        settings["scale"] = self.scale_line.removeprefix("scale: ")
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
        x = self.normalize(batch.to(self.device, non_blocking=True))
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

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.options.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.precision.autocast():
            return self.model(x).float()

    def _single_pass(self, x: torch.Tensor, scale: float, output_size: Size) -> torch.Tensor:
        """Probabilities (N, C, *output_size) of one pass at one scale."""
        options = self.options
        base = options.resize or scaled_size(x.shape[-2:], options.scale)
        x = resize_image(x, self._at_least_min(scaled_size(base, scale)))
        if options.mode == "whole":
            if not self.fell_back:
                try:
                    logits = resize_map(self._logits(x), output_size)
                    return logits.softmax(dim=1)
                except torch.OutOfMemoryError:
                    self._fall_back_to_slide(x.shape[-2:])
            return self._slide_all(x, output_size)
        return self._slide_all(x, output_size)

    def _slide_all(self, x: torch.Tensor, output_size: Size) -> torch.Tensor:
        probs = [self._slide(image[None]) for image in x]
        return torch.cat([resize_map(p, output_size) for p in probs])

    def _fall_back_to_slide(self, size: Sequence[int]) -> None:
        """After running out of memory on a whole image: slide windows from now on."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        check_tiling(self.tile, self.stride, self.min_size)
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
        if self._tile_notice and tile != self.tile:
            self._tile_notice = False  # said once
            print(
                f"--tile {self.tile[0]}x{self.tile[1]} is larger than the {x.shape[-2]}x"
                f"{x.shape[-1]} image the network sees at this scale: tiles of {tile[0]}x{tile[1]}"
                " used (--resize native or a larger --resize gives more pixels to tile)",
                file=sys.stderr,
                flush=True,
            )
        return sliding_window_probabilities(
            self._logits, x, tile, self.stride, self.options.tile_batch, self.options.window
        )

    def _at_least_min(self, size: Size) -> Size:
        return (max(size[0], self.min_size), max(size[1], self.min_size))
