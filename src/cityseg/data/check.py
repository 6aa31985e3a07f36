"""`cityseg data check`: is a dataset folder usable? Collect every problem, or summarise it.

Two passes per split. Every file: its name pairs with the others, its header is readable, its end
marker is present (not truncated) and its size matches its partner's (no pixel decoded). Then a
sample of N images spread evenly over the split: decoded in full, label values checked, pixels
counted per class (and, for pairs, per colour-decoding rule).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cityseg.data import cityscapes, pairs
from cityseg.data.formats import detect_format
from cityseg.data.io import ImageHeader, check_complete, read_header
from cityseg.data.sample import Sample
from cityseg.errors import DataError
from cityseg.labels import CLASS_NAMES, IGNORE_INDEX

DEFAULT_SAMPLE = 20


@dataclass
class SplitReport:
    """What the check found in one split."""

    name: str
    images: int = 0
    label_kinds: Counter = field(default_factory=Counter)
    sizes: Counter = field(default_factory=Counter)  # (width, height) of the images as given
    sampled: int = 0
    class_pixels: np.ndarray = field(default_factory=lambda: np.zeros(256, dtype=np.int64))
    decoding: pairs.DecodingStatistics | None = None

    @property
    def labelled(self) -> bool:
        return self.label_kinds.get("none", 0) < self.images


@dataclass
class CheckReport:
    """The result of :func:`check_dataset` on a usable dataset."""

    root: Path
    format: str
    sample: int
    splits: list[SplitReport]


def check_dataset(
    root: str | Path, split: str | None = None, sample: int = DEFAULT_SAMPLE, progress: bool = True
) -> CheckReport:
    """Check every split (or one) of the dataset at ``root``.

    Args:
        root: dataset folder, in any layout :func:`~cityseg.data.formats.detect_format` knows.
        split: the one split to check; all splits when None.
        sample: images per split to decode in full (evenly spread); 0 checks headers only.
        progress: show tqdm progress bars on stderr (only when it is a terminal).

    Raises:
        DataError: every problem found, one line each, naming the file and what to do.
    """
    root = Path(root)
    format = detect_format(root)
    names = [split] if split else _split_names(root, format)
    problems: list[str] = []
    reports = []
    for name in names:
        report, split_problems = _check_split(root, format, name, sample, progress)
        reports.append(report)
        problems += split_problems
    if problems:
        raise DataError(*problems)
    return CheckReport(root, format, sample, reports)


def _split_names(root: Path, format: str) -> list[str]:
    """Every split folder; for pairs, the folders holding JPEGs and the empty ones (a problem)."""
    if format == "cityscapes":
        return cityscapes.find_official_layout(root).splits()
    folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    empty = [p.name for p in folders if not any(p.iterdir())]
    return sorted([*pairs.pairs_splits(root), *empty])


def _check_split(
    root: Path, format: str, name: str, sample: int, progress: bool
) -> tuple[SplitReport, list[str]]:
    scan = cityscapes.scan_cityscapes if format == "cityscapes" else pairs.scan_pairs
    samples, problems = scan(root, name)
    report = SplitReport(name, images=len(samples))
    report.label_kinds.update(s.label_kind for s in samples)
    check_files = _check_cityscapes_files if format == "cityscapes" else _check_pairs_files
    sound = []
    for item in _progress(samples, f"{name}: files", progress):
        file_problems = check_files(item, report.sizes)
        problems += file_problems
        if not file_problems:
            sound.append(item)
    decode = _decode_cityscapes if format == "cityscapes" else _decode_pairs
    chosen = _evenly_spread(sound, sample)
    for item in _progress(chosen, f"{name}: sample", progress):
        try:
            decode(item, report)
        except DataError as error:
            problems += error.problems
        else:
            report.sampled += 1
    return report, problems


def _check_cityscapes_files(sample: Sample, sizes: Counter) -> list[str]:
    try:
        image = _read_complete_header(sample.image_path)
        sizes[(image.width, image.height)] += 1
        if sample.label_kind in ("trainIds", "labelIds"):
            label = _read_complete_header(sample.label_path)
            if not (label.palette or (label.channels == 1 and label.bit_depth == 8)):
                raise DataError(_not_a_label_map(sample.label_path, label))
            _check_same_size(sample.label_path, (label.height, label.width), sample, image)
        elif sample.label_kind == "polygons":
            _check_same_size(sample.label_path, _polygons_size(sample.label_path), sample, image)
        if sample.instance_path is not None:
            instance = _read_complete_header(sample.instance_path)
            _check_same_size(sample.instance_path, (instance.height, instance.width), sample, image)
    except DataError as error:
        return error.problems
    return []


def _check_pairs_files(sample: Sample, sizes: Counter) -> list[str]:
    try:
        header = _read_complete_header(sample.image_path)
    except DataError as error:
        return error.problems
    sizes[(header.width, header.height)] += 1
    problem = pairs.pair_size_problem(sample.image_path, header.width, header.height)
    return [problem] if problem else []


def _decode_cityscapes(sample: Sample, report: SplitReport) -> None:
    _, target = cityscapes.read_sample(sample)
    if target is not None:
        report.class_pixels += np.bincount(target.ravel(), minlength=256)


def _decode_pairs(sample: Sample, report: SplitReport) -> None:
    _, label_rgb = pairs.read_pair(sample.image_path)
    target = pairs.decode_label_colors(label_rgb)
    report.class_pixels += np.bincount(target.ravel(), minlength=256)
    if report.decoding is None:
        report.decoding = pairs.DecodingStatistics()
    report.decoding += pairs.decoding_statistics(label_rgb)


def _read_complete_header(path: Path) -> ImageHeader:
    header = read_header(path)
    check_complete(path)
    return header


def _check_same_size(
    path: Path, shape: tuple[int, int], sample: Sample, image: ImageHeader
) -> None:
    if shape != (image.height, image.width):
        raise DataError(
            cityscapes.size_mismatch(path, shape, sample.image_path, (image.height, image.width))
        )


def _not_a_label_map(path: Path, header: ImageHeader) -> str:
    kind = "a palette" if header.palette else f"a {header.channels}-channel {header.bit_depth}-bit"
    return (
        f"{path}: {kind} PNG where a single-channel 8-bit label map was expected; regenerate it "
        "with cityscapesscripts (createTrainIdLabelImgs) or use the official *_labelIds.png"
    )


def _polygons_size(path: Path) -> tuple[int, int]:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
        return int(content["imgHeight"]), int(content["imgWidth"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise DataError(
            f"{path}: not a Cityscapes polygons file (no imgHeight / imgWidth); re-extract "
            "gtFine_trainvaltest.zip"
        ) from None


def _evenly_spread(items: list, count: int) -> list:
    if count <= 0 or not items:
        return []
    if count >= len(items):
        return list(items)
    positions = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in positions]


def _progress(items: list, description: str, progress: bool) -> tqdm:
    """A progress bar on stderr, shown only when asked and stderr is a terminal."""
    return tqdm(items, desc=description, disable=None if progress else True, leave=False)


def format_report(report: CheckReport) -> str:
    """The report as plain-text tables: splits, pixel share per class, pairs colour decoding."""
    layout = {
        "cityscapes": "official Cityscapes layout",
        "pairs": "Kaggle pairs: photo left, colour label right",
    }
    lines = [f"dataset  {report.root}", f"format   {report.format} ({layout[report.format]})", ""]
    lines += _table(
        ["split", "images", "labels", "image size", "decoded"],
        [
            [
                s.name,
                str(s.images),
                _counts(s.label_kinds),
                _counts({f"{w}x{h}": n for (w, h), n in s.sizes.items()}),
                str(s.sampled),
            ]
            for s in report.splits
        ],
    )
    labelled = [s for s in report.splits if s.labelled and s.class_pixels.sum()]
    if labelled:
        lines += ["", f"share of pixels per class ({report.sample} images or fewer per split)"]
        names = [*CLASS_NAMES, "ignore (255)"]
        ids = [*range(len(CLASS_NAMES)), IGNORE_INDEX]
        rows = [
            [name] + [_share(s.class_pixels[i], s.class_pixels.sum()) for s in labelled]
            for name, i in zip(names, ids, strict=True)
        ]
        lines += _table(["class", *[s.name for s in labelled]], rows)
    decoded = [s for s in report.splits if s.decoding is not None]
    if decoded:
        lines += ["", "colour decoding of the labels (share of sampled label pixels)"]
        rows = [
            [rule] + [_share(getattr(s.decoding, rule), s.decoding.pixels) for s in decoded]
            for rule in pairs.RULES
        ]
        lines += _table(["rule", *[s.name for s in decoded]], rows)
        lines += [
            "exact: a label colour; near: nearest colour within "
            f"{pairs.MAX_COLOR_DISTANCE:g} (RGB distance)",
            f"and at most {pairs.MAX_DISTANCE_RATIO:g}x as far as the next; far, ambiguous: -> 255",
        ]
    total = sum(s.images for s in report.splits)
    lines += ["", f"OK: {total} images in {len(report.splits)} split(s), no problems found"]
    return "\n".join(lines)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def _counts(counter: dict) -> str:
    """``"a"`` when all items agree, else ``"a (5), b (3)"``, most frequent first."""
    ordered = sorted(counter.items(), key=lambda item: -item[1])
    if len(ordered) == 1:
        return str(ordered[0][0])
    return ", ".join(f"{key} ({n})" for key, n in ordered)


def _share(count: int, total: int) -> str:
    """Percentage with one decimal; "-" for none at all, so that absent differs from rare."""
    return f"{100 * count / total:.1f}%" if count else "-"
