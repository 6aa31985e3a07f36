"""Photos in, prediction PNGs out: the file side of ``cityseg predict``.

:func:`collect_inputs` turns files, folders and glob patterns into a sorted list of photos,
:func:`read_photo` decodes one (the left half of a Kaggle pairs JPEG with ``input_format="pairs"``),
and :func:`predict_files` segments each with any segmenter and writes, per input,
``<stem>_labelIds.png`` (the official Cityscapes submission format), ``<stem>_trainIds.png``,
``<stem>_color.png`` (Cityscapes palette) and ``<stem>_overlay.png``.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm import tqdm

from cityseg import labels
from cityseg.data.io import read_rgb, write_png
from cityseg.errors import ConfigError, DataError, UserError
from cityseg.outputs import prepare_output_folder, resolved
from cityseg.visualize.colors import colorize, overlay

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
INPUT_FORMATS = ("image", "pairs")
"""``image``: the file is the photo. ``pairs``: a Kaggle pairs JPEG, photo on the left half."""
OUTPUTS = ("labelIds", "trainIds", "color", "overlay")
"""The files written per input, as ``<stem>_<output>.png``."""


class PhotoSegmenter(Protocol):
    """What :func:`predict_files` needs of a segmenter."""

    def predict(self, image: np.ndarray) -> np.ndarray:
        """TrainIds (H, W) uint8 of one RGB uint8 photo (H, W, 3)."""


def read_photo(path: str | Path, input_format: str = "image") -> np.ndarray:
    """The RGB uint8 photo (H, W, 3) of an input file.

    A photo is turned upright by its EXIF orientation tag, as a phone's viewer shows it: the
    segmentation is made on the upright photo, and the PNGs written from it (which carry no
    tag) are upright too, so they lie over the photo as the user sees it. A pairs JPEG is a
    dataset file: decoded as stored, as training decodes it, so its halves stay in place.

    Args:
        path: a PNG or JPEG file.
        input_format: "image" (the whole file is the photo) or "pairs" (a Kaggle pairs JPEG, twice
            as wide as high: the photo is its left half).

    Raises:
        DataError: unreadable file, or a "pairs" input that is not twice as wide as high.
    """
    if input_format not in INPUT_FORMATS:
        raise ConfigError(f"input format {input_format!r} is unknown; use one of {INPUT_FORMATS}")
    image = read_rgb(Path(path), upright=input_format == "image")
    if input_format == "image":
        return image
    height, width = image.shape[:2]
    if width != 2 * height:
        raise DataError(
            f"{path}: {width}x{height} pixels is not a pairs image (photo and labels side by "
            "side, twice as wide as high, e.g. 512x256); drop --input-format pairs"
        )
    return np.ascontiguousarray(image[:, :height])


def collect_inputs(patterns: Sequence[str | Path], exclude: Path | None = None) -> list[Path]:
    """The PNG and JPEG files named by files, folders (searched recursively) and glob patterns,
    sorted, each once even when named several times.

    Args:
        patterns: files, folders, or patterns such as ``photos/*.jpg`` or ``data/**/*.png``.
        exclude: a folder whose files are never taken from a folder or pattern (the output
            folder, so that a second run does not segment the first run's pictures).

    Raises:
        UserError: a name matches nothing, a named file is not a PNG or JPEG, or no input is left.
    """
    found: dict[Path, Path] = {}
    problems = []
    for pattern in patterns:
        text = os.path.expanduser(str(pattern))
        path = Path(text)
        if path.is_file():
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                problems.append(f"{path}: not a PNG or JPEG file; pass photos only")
            matches = [path] if path.suffix.lower() in IMAGE_SUFFIXES else []
        else:
            if path.is_dir():
                candidates = path.rglob("*")
            elif any(character in text for character in "*?["):
                candidates = map(Path, glob.glob(text, recursive=True))
            else:
                problems.append(f"{path}: no such file or folder; check the path")
                continue
            images = [p for p in candidates if _is_image_file(p)]
            matches = [p for p in images if not _inside(p, exclude)]
            if images and not matches:
                problems.append(
                    f"{text}: its images are all inside the output folder {exclude}, which is "
                    "never read as input (--out holds the outputs); give another --out"
                )
            elif not matches:
                problems.append(f"{text}: no PNG or JPEG image found there; check the path")
        for match in matches:
            found.setdefault(resolved(match), match)
    if problems:
        raise UserError(*problems)
    if not found:
        raise UserError("no input images given; pass photo files, folders or glob patterns")
    return sorted(found.values(), key=lambda p: str(p))


def _is_image_file(path: Path) -> bool:
    """A PNG or JPEG name that is not a folder (a link that loops or points nowhere is kept,
    so that reading it names it, instead of it being silently left out)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.is_dir()


def _inside(path: Path, folder: Path | None) -> bool:
    return folder is not None and resolved(path).is_relative_to(resolved(folder))


def output_stems(paths: Sequence[Path]) -> list[str]:
    """The output name stem of each input (its file name without the suffix).

    Raises:
        UserError: two inputs would write the same output files.
    """
    owners: dict[str, Path] = {}
    problems = []
    for path in paths:
        other = owners.setdefault(path.stem, path)
        if other != path:
            problems.append(
                f"{path}: same name as {other}, both would write {path.stem}_*.png; predict them "
                "in separate runs with different --out folders"
            )
    if problems:
        raise UserError(*problems)
    return [path.stem for path in paths]


def write_prediction(
    out_dir: Path,
    stem: str,
    photo: np.ndarray,
    train_ids: np.ndarray,
    outputs: Sequence[str] = OUTPUTS,
    alpha: float = 0.5,
) -> list[Path]:
    """Write ``<stem>_<output>.png`` for each of ``outputs`` (see :data:`OUTPUTS`).

    labelIds is the official Cityscapes submission format (trainIds mapped to labelIds, 255 to 0),
    color the Cityscapes palette, overlay the colours blended over the photo with ``alpha``.
    """
    pictures = {
        "labelIds": lambda: labels.train_ids_to_label_ids(train_ids),
        "trainIds": lambda: train_ids,
        "color": lambda: colorize(train_ids),
        "overlay": lambda: overlay(photo, train_ids, alpha),
    }
    written = []
    for output, path in zip(outputs, photo_outputs(out_dir, stem, outputs), strict=True):
        write_png(path, pictures[output]())
        written.append(path)
    return written


def photo_outputs(out_dir: str | Path, stem: str, outputs: Sequence[str] = OUTPUTS) -> list[Path]:
    """The files :func:`write_prediction` writes for a photo: ``<stem>_<output>.png``."""
    return [Path(out_dir) / f"{stem}_{output}.png" for output in outputs]


def predict_files(
    segmenter: PhotoSegmenter,
    paths: Sequence[Path],
    out_dir: str | Path,
    *,
    input_format: str = "image",
    outputs: Sequence[str] = OUTPUTS,
    alpha: float = 0.5,
    progress: bool = True,
) -> list[Path]:
    """Segment each file and write its outputs into ``out_dir``; return the files written.

    Unreadable inputs do not stop the run: the others are written, then a DataError names them.
    """
    unknown = sorted(set(outputs) - set(OUTPUTS))
    if unknown:
        raise ConfigError(f"unknown outputs {unknown}; choose among {list(OUTPUTS)}")
    stems = output_stems(paths)
    prepare_output_folder(Path(out_dir))
    written: list[Path] = []
    failed: list[str] = []
    failed_files = 0
    for path, stem in tqdm(
        list(zip(paths, stems, strict=True)), desc="predict", unit="image", disable=not progress
    ):
        try:
            photo = read_photo(path, input_format)
        except DataError as error:
            failed.extend(error.problems)
            failed_files += 1
            continue
        train_ids = segmenter.predict(photo)
        try:
            written += write_prediction(Path(out_dir), stem, photo, train_ids, outputs, alpha)
        except OSError as error:
            raise UserError(
                f"{out_dir}: cannot write {stem}_*.png ({error.strerror or error}); free some "
                f"space or choose another --out ({len(written)} files were written)"
            ) from None
    if failed:
        done = len(paths) - failed_files
        summary = f"the other {done} of {len(paths)} images were written to {out_dir}"
        raise DataError(*failed, summary if done else "no image could be segmented")
    return written
