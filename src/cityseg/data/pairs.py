"""The Kaggle "cityscapes-image-pairs" format: ``<root>/<split>/<n>.jpg``, photo left, labels right.

Each JPEG is 512 wide and 256 high: the photo on the left half and the Cityscapes colour-coded
ground truth on the right half. JPEG compression and the original resize blur the label colours,
so each label pixel is decoded by these rules (RGB Euclidean distance, 0..255 per channel):

* **exact**: the pixel has one of the 34 label colours (``labels.LABEL_COLORS``) -> its trainId;
* **near**: its nearest label colour is at most ``MAX_COLOR_DISTANCE`` = 40 away *and* at most
  ``MAX_DISTANCE_RATIO`` = 0.5 times the distance to the second-nearest colour -> that trainId;
* **far** (farther than 40 from every colour) and **ambiguous** (between two colours, typically a
  blend on a class boundary) -> 255, ignored by the loss and the metrics.

A colour shared by several labels takes the trainId of the lowest labelId (``COLOR_TO_LABEL_ID``):
black (unlabeled, ego vehicle, rectification border, out of roi, static) is void -> 255, and the
grey of pole / polegroup is pole. Void colours (ground, dynamic, caravan, ...) decode to 255 too.

Why 40 and 0.5: frames 1..8 are aachen_000000..000007_000019, whose labelIds are in the sample
Cityscapes data. Against them (nearest-neighbour downscaled), these rules decode 89.3% of pixels
and put a class absent from the pixel's neighbourhood on 0.5% of them; a plain nearest-colour rule
with a threshold of 25 decodes as many (89.1%) with twice the wrong classes (1.0%), and with no
threshold at all, 4.9%. The pixels left undecoded lie almost all on class boundaries. On 200
images of the Kaggle pairs data (every 15th), the rules decide: exact 15.1%, near 73.3%, far
5.4%, ambiguous 6.2%.

Decoding runs per sample during training, so the rules are precomputed into a lookup table over
RGB quantised to 64 levels per channel (256 KiB), applied with numpy indexing (a fraction of the
JPEG decode's time), agreeing with the unquantised rules on 99.6% of
pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from cityseg import labels
from cityseg.data.io import read_rgb
from cityseg.data.sample import Sample, SampleDataset
from cityseg.errors import DataError

MAX_COLOR_DISTANCE = 40.0
"""Farthest a label pixel may be from its nearest label colour (RGB Euclidean) to be decoded."""
MAX_DISTANCE_RATIO = 0.5
"""Nearest distance must be at most this fraction of the second-nearest, else ambiguous -> 255."""
_LEVEL_BITS = 6
LUT_LEVELS = 1 << _LEVEL_BITS
"""Quantisation levels per channel of the decoding lookup table (64)."""
PAIR_SUFFIXES = (".jpg", ".jpeg")

_COLORS = np.unique(labels.LABEL_COLORS, axis=0)  # 29 distinct colours among the 34 labels
_COLOR_TRAIN_IDS = np.array(
    [labels.LABEL_ID_TO_TRAIN_ID[labels.COLOR_TO_LABEL_ID[tuple(map(int, c))]] for c in _COLORS],
    dtype=np.uint8,
)
RULES = ("exact", "near", "far", "ambiguous")


@dataclass
class DecodingStatistics:
    """Pixel counts of each colour-decoding rule (see the module docstring)."""

    exact: int = 0
    near: int = 0
    far: int = 0
    ambiguous: int = 0

    @property
    def pixels(self) -> int:
        return self.exact + self.near + self.far + self.ambiguous

    def shares(self) -> dict[str, float]:
        """Fraction of pixels per rule, in the order of ``RULES``."""
        total = max(self.pixels, 1)
        return {rule: getattr(self, rule) / total for rule in RULES}

    def __iadd__(self, other: DecodingStatistics) -> DecodingStatistics:
        for rule in RULES:
            setattr(self, rule, getattr(self, rule) + getattr(other, rule))
        return self


def decode_label_colors(label_rgb: np.ndarray) -> np.ndarray:
    """Decode a colour label (RGB uint8, H x W x 3) into trainIds (uint8, H x W, 255 = ignore)."""
    quantised = label_rgb >> (8 - _LEVEL_BITS)
    index = quantised[..., 0].astype(np.int32) << (2 * _LEVEL_BITS)
    index |= quantised[..., 1].astype(np.int32) << _LEVEL_BITS
    index |= quantised[..., 2]
    return color_lookup_table()[index]


def decoding_statistics(label_rgb: np.ndarray) -> DecodingStatistics:
    """Count the pixels each rule decides, computed exactly (no quantisation)."""
    train_ids, nearest, second = _nearest_colors(label_rgb.reshape(-1, 3))
    exact = nearest == 0
    far = nearest > MAX_COLOR_DISTANCE
    near = ~exact & _decodable(nearest, second)
    ambiguous = ~(exact | far | near)
    return DecodingStatistics(
        int(exact.sum()), int(near.sum()), int(far.sum()), int(ambiguous.sum())
    )


@lru_cache(maxsize=1)
def color_lookup_table() -> np.ndarray:
    """trainId of every quantised RGB colour, flat (LUT_LEVELS**3,) uint8; built once."""
    step = 256 // LUT_LEVELS
    centres = np.arange(LUT_LEVELS, dtype=np.float32) * step + (step - 1) / 2
    grid = np.stack(np.meshgrid(centres, centres, centres, indexing="ij"), axis=-1)
    train_ids, nearest, second = _nearest_colors(grid.reshape(-1, 3))
    decoded = np.where(_decodable(nearest, second), train_ids, labels.IGNORE_INDEX)
    return decoded.astype(np.uint8)


def _decodable(nearest: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The exact and near rules: close to one label colour, and clearly closer than to any other."""
    return (nearest <= MAX_COLOR_DISTANCE) & (nearest <= MAX_DISTANCE_RATIO * second)


