"""The official Cityscapes layout: `leftImg8bit/<split>/<city>/` beside `gtFine/<split>/<city>/`.

``root`` is the folder that holds ``leftImg8bit/`` and ``gtFine/``, or the folder where the official
zip files were extracted as they come (``leftImg8bit_trainvaltest/leftImg8bit`` and
``gtFine_trainvaltest/gtFine``). The target of a frame comes from the first of these that exists:

1. ``<frame>_gtFine_labelTrainIds.png`` (written by cityscapesscripts' createTrainIdLabelImgs),
2. ``<frame>_gtFine_labelIds.png``, mapped to trainIds through ``cityseg.labels`` with ``cv2.LUT``,
3. ``<frame>_gtFine_polygons.json``, rasterised by cityscapesscripts' own ``json2labelImg`` code.

The ``test`` split has no usable labels (the public ones are blank): its targets are ``None``.

Example:
    >>> dataset = CityscapesDataset("/data/cityscapes", "val", max_images=10)  # doctest: +SKIP
    >>> image, target = dataset[0]  # RGB uint8 (H, W, 3), trainIds uint8 (H, W), 255 = ignore
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from cityseg import labels
from cityseg.data.io import read_label_png, read_rgb
from cityseg.data.sample import Sample, SampleDataset
from cityseg.errors import DataError

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIXES = {
    "trainIds": "_gtFine_labelTrainIds.png",
    "labelIds": "_gtFine_labelIds.png",
    "polygons": "_gtFine_polygons.json",
}
INSTANCE_SUFFIX = "_gtFine_instanceIds.png"
COLOR_SUFFIX = "_gtFine_color.png"
UNLABELLED_SPLITS = ("test",)
_ANNOTATION_SUFFIXES = (*LABEL_SUFFIXES.values(), INSTANCE_SUFFIX, COLOR_SUFFIX)
_FILE_SUFFIXES = (".png", ".json", ".jpg", ".jpeg")
_IMAGE_FOLDERS = ("leftImg8bit", "leftImg8bit_trainvaltest/leftImg8bit")
_LABEL_FOLDERS = ("gtFine", "gtFine_trainvaltest/gtFine")

VALID_VALUES = {
    "trainIds": np.isin(np.arange(256), [*range(labels.NUM_CLASSES), labels.IGNORE_INDEX]),
    "labelIds": labels.KNOWN_LABEL_IDS,
}
"""For each label PNG kind, a 256-entry mask of the values such a file may hold."""


@dataclass(frozen=True)
class OfficialLayout:
    """Where the images and the fine annotations of an official-layout dataset live."""

    images: Path
    labels: Path

    def splits(self) -> list[str]:
        return sorted(p.name for p in self.images.iterdir() if p.is_dir() and _visible(p))


def find_official_layout(root: Path) -> OfficialLayout | None:
    """The image and label folders under ``root`` in either official form, or None."""
    root = Path(root)
    images = next((root / f for f in _IMAGE_FOLDERS if (root / f).is_dir()), None)
    if images is None:
        return None
    label_folder = next((root / f for f in _LABEL_FOLDERS if (root / f).is_dir()), None)
    return OfficialLayout(images, label_folder or root / _LABEL_FOLDERS[0])


def scan_cityscapes(
    root: Path, split: str, cities: Iterable[str] | None = None
) -> tuple[list[Sample], list[str]]:
    """List the frames of a split, sorted, and every pairing problem found on the way.

    Only file names are looked at (cheap); pixels and sizes are checked when read.
    """
    layout = find_official_layout(root)
    if layout is None:
        expected = " or ".join(f"{root}/{f}/" for f in _IMAGE_FOLDERS)
        return [], [f"{root}: no {expected} folder; point ROOT at the Cityscapes folder"]
    split_dir = layout.images / split
    if not split_dir.is_dir():
        available = ", ".join(layout.splits()) or "none"
        return [], [f"{split_dir}: split '{split}' not found; available splits: {available}"]
    city_dirs = _city_dirs(split_dir, cities)
    if isinstance(city_dirs, str):
        return [], [city_dirs]
    labelled = split not in UNLABELLED_SPLITS
    if labelled and not (layout.labels / split).is_dir():
        return [], [
            f"{layout.labels / split}: folder not found, so split '{split}' has no labels; "
            "extract gtFine_trainvaltest.zip beside leftImg8bit/"
        ]
    samples: list[Sample] = []
    problems = [
        f"{p}: not in a city folder; move it into {split_dir}/<city>/"
        for p in _visible_files(split_dir)
    ]
    for city_dir in city_dirs:
        label_dir = layout.labels / split / city_dir.name
        city_samples, city_problems = _scan_city(city_dir, label_dir if labelled else None)
        samples += city_samples
        problems += city_problems
    if labelled:
        problems += _label_cities_without_images(layout.labels / split, split_dir, cities)
    if not samples and not problems:
        problems.append(f"{split_dir}: no *{IMAGE_SUFFIX} images; check the download is complete")
    return samples, problems


class CityscapesDataset(SampleDataset):
    """Frames of one split of the official Cityscapes layout, as ``(image, target)`` pairs.

    Args:
        root: folder holding ``leftImg8bit/`` and ``gtFine/`` (or the extracted official zips).
        split: ``"train"``, ``"val"``, ``"test"`` or any folder under ``leftImg8bit/``.
        indices: positions (in sorted order, after ``cities``) to keep, e.g. a seeded subset.
        max_images: keep only the first N frames (after ``indices``), for quick experiments.
        cities: keep only these cities.
        transform: optional ``transform(image, target) -> anything`` applied by ``__getitem__``.

    Raises:
        DataError: one line per pairing problem (missing split, image without label, ...).

    Example:
        >>> dataset = CityscapesDataset("/data/cityscapes", "train", cities=["aachen"])
        >>> image, target = dataset[0]
        >>> dataset.frame_ids[0], image.shape, target.dtype
        ('aachen_000000_000019', (1024, 2048, 3), dtype('uint8'))
    """

    format = "cityscapes"

    def __init__(
        self,
        root: str | Path,
        split: str,
        *,
        indices: Sequence[int] | None = None,
        max_images: int | None = None,
        cities: Iterable[str] | None = None,
        transform: Callable | None = None,
    ) -> None:
        samples, problems = scan_cityscapes(Path(root), split, cities)
        super().__init__(root, split, samples, problems, indices, max_images, transform)

    @property
    def has_labels(self) -> bool:
        return self.split not in UNLABELLED_SPLITS

    def read(self, sample: Sample) -> tuple[np.ndarray, np.ndarray | None]:
        return read_sample(sample)


def read_sample(sample: Sample) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode the image and the trainId target of a Cityscapes sample, checking they match.

    Raises:
        DataError: naming the file that cannot be decoded, holds unknown values or differs in size.
    """
    image = read_rgb(sample.image_path)
    target = read_target(sample)
    if target is not None and target.shape != image.shape[:2]:
        raise DataError(
            size_mismatch(sample.label_path, target.shape, sample.image_path, image.shape)
        )
    return image, target


