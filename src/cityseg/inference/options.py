"""How an image becomes class probabilities: the inference options, resolved once from the
command's flags and the checkpoint's training size. No torch import here (the ONNX path uses it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cityseg.errors import ConfigError

MODES = ("whole", "slide")
WINDOWS = ("uniform", "gaussian")
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
TTA_SCALES = (0.75, 1.0, 1.25)
"""The scales ``--tta`` averages when no ``--scales`` are given."""

Size = tuple[int, int]


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


def inference_options(mode: str, tta: bool, **options) -> dict[str, Any]:
    """:class:`InferenceOptions` fields from the command's flags: ``tta`` adds the flip and, when
    no ``scales`` are given, the scales 0.75, 1.0 and 1.25."""
    options = {key: value for key, value in options.items() if value is not None}
    if tta:
        options["flip"] = True
        options.setdefault("scales", TTA_SCALES)
    if "scales" in options:
        options["scales"] = tuple(float(scale) for scale in options["scales"])
    return {"mode": mode, **options}
