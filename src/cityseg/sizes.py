"""Image sizes written as text: ``256x512`` (height x width) or ``256`` (a square). No torch here.

Example:
    >>> parse_size("256x512"), parse_size("256"), parse_size("64*128"), parse_size("64,128")
    ((256, 512), (256, 256), (64, 128), (64, 128))
"""

from __future__ import annotations

MAX_SIDE = 16384
"""The largest side a size may have unless told otherwise."""
SEPARATORS = ("x", "*", ",")
"""Between height and width: ``256x512`` (any case), ``256*512`` or ``256,512``."""

Size = tuple[int, int]


def parse_size(text: str, minimum: int = 1, maximum: int | None = MAX_SIDE) -> Size:
    """``"HEIGHTxWIDTH"`` or one number for a square, as (height, width).

    Args:
        text: ``256x512``, ``256X512``, ``256*512``, ``256,512`` or ``256``; spaces around the
            numbers are allowed.
        minimum: the smallest side accepted.
        maximum: the largest side accepted (None: no limit).

    Raises:
        ValueError: ``text`` is not such a size, or a side is out of range; the message shows the
            accepted forms.
    """
    normalised = text.lower()
    for separator in SEPARATORS[1:]:
        normalised = normalised.replace(separator, SEPARATORS[0])
    try:
        sides = tuple(int(part) for part in normalised.split(SEPARATORS[0]))
    except ValueError:
        sides = ()
    if len(sides) == 1:
        sides = sides * 2
    too_large = maximum is not None and max(sides, default=0) > maximum
    if len(sides) != 2 or min(sides) < minimum or too_large:
        limit = f"{minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
        raise ValueError(
            f"{text!r} is not a size; write HEIGHTxWIDTH (HxW, e.g. 256x512) or one number for "
            f"a square, each side {limit}"
        )
    return sides
