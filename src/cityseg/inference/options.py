"""How an image becomes class probabilities: the inference options, built once from the command's
flags (:meth:`InferenceOptions.from_flags`) and completed with the checkpoint's training size
(:meth:`InferenceOptions.for_training_size`). No torch import here: the ONNX path uses them too.

The scale rule: a network runs at the scale it was trained at unless told otherwise. A network
trained on images resized to a size (``data.size``) sees each image resized to that size, in whole
mode and, before it is tiled, in slide mode; a network trained on crops of images at their own
size runs at each image's own size. ``resize="native"`` (the image as it is), a (height, width) or
a factor override the rule.

Example:
    >>> options = InferenceOptions.from_flags(tta=True)
    >>> options.flip, options.scales, options.for_training_size((128, 256)).resize
    (True, (0.75, 1.0, 1.25), (128, 256))
    >>> InferenceOptions.from_flags(resize="native").for_training_size((128, 256)).resize is None
    True
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
"""``resize`` value that stands for the size the network was trained at (an error if unknown)."""
AUTO = "auto"
"""``resize`` value of the scale rule: the training size if the network records one, else the
image's own size. The default."""
NATIVE = "native"
"""``--resize`` value for the image's own size, whatever the network was trained at."""

Size = tuple[int, int]


@dataclass(frozen=True)
class InferenceOptions:
    """How to turn an image into class probabilities.

    Args:
        mode: "whole" (one forward pass over the image) or "slide" (overlapping tiles at full
            resolution, blended; memory bounded by the tile size).
        resize: resize each image to this (height, width) before the network sees it (whole
            mode) or before it is tiled (slide mode), and the probabilities back; "auto" (the
            default, the scale rule: the training size if the network records one, else the
            image's own size) or "train" (the training size; an error if unknown) are resolved
            by :meth:`for_training_size`. None runs at the image size times ``scale``.
        scale: without ``resize``: run at the image size times this factor.
        tile: slide mode: tile (height, width); None uses the training crop or size given to
            the predictor, or 512x1024. Tiles larger than the (resized) image shrink to it.
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
    resize: Size | Literal["auto", "train"] | None = AUTO
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
            if size is None or (name == "resize" and size in (AUTO, TRAINING_SIZE)):
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
            resize: None or "auto" (the scale rule), "train" (the training size), "native"
                (each image at its own size), a (height, width) or a factor of the image size
                (``scale``).
            tta: also average over the flipped image and, unless ``scales`` is given, the scales
                0.75, 1.0 and 1.25.
            scales: average over these factors.
            **options: the other fields (``tile``, ``stride``, ``window``, ``tile_batch``,
                ``precision``, ``channels_last``); None leaves a field at its default.
        """
        fields = {name: value for name, value in options.items() if value is not None}
        if isinstance(resize, (int, float)) and not isinstance(resize, bool):
            fields["resize"] = None
            fields["scale"] = float(resize)
        elif resize == NATIVE:
            fields["resize"] = None
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
        """These options with ``resize`` "auto" or "train" made the network's training size: the
        size the images were resized to in training, or none at all for a network trained on
        crops of images at their own size (``crop_size`` known, ``training_size`` None). "auto"
        with neither known runs at the image's own size.

        Raises:
            ConfigError: "train" is asked for but the training size is unknown.
        """
        if self.resize == AUTO:
            return dataclasses.replace(self, resize=tuple(training_size) if training_size else None)
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


def describe_scale(
    requested: InferenceOptions,
    training_size: Sequence[int] | None,
    crop_size: Sequence[int] | None = None,
    tile: Sequence[int] | None = None,
) -> str:
    """The one line a command prints first: the scale the network runs at, why, and how to change
    it. ``requested`` are the options before :meth:`InferenceOptions.for_training_size`.

    Example:
        >>> describe_scale(InferenceOptions(), (128, 256))
        'scale: each image resized to 128x256, the size the network was trained at (--resize native: each image at its own size)'
        >>> describe_scale(InferenceOptions(), None, (512, 1024))
        'scale: each image at its own size, the scale the network was trained at (512x1024 crops of images at their own size)'
    """  # noqa: E501
    resolved = requested.for_training_size(training_size, crop_size)
    trained = _training_scale(training_size, crop_size)
    if resolved.resize is not None:
        run = f"each image resized to {_text(resolved.resize)}"
    elif resolved.scale != 1.0:
        run = f"each image at {resolved.scale:g} times its own size"
    else:
        run = "each image at its own size"
    hint = ""
    if requested.resize == AUTO and training_size:
        why = ", the size the network was trained at"
        hint = " (--resize native: each image at its own size)"
    elif requested.resize == AUTO and crop_size:
        why = f", the scale the network was trained at ({trained})"
    elif requested.resize == AUTO:
        why = " (the network records no training size)"
    elif requested.resize == TRAINING_SIZE:
        why = " (--resize train)"
    else:
        why = f"; the network was trained on {trained}" if training_size or crop_size else ""
    extra = [scale for scale in resolved.scales if scale != 1.0]
    scales = f", and {', '.join(f'{s:g}' for s in extra)} times that" if extra else ""
    tiles = f", then cut into {_text(tile)} tiles" if resolved.mode == "slide" and tile else ""
    if why.startswith(";"):
        return f"scale: {run}{scales}{tiles}{why}"
    return f"scale: {run}{why}{scales}{tiles}{hint}"


def _training_scale(training_size: Sequence[int] | None, crop_size: Sequence[int] | None) -> str:
    if training_size and crop_size:
        return f"{_text(crop_size)} crops of images resized to {_text(training_size)}"
    if training_size:
        return f"images resized to {_text(training_size)}"
    if crop_size:
        return f"{_text(crop_size)} crops of images at their own size"
    return "a size it does not record"


def _text(size: Sequence[int]) -> str:
    return f"{size[0]}x{size[1]}"
