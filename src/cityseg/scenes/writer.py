"""Write generated scenes to disk in the official Cityscapes layout and the Kaggle pairs format.

Official layout (as the real data set, fine annotations only)::

    leftImg8bit/<split>/<city>/<city>_<seq:06d>_000019_leftImg8bit.png
    gtFine/<split>/<city>/<city>_<seq:06d>_000019_gtFine_labelIds.png      (uint8)
    gtFine/<split>/<city>/<city>_<seq:06d>_000019_gtFine_instanceIds.png   (uint16)
    gtFine/<split>/<city>/<city>_<seq:06d>_000019_gtFine_polygons.json
    gtFine/<split>/<city>/<city>_<seq:06d>_000019_gtFine_color.png         (optional)

Pairs format: ``pairs/<split>/<n>.jpg`` (n from 1), 256x512, the photo on the left and the colour
labels on the right, like the Kaggle "cityscapes-image-pairs" data set.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from cityseg.errors import DataError
from cityseg.scenes.render import Scene, render_scene

DEFAULT_SPLITS: dict[str, int] = {"train": 40, "val": 10, "test": 5}
DEFAULT_CITIES: dict[str, tuple[str, ...]] = {
    "train": ("synthburg", "pixelton", "rendhausen"),
    "val": ("polygonau",),
    "test": ("vektorstadt",),
}
CITY_NAME = re.compile(r"[a-z][a-z0-9-]*")
"""City names as in the real data set: the frame id ``<city>_<seq>_<frame>`` splits on '_'."""
FRAME_NUMBER = 19
"""Every fine-annotated Cityscapes frame is the 20th of its snippet: ``..._000019``."""
PAIRS_SIDE = 256
PNG_SPEED = [cv2.IMWRITE_PNG_COMPRESSION, 1]
MARKER = ".cityseg-generated"
"""The file that marks a folder as written by :func:`generate_dataset`: the only kind of data set
it adds frames to or replaces frames of."""
DATASET_FOLDERS = ("leftImg8bit", "gtFine", "pairs")


def frame_seed(seed: int, split: str, index: int) -> list[int]:
    """The seed of one frame: independent of how many frames are generated around it."""
    return [int(seed), zlib.crc32(split.encode("utf-8")), int(index)]


def frame_id(cities: Sequence[str], index: int) -> str:
    """``<city>_<sequence>_000019``: frames go round the cities, like the real data set."""
    city = cities[index % len(cities)]
    return f"{city}_{index // len(cities):06d}_{FRAME_NUMBER:06d}"


def generate_dataset(
    out: str | Path,
    splits: Mapping[str, int] | None = None,
    height: int = 256,
    width: int = 512,
    seed: int = 0,
    pairs: bool = False,
    cities: Mapping[str, Sequence[str]] | None = None,
    color: bool = True,
    progress: bool = False,
    variation: float = 1.0,
) -> Path:
    """Generate a data set of street scenes in the official Cityscapes layout under ``out``.

    Args:
        out: the data set root (created if needed). A folder that already holds a data set
            (``leftImg8bit/``, ``gtFine/`` or ``pairs/``) is written to only if this function
            made it (its marker file ``.cityseg-generated``); frames of the same names are then
            replaced.
        splits: frames per split, default ``{"train": 40, "val": 10, "test": 5}``.
        height: image height in pixels.
        width: image width in pixels.
        seed: frame ``i`` of split ``s`` is always the same scene for the same seed.
        pairs: also write the Kaggle pairs format under ``out/pairs/<split>/``.
        cities: city names per split (defaults: ``DEFAULT_CITIES``, else ``<split>stadt``).
        color: also write the ``*_gtFine_color.png`` label images.
        progress: show a tqdm progress bar.
        variation: how much the photos vary beyond the layout, in [0, 1] (see ``render_scene``);
            the ground truth is the same for any value.

    Returns:
        The data set root.

    Raises:
        DataError: ``out`` holds a data set that was not generated.

    Example:
        >>> import tempfile
        >>> root = generate_dataset(tempfile.mkdtemp(), {"val": 1}, height=64, width=128)
        >>> sorted(p.name for p in (root / "gtFine" / "val" / "polygonau").iterdir())[2]
        'polygonau_000000_000019_gtFine_labelIds.png'
    """
    root = Path(out)
    splits = dict(DEFAULT_SPLITS if splits is None else splits)
    cities = {**DEFAULT_CITIES, **(cities or {})}
    if any(count < 0 for count in splits.values()):
        raise ValueError(f"frame counts must not be negative: {splits}")
    bad_names = [c for names in cities.values() for c in names if not CITY_NAME.fullmatch(c)]
    if bad_names:
        raise ValueError(f"city names must be lowercase letters, digits or '-': {bad_names}")
    check_generated_folder(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).touch()
    bar = tqdm(total=sum(splits.values()), unit="frame", disable=not progress)
    for split, count in splits.items():
        names = tuple(cities.get(split) or (f"{split}stadt",))
        for index in range(count):
            scene = render_scene(frame_seed(seed, split, index), height, width, variation)
            write_official(
                root, split, names[index % len(names)], frame_id(names, index), scene, color
            )
            if pairs:
                write_pair(root / "pairs" / split / f"{index + 1}.jpg", scene)
            bar.update()
    bar.close()
    return root


def check_generated_folder(root: Path) -> None:
    """DataError if ``root`` holds a data set that :func:`generate_dataset` did not write."""
    if (root / MARKER).is_file():
        return
    for name in DATASET_FOLDERS:
        if (root / name).exists():
            raise DataError(
                f"{root / name}: a data set that `cityseg data generate` did not write; generated "
                "scenes never go into it: choose another OUT"
            )


def write_official(root: Path, split: str, city: str, frame: str, scene: Scene, color: bool):
    images = root / "leftImg8bit" / split / city
    labels = root / "gtFine" / split / city
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    _write_png(images / f"{frame}_leftImg8bit.png", scene.image[..., ::-1])
    _write_png(labels / f"{frame}_gtFine_labelIds.png", scene.label_ids)
    _write_png(labels / f"{frame}_gtFine_instanceIds.png", scene.instance_ids)
    if color:
        _write_png(labels / f"{frame}_gtFine_color.png", scene.color()[..., ::-1])
    text = json.dumps(scene.annotation(), separators=(",", ":"))
    (labels / f"{frame}_gtFine_polygons.json").write_text(text, encoding="utf-8")


def pair_image(scene: Scene) -> np.ndarray:
    """The 256x512 RGB pairs picture: photo (area-resized) left, colour labels (nearest) right."""
    side = (PAIRS_SIDE, PAIRS_SIDE)
    photo = cv2.resize(scene.image, side, interpolation=cv2.INTER_AREA)
    labels = cv2.resize(scene.color(), side, interpolation=cv2.INTER_NEAREST)
    return np.concatenate([photo, labels], axis=1)


def write_pair(path: Path, scene: Scene, quality: int = 90) -> None:
    """Write the pairs picture as JPEG; full-resolution chroma (4:4:4) keeps the label colours
    within a few levels of the palette, where the usual 4:2:0 smears them at every edge."""
    path.parent.mkdir(parents=True, exist_ok=True)
    options = [cv2.IMWRITE_JPEG_QUALITY, quality]
    options += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    if not cv2.imwrite(str(path), pair_image(scene)[..., ::-1], options):
        raise OSError(f"{path}: could not write the image; check the folder is writable")


def _write_png(path: Path, array: np.ndarray) -> None:
    if not cv2.imwrite(str(path), np.ascontiguousarray(array), PNG_SPEED):
        raise OSError(f"{path}: could not write the image; check the folder is writable")