def read_target(sample: Sample) -> np.ndarray | None:
    """The trainId map (uint8, 255 = ignore) of a Cityscapes sample; None for unlabelled splits.

    Raises:
        DataError: unreadable label file, or values outside the ones its kind allows.
    """
    if sample.label_kind == "none":
        return None
    if sample.label_kind == "polygons":
        return cv2.LUT(rasterise_polygons(sample.label_path), labels.LABEL_ID_TO_TRAIN_ID)
    label = read_label_png(sample.label_path)
    check_label_values(sample.label_path, label, sample.label_kind)
    if sample.label_kind == "labelIds":
        return cv2.LUT(label, labels.LABEL_ID_TO_TRAIN_ID)
    return label


def check_label_values(path: Path, label: np.ndarray, kind: str) -> None:
    """Raise DataError if a labelIds / trainIds map holds values its kind does not define."""
    valid = VALID_VALUES[kind]
    invalid = cv2.LUT(label, (~valid).astype(np.uint8))
    if cv2.countNonZero(invalid):
        values = np.unique(label[invalid.astype(bool)])
        shown = ", ".join(str(v) for v in values[:8]) + (", ..." if len(values) > 8 else "")
        allowed = "0..33" if kind == "labelIds" else f"0..{labels.NUM_CLASSES - 1} and 255"
        raise DataError(
            f"{path}: unknown {kind} values {shown} (expected {allowed}); regenerate it with "
            "cityscapesscripts or check it is a Cityscapes label map"
        )


def rasterise_polygons(path: Path) -> np.ndarray:
    """Draw a ``*_gtFine_polygons.json`` into a labelId map (uint8, H x W) the official way."""
    # Loaded here, for polygon labels only: this cityscapesscripts module is slow to import, which
    # `cityseg data check` on a labelIds dataset need not pay.
    from cityscapesscripts.helpers.annotation import Annotation
    from cityscapesscripts.helpers.labels import name2label
    from cityscapesscripts.preparation.json2labelImg import createLabelImage

    annotation = Annotation()
    try:
        annotation.fromJsonText(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, IndexError):
        raise DataError(
            f"{path}: not a Cityscapes polygons file (needs imgHeight, imgWidth and objects with "
            "label and polygon); re-extract gtFine_trainvaltest.zip"
        ) from None
    for obj in annotation.objects:
        name = obj.label
        if name not in name2label and name.endswith("group"):
            name = name[: -len("group")]
        if name not in name2label:
            raise DataError(f"{path}: unknown label '{obj.label}'; use Cityscapes label names")
    try:
        image = createLabelImage(annotation, "ids")
    except (ValueError, TypeError):
        raise DataError(f"{path}: a polygon cannot be drawn (too few points?); fix it") from None
    return np.asarray(image, dtype=np.uint8)


