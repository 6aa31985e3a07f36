"""How an image becomes class probabilities: the inference options, built once from the command's
flags (:meth:`InferenceOptions.from_flags`) and completed with the checkpoint's training size
(:meth:`InferenceOptions.for_training_size`). No torch import here: the ONNX path uses them too.

Example:
    >>> options = InferenceOptions.from_flags(resize="train", tta=True)
    >>> options.flip, options.scales, options.for_training_size((128, 256)).resize
    (True, (0.75, 1.0, 1.25), (128, 256))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from cityseg.errors import ConfigError

MODES = ("whole", "slide")
WINDOWS = ("uniform", "gaussian")
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
TTA_SCALES = (0.75, 1.0, 1.25)
"""The scales ``--tta`` averages when no ``--scales`` are given."""
TRAINING_SIZE = "train"
"""``resize`` value that stands for the size the network was trained at."""

Size = tuple[int, int]


@dataclass(frozen=True)
class InferenceOptions:
    """How to turn an image into class probabilities.

    Args:
        mode: "whole" (one forward pass over the image) or "slide" (overlapping tiles at full
            resolution, blended; memory bounded by the tile size).
        resize: whole mode: run the network at this (height, width), or at the training size
            ("train", see :meth:`for_training_size`), and resize the logits back. None runs at
            the image size times ``scale``.
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
        precision: "fp32", or autocast to "bf16" (CPU and recent GPUs) or "fp16" (GPUs only);
            "auto" follows the one rule of training and inference (bf16 where the hardware
            computes it natively, fp16 on older GPUs, else fp32; see
            :func:`cityseg.runtime.precision.choose_precision`).
        channels_last: run the network in channels-last memory format (faster convolutions on
            recent GPUs and on CPUs with oneDNN).
    """

    mode: str = "whole"
    resize: Size | Literal["train"] | None = None
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
            if size is None or (name == "resize" and size == TRAINING_SIZE):
                continue
            if isinstance(size, str) or len(size) != 2 or min(size) < 1:
                problems.append(f"{name} {size} must be two positive integers (height, width)")
            else:
                object.__setattr__(self, name, (int(size[0]), int(size[1])))
        if self.tile_batch < 1:
            problems.append(f"tile_batch {self.tile_batch} must be at least 1")
        if not self.scales or min(self.scales) <= 0 or self.scale <= 0:
            problems.append(f"scales {self.scales} and scale {self.scale} must be positive")
        else:
            object.__setattr__(self, "scales", tuple(float(scale) for scale in self.scales))
        if problems:
            raise ConfigError(*problems)

    @classmethod
    def from_flags(
        cls,
        mode: str = "whole",
        *,
        resize: Size | float | str | None = None,
        tta: bool = False,
        scales: Sequence[float] | None = None,
        **options: object,
    ) -> InferenceOptions:
        """The options as the commands give them.

        Args:
            mode: "whole" or "slide".
            resize: a (height, width), "train" (the training size) or a factor of the image
                size (``scale``); None: the image size.
            tta: also average over the flipped image and, unless ``scales`` is given, the scales
                0.75, 1.0 and 1.25.
            scales: average over these factors.
            **options: the other fields (``tile``, ``stride``, ``window``, ``tile_batch``,
                ``precision``, ``channels_last``); None leaves a field at its default.
        """
        fields = {name: value for name, value in options.items() if value is not None}
        if isinstance(resize, (int, float)) and not isinstance(resize, bool):
            fields["scale"] = float(resize)
        elif resize is not None:
            fields["resize"] = resize
        if tta:
            fields["flip"] = True
            scales = scales or TTA_SCALES
        if scales is not None:
            fields["scales"] = tuple(scales)
        return cls(mode=mode, **fields)

    def for_training_size(
        self, training_size: Sequence[int] | None, crop_size: Sequence[int] | None = None
    ) -> InferenceOptions:
        """These options with ``resize="train"`` made the network's training size: the size the
        images were resized to in training, or none at all for a network trained on crops of
        images at their own size (``crop_size`` known, ``training_size`` None).

        Raises:
            ConfigError: "train" is asked for but the training size is unknown.
        """
        if self.resize != TRAINING_SIZE:
            return self
        if not training_size and crop_size:
            return dataclasses.replace(self, resize=None)
        if not training_size:
            raise ConfigError(
                "resize 'train' needs the training size, which this model does not record; "
                "give HEIGHTxWIDTH"
            )
        return dataclasses.replace(self, resize=tuple(training_size))

    @property
    def passes(self) -> int:
        """Forward passes (over the whole image or all its tiles) per image."""
        return len(self.scales) * (2 if self.flip else 1)


def scaled_size(size: Sequence[int], scale: float) -> Size:
    """(height, width) times ``scale``, rounded, each at least 1."""
    return (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
