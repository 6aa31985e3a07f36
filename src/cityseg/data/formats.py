"""The dataset formats: tell them apart from their folder layout, list their splits, open one from
its files."""

from __future__ import annotations

from pathlib import Path

from cityseg.data.cityscapes import CityscapesDataset, find_official_layout
from cityseg.data.pairs import PairsDataset, pairs_splits
from cityseg.errors import DataError

DATASETS = {"cityscapes": CityscapesDataset, "pairs": PairsDataset}
"""Dataset class of each format name."""

EXPECTED_LAYOUTS = (
    "expected ROOT/leftImg8bit/<split>/<city>/*_leftImg8bit.png with ROOT/gtFine/<split>/<city>/ "
    "(official Cityscapes, also as extracted: ROOT/leftImg8bit_trainvaltest/leftImg8bit and "
    "ROOT/gtFine_trainvaltest/gtFine), or ROOT/<split>/<n>.jpg (pairs: photo left, colours right)"
)


def detect_format(root: str | Path) -> str:
    """``"cityscapes"`` or ``"pairs"``, from the folders under ``root``.

    Raises:
        DataError: ``root`` is missing or holds neither layout; the message lists both.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: no such folder; check the dataset path")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; pass the dataset's root folder")
    if find_official_layout(root) is not None:
        return "cityscapes"
    if pairs_splits(root):
        return "pairs"
    raise DataError(f"{root}: not a dataset folder{_hint(root)}; {EXPECTED_LAYOUTS}")


def resolve_format(root: str | Path, format: str = "auto") -> str:
    """``format`` checked, or for ``"auto"`` the format detected from the folders under ``root``.

    Raises:
        DataError: unknown format, or a layout that cannot be detected.
    """
    if format == "auto":
        format = detect_format(root)
    if format not in DATASETS:
        raise DataError(
            f"{root}: unknown dataset format '{format}'; use auto, {', '.join(DATASETS)}"
        )
    return format


def dataset_splits(root: Path, format: str) -> list[str]:
    """The split folders a dataset of ``format`` has under ``root``."""
    if format == "cityscapes":
        layout = find_official_layout(root)
        return layout.splits() if layout is not None else []
    return pairs_splits(root)


def open_files(root: str | Path, split: str, format: str = "auto", **kwargs):
    """Open split ``split`` of the dataset at ``root`` from its image and label files.

    Args:
        root: the dataset folder.
        split: ``"train"``, ``"val"``, ...
        format: ``"auto"`` (detect from the layout), ``"cityscapes"`` or ``"pairs"``.
        **kwargs: passed to the dataset class (``max_images``, ``indices``, ``cities``, ...).

    Raises:
        DataError: unknown format, undetectable layout, or problems found by the dataset.
    """
    return DATASETS[resolve_format(root, format)](root, split, **kwargs)


def _hint(root: Path) -> str:
    if root.name in ("leftImg8bit", "gtFine"):
        return f" (it looks like part of the official layout: pass its parent {root.parent})"
    if any(p.suffix.lower() in (".jpg", ".jpeg") for p in root.iterdir()):
        return f" (it holds JPEGs directly: for pairs, pass its parent {root.parent})"
    if not any(root.iterdir()):
        return " (it is empty)"
    return ""