def _city_dirs(split_dir: Path, cities: Iterable[str] | None) -> list[Path] | str:
    city_dirs = sorted(p for p in split_dir.iterdir() if p.is_dir() and _visible(p))
    if cities is None:
        return city_dirs
    wanted = list(cities)
    unknown = sorted(set(wanted) - {p.name for p in city_dirs})
    if unknown:
        available = ", ".join(p.name for p in city_dirs)
        return f"{split_dir}: no city {', '.join(unknown)}; available cities: {available}"
    return [p for p in city_dirs if p.name in wanted]


def _scan_city(image_dir: Path, label_dir: Path | None) -> tuple[list[Sample], list[str]]:
    frames: dict[str, Path] = {}
    problems: list[str] = []
    for path in _visible_files(image_dir):
        if path.name.endswith(IMAGE_SUFFIX):
            frames[path.name[: -len(IMAGE_SUFFIX)]] = path
        else:
            problems.append(
                f"{path}: not named <city>_<seq>_<frame>{IMAGE_SUFFIX}; rename or remove it"
            )
    if label_dir is None:
        return [Sample(path, None, frame, "none") for frame, path in frames.items()], problems
    label_files = {p.name for p in _visible_files(label_dir)} if label_dir.is_dir() else set()
    samples = []
    for frame_id, image_path in frames.items():
        kind = next((k for k, s in LABEL_SUFFIXES.items() if frame_id + s in label_files), None)
        if kind is None:
            expected = label_dir / (frame_id + LABEL_SUFFIXES["labelIds"])
            problems.append(
                f"{image_path}: no label (expected {expected}); add the gtFine files of this frame "
                "or remove the image"
            )
            continue
        instance = frame_id + INSTANCE_SUFFIX
        instance_path = label_dir / instance if instance in label_files else None
        label_path = label_dir / (frame_id + LABEL_SUFFIXES[kind])
        samples.append(Sample(image_path, label_path, frame_id, kind, instance_path))
    return samples, problems + _labels_without_images(label_dir, label_files, image_dir, frames)


def _labels_without_images(
    label_dir: Path, label_files: set[str], image_dir: Path, frames: dict[str, Path]
) -> list[str]:
    problems = []
    for name in sorted(label_files):
        suffix = next((s for s in _ANNOTATION_SUFFIXES if name.endswith(s)), None)
        if suffix and name[: -len(suffix)] not in frames:
            expected = image_dir / (name[: -len(suffix)] + IMAGE_SUFFIX)
            problems.append(
                f"{label_dir / name}: label without image (expected {expected}); add the image "
                "or remove the label"
            )
    return problems


def _label_cities_without_images(
    label_split_dir: Path, image_split_dir: Path, cities: Iterable[str] | None
) -> list[str]:
    if not label_split_dir.is_dir():
        return []
    wanted = None if cities is None else set(cities)
    return [
        f"{p}: labels of city '{p.name}' but no folder {image_split_dir / p.name}; add its images "
        "or remove the labels"
        for p in sorted(label_split_dir.iterdir())
        if p.is_dir()
        and _visible(p)
        and not (image_split_dir / p.name).is_dir()
        and (wanted is None or p.name in wanted)
    ]


def size_mismatch(
    label_path: Path, label_shape: tuple, image_path: Path, image_shape: tuple
) -> str:
    """The one-line problem of a label whose size differs from its image's (shapes are (H, W))."""
    return (
        f"{label_path}: {label_shape[1]}x{label_shape[0]} pixels but its image {image_path.name} "
        f"is {image_shape[1]}x{image_shape[0]}; replace it with the label of the same frame"
    )


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _visible_files(folder: Path) -> list[Path]:
    """The visible entries that are not plain folders: files, and also broken or looping
    symbolic links and folders named like files, so that reading them reports them (by name)
    instead of their frames silently going missing."""
    with os.scandir(folder) as entries:  # is_dir() without a stat call per file
        names = [
            e.name
            for e in entries
            if not e.name.startswith(".") and (not _is_folder(e) or e.name.endswith(_FILE_SUFFIXES))
        ]
    return [folder / name for name in sorted(names)]


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a symbolic link that loops
        return False
