"""The city of every image, so that validation can hold out whole cities. No torch import here.

In the official layout the city is the first part of the frame id (``aachen_000000_000019``). The
Kaggle pairs files are numbered in the official file order (``train/1.jpg`` … ``8.jpg`` are
``aachen_000000_000019`` … ``aachen_000007_000019``), so a number range is a city:
:data:`PAIRS_CITIES` gives each split's cities in order, with their frame counts.

Example:
    >>> city_of("aachen_000000_000019", "cityscapes", "train")
    'aachen'
    >>> city_of("175", "pairs", "train"), city_of("2975", "pairs", "train")
    ('bochum', 'zurich')
"""

from __future__ import annotations

PAIRS_CITIES: dict[str, tuple[tuple[str, int], ...]] = {
    "train": (
        ("aachen", 174), ("bochum", 96), ("bremen", 316), ("cologne", 154), ("darmstadt", 85),
        ("dusseldorf", 221), ("erfurt", 109), ("hamburg", 248), ("hanover", 196), ("jena", 119),
        ("krefeld", 99), ("monchengladbach", 94), ("strasbourg", 365), ("stuttgart", 196),
        ("tubingen", 144), ("ulm", 95), ("weimar", 142), ("zurich", 122),
    ),
    "val": (("frankfurt", 267), ("lindau", 59), ("munster", 174)),
}  # fmt: skip
"""The cities of the official train (2975 frames) and val (500) splits, in file order, with their
frame counts: the order of the pairs files' numbers."""


def city_of(frame_id: str, data_format: str, split: str) -> str | None:
    """The city of a frame: the frame id's first part in the official layout, the city its number
    falls in for pairs (None for a number outside the official split)."""
    if data_format != "pairs":
        return frame_id.split("_", 1)[0]
    if not frame_id.isdigit():
        return None
    number, end = int(frame_id), 0
    for name, count in PAIRS_CITIES.get(split, ()):
        end += count
        if 1 <= number <= end:
            return name
    return None
