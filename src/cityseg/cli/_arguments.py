"""Argument types shared by the commands: sizes, resize, scales, fractions. No torch import here.

Not a command: ``register_commands`` leaves modules whose name starts with ``_`` alone.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from cityseg.inference.options import NATIVE, TRAINING_SIZE
from cityseg.sizes import MAX_SIDE, Size, parse_size

MAX_FACTOR = 8.0


def size_type(minimum: int = 1, maximum: int | None = MAX_SIDE) -> Callable[[str], Size]:
    """An argparse type: ``HEIGHTxWIDTH`` or one number for a square (see
    :func:`cityseg.sizes.parse_size`), each side in [minimum, maximum]."""

    def parse(text: str) -> Size:
        try:
            return parse_size(text, minimum, maximum)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


size = size_type()
"""``--tile``, ``--stride``: any size up to MAX_SIDE."""


RESIZE_HELP = (
    "the size the network sees: by default each image resized to the size the network was "
    "trained at (as the checkpoint records; at its own size for a network trained on crops of "
    "full-size images); 'native' (each image at its own size), 'train' (the training size, an "
    "error if unknown), HEIGHTxWIDTH, or a factor of the image size (0.5); in slide mode the "
    "image is resized first, then tiled"
)


def parse_resize(text: str) -> Size | float | str:
    """--resize: "native" (the image's own size), "train" (the checkpoint's training size),
    HEIGHTxWIDTH, or a factor like 0.5."""
    if text in (TRAINING_SIZE, NATIVE):
        return text
    if "x" in text.lower():
        return size(text)
    try:
        factor = float(text)
    except ValueError:
        factor = 0.0
    if not 0 < factor <= MAX_FACTOR:  # (false for NaN)
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a resize; write native, train, HEIGHTxWIDTH (e.g. 512x1024) or a "
            "factor (0.5)"
        )
    return factor


def parse_scales(text: str) -> tuple[float, ...]:
    """ "0.75,1,1.25" -> (0.75, 1.0, 1.25)."""
    try:
        scales = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        scales = ()
    if not scales or not all(0 < scale <= MAX_FACTOR for scale in scales):  # (false for NaN)
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of scales, each above 0 and at most {MAX_FACTOR:g}; "
            "e.g. 0.75,1,1.25"
        )
    return scales


def fraction(text: str) -> float:
    """A number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1: {text}")
    return value