def _nearest_colors(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """trainId of the nearest label colour, distance to it, and distance to the second-nearest."""
    pixels = rgb.astype(np.float32)
    colors = _COLORS.astype(np.float32)
    squared = np.zeros((len(pixels), len(colors)), dtype=np.float32)
    for channel in range(3):
        squared += (pixels[:, channel, None] - colors[None, :, channel]) ** 2
    two_nearest = np.partition(squared, 1, axis=1)[:, :2]
    distances = np.sqrt(two_nearest)
    return _COLOR_TRAIN_IDS[squared.argmin(1)], distances[:, 0], distances[:, 1]


def read_pair(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Decode a pairs JPEG into (photo, colour label), both RGB uint8, checking its size."""
    pair = read_rgb(path)
    problem = pair_size_problem(path, pair.shape[1], pair.shape[0])
    if problem:
        raise DataError(problem)
    return split_pair(pair)


def split_pair(pair: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a decoded pairs image into (photo, colour label), the left and right halves."""
    half = pair.shape[1] // 2
    return pair[:, :half], pair[:, half:]


def pair_size_problem(path: Path, width: int, height: int) -> str | None:
    """A one-line problem if a pairs image cannot hold two equal square halves, else None."""
    if width == 2 * height and height > 0:
        return None
    return (
        f"{path}: {width}x{height} pixels, but a pairs image holds the photo and its colour label "
        "side by side (e.g. 512x256); remove it or use the official Cityscapes layout"
    )


def scan_pairs(root: Path, split: str) -> tuple[list[Sample], list[str]]:
    """List the JPEGs of ``<root>/<split>/``, sorted numerically, and any problem found."""
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        available = ", ".join(pairs_splits(root)) or "none"
        hint = "; make a validation split from train (indices=...)" if split == "val" else ""
        return [], [f"{split_dir}: split '{split}' not found; available splits: {available}{hint}"]
    files = sorted((p for p in split_dir.iterdir() if not p.name.startswith(".")), key=_pair_order)
    pairs = [p for p in files if p.suffix.lower() in PAIR_SUFFIXES]  # unreadable ones: named
    problems = [
        f"{p}: not a .jpg pairs image; convert or remove it (pairs are <n>.jpg)"
        for p in files
        if p.suffix.lower() in (".png", ".bmp", ".tif", ".tiff", ".webp")
    ]
    if not pairs:
        problems.append(f"{split_dir}: no .jpg images; check the download is complete")
    return [Sample(p, p, p.stem, "pairs") for p in pairs], problems


def pairs_splits(root: Path) -> list[str]:
    """The sub-folders of ``root`` that hold at least one JPEG."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and any(f.suffix.lower() in PAIR_SUFFIXES for f in p.iterdir())
    )


class PairsDataset(SampleDataset):
    """The Kaggle pairs format as ``(image, target)``: photo RGB uint8, decoded trainIds uint8.

    Args:
        root: folder holding one sub-folder per split (``train/``, ``val/``) of ``<n>.jpg`` files.
        split: the sub-folder to read.
        indices: positions (in numeric file order) to keep, e.g. a seeded validation subset.
        max_images: keep only the first N (after ``indices``).
        transform: optional ``transform(image, target) -> anything`` applied by ``__getitem__``.

    Raises:
        DataError: missing split, empty folder, non-JPEG images, or indices out of range.

    Example:
        >>> dataset = PairsDataset("/data/pairs", "train", max_images=100)  # doctest: +SKIP
        >>> image, target = dataset[0]  # (256, 256, 3) photo, (256, 256) trainIds
    """

    format = "pairs"

    def __init__(
        self,
        root: str | Path,
        split: str,
        *,
        indices: Sequence[int] | None = None,
        max_images: int | None = None,
        transform: Callable | None = None,
    ) -> None:
        samples, problems = scan_pairs(Path(root), split)
        super().__init__(root, split, samples, problems, indices, max_images, transform)

    def read(self, sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        image, label_rgb = read_pair(sample.image_path)
        return image, decode_label_colors(label_rgb)

    def read_halves(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The photo and the undecoded colour label of a sample, both RGB uint8."""
        return read_pair(self.samples[index].image_path)


def _pair_order(path: Path) -> tuple:
    """Numeric stems first in numeric order (1, 2, ..., 10), then any other names."""
    return (0, int(path.stem), "") if path.stem.isdigit() else (1, 0, path.name)
