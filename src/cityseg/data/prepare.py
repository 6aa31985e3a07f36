"""Build the memory-mapped cache that :class:`~cityseg.data.cache.CachedDataset` reads.

Every image and label of a split is decoded once by the dataset readers, resized as the loader
would (:func:`~cityseg.data.transforms.resize_pair`: INTER_AREA when shrinking the photo, bilinear
when enlarging it, nearest for the labels) and written into ``.npy`` arrays opened as memory maps.
Decoding runs in a pool of spawned processes (``imap`` over the indices, in order), each writing its
rows straight into the shared mapping, so no pixel travels through a pipe.

The split is assembled in ``CACHE/.<split>.tmp-<pid>/`` and renamed to ``CACHE/<split>/`` once its
arrays are on disk and its index is written: an interrupted prepare leaves no folder that looks like
a cache (the next prepare removes the leftover). A split whose index already matches the source
(same files, sizes, modification times, size and count) is left as it is unless ``force``.

A prepare replaces only what it wrote: before any decoding, every ``CACHE/<split>/`` that exists
must be a cache split (it holds an ``index.json``) or empty, and no dataset file may lie inside it;
``CACHE`` may not be the dataset folder itself. Anything else is one line naming the folder.

Example:
    >>> from cityseg.data.prepare import prepare_cache
    >>> prepare_cache("/data/pairs", "/data/cache", size=(256, 512))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from cityseg import processes
from cityseg.data.cache import (
    CACHE_FORMAT,
    IMAGES_FILE,
    INDEX_FILE,
    LABELS_FILE,
    load_index,
    sample_to_json,
    sound_index,
    source_fingerprint,
)
from cityseg.data.formats import dataset_splits, detect_format, open_files
from cityseg.data.transforms import resize_pair
from cityseg.errors import DataError

UNLABELLED = ("test",)


@dataclass(frozen=True)
class PreparedSplit:
    """What :func:`prepare_cache` did with one split.

    Attributes:
        split: the split name.
        folder: ``CACHE/<split>``.
        count: images in it.
        size: (height, width) of its arrays.
        bytes: size of its arrays on disk.
        seconds: time spent decoding and writing (0 when it was already up to date).
        up_to_date: True when an existing cache matched the source and was kept.
    """

    split: str
    folder: Path
    count: int
    size: tuple[int, int]
    bytes: int
    seconds: float
    up_to_date: bool = False


def default_splits(root: Path, data_format: str) -> list[str]:
    """Every labelled split of a dataset (the unlabelled ``test`` split is left out)."""
    return [split for split in dataset_splits(root, data_format) if split not in UNLABELLED]


def prepare_cache(
    root: str | Path,
    out: str | Path,
    splits: Sequence[str] | None = None,
    size: Sequence[int] | None = None,
    format: str = "auto",
    workers: int | None = None,
    max_images: int | None = None,
    force: bool = False,
    progress: bool = False,
) -> list[PreparedSplit]:
    """Decode and resize every image and label of ``splits`` of ``root`` into a cache at ``out``.

    Args:
        root: the dataset folder (official Cityscapes layout or pairs).
        out: the cache folder (created); each split goes to ``out/<split>/``.
        splits: the splits to cache; None = every labelled split of the dataset.
        size: (height, width) to resize to; None keeps the native size, which must then be the
            same for every image of a split.
        format: "auto", "cityscapes" or "pairs".
        workers: decoding processes; None = the cores this process may use.
        max_images: cache only the first N images of each split (quick experiments).
        force: rebuild a split even when its cache is up to date.
        progress: show a progress bar per split (on stderr).

    Raises:
        DataError: unusable dataset, images of different sizes without ``size``, too little disk.
    """
    root = Path(root).resolve()
    data_format = detect_format(root) if format == "auto" else format
    splits = list(splits) if splits else default_splits(root, data_format)
    if not splits:
        raise DataError(f"{root}: no labelled split to cache; name one with --split")
    size = None if size is None else (int(size[0]), int(size[1]))
    workers = processes.worker_count(workers or None)
    out = Path(out)
    datasets = {
        split: open_files(root, split, data_format, max_images=max_images) for split in splits
    }
    samples = [sample for dataset in datasets.values() for sample in dataset.samples]
    check_cache_folders(root, out, splits, samples)
    options = (size, workers, max_images, force, progress)
    return [
        _prepare_split(root, data_format, datasets[split], split, out, *options) for split in splits
    ]


def check_cache_folders(root: Path, out: Path, splits: Sequence[str], samples) -> None:
    """Refuse, before any work, a cache that would replace what it did not write.

    Raises:
        DataError: ``out`` is the dataset folder, or a ``out/<split>`` folder exists that is
            neither empty nor a cache split, or holds a file of the dataset.
    """
    if out.resolve() == root:
        raise DataError(
            f"{out}: is the dataset folder itself; give the cache a folder of its own with --out"
        )
    for split in splits:
        folder = out / split
        if not (folder.exists() or folder.is_symlink()):
            continue
        target = folder.resolve()
        inside = next(
            (
                path
                for sample in samples
                for path in (sample.image_path, sample.label_path)
                if path is not None and Path(path).resolve().is_relative_to(target)
            ),
            None,
        )
        if inside is not None:
            raise DataError(
                f"{folder}: holds files of the dataset ({inside}); a cache is written beside the "
                "dataset, never over it: choose another --out"
            )
        if not is_cache_split(folder):
            raise _not_a_cache(folder)


def _not_a_cache(folder: Path) -> DataError:
    return DataError(
        f"{folder}: exists and is not a cache split (no {INDEX_FILE}); it is left as it is: move "
        "it away or choose another --out"
    )


def is_cache_split(folder: Path) -> bool:
    """Whether ``folder`` is a split written by a prepare (an index names its format) or an
    empty folder: the only folders a prepare replaces."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    if not any(folder.iterdir()):
        return True
    index = _existing_index(folder)
    return isinstance(index, dict) and str(index.get("format_version", "")).startswith(
        "cityseg-cache"
    )


def _prepare_split(
    root: Path,
    data_format: str,
    dataset,
    split: str,
    out: Path,
    size: tuple[int, int] | None,
    workers: int,
    max_images: int | None,
    force: bool,
    progress: bool,
) -> PreparedSplit:
    fingerprint = source_fingerprint(root, dataset.samples)
    folder = out / split
    existing = _existing_index(folder)
    if not force and _matches(existing, root, data_format, fingerprint, size, max_images):
        height, width = existing["size"]
        return PreparedSplit(split, folder, existing["count"], (height, width), 0, 0.0, True)
    started = time.perf_counter()
    native = size is None
    if native:
        size = dataset[0][0].shape[:2]
    has_labels = getattr(dataset, "has_labels", True)
    count = len(dataset)
    needed = count * size[0] * size[1] * (4 if has_labels else 3)
    out.mkdir(parents=True, exist_ok=True)
    _check_free_space(out, needed)
    _remove_leftovers(out, split)
    temporary = out / f".{split}.tmp-{os.getpid()}"
    try:
        temporary.mkdir()
        _fill(dataset, temporary, size, native, has_labels, workers, progress, split)
        index = {
            "format_version": CACHE_FORMAT,
            "source": str(root),
            "format": data_format,
            "split": split,
            "size": list(size),
            "native_size": native,
            "count": count,
            "has_labels": has_labels,
            "max_images": max_images,
            "fingerprint": fingerprint,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "interpolation": {"image": "area (shrink) / linear (enlarge)", "label": "nearest"},
            "samples": [sample_to_json(sample, root) for sample in dataset.samples],
        }
        _write_durably(temporary / INDEX_FILE, json.dumps(index, indent=1).encode())
        _move_into_place(temporary, folder)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    seconds = time.perf_counter() - started
    return PreparedSplit(split, folder, count, tuple(size), needed, seconds)


def _fill(dataset, folder, size, native, has_labels, workers, progress, split) -> None:
    """Decode every item into ``folder``'s arrays, in a process pool when it helps."""
    count = len(dataset)
    images = np.lib.format.open_memmap(folder / IMAGES_FILE, "w+", np.uint8, (count, *size, 3))
    labels = None
    if has_labels:
        labels = np.lib.format.open_memmap(folder / LABELS_FILE, "w+", np.uint8, (count, *size))
    del images, labels  # each writer maps the files itself
    bar = tqdm(total=count, desc=f"prepare {split}", unit="img", disable=not progress)
    arguments = (dataset, folder, tuple(size), native, has_labels)
    workers = min(workers, count)
    if workers <= 1:
        _start_writer(*arguments)
        for _ in map(_write_item, range(count)):
            bar.update()
        _WRITER.clear()
    else:
        # Spawned, not forked: a fork copies the locks of any thread the parent runs (OpenCV's
        # pool after a decode, torch's) and the children can wait on them forever.
        context = multiprocessing.get_context("spawn")
        with context.Pool(workers, _start_pool_writer, arguments) as pool:
            chunk = max(1, min(16, count // (8 * workers)))
            for _ in pool.imap(_write_item, range(count), chunksize=chunk):
                bar.update()
    bar.close()
    for name in (IMAGES_FILE, LABELS_FILE) if has_labels else (IMAGES_FILE,):
        _fsync(folder / name)


_WRITER: dict = {}
"""The dataset and mapped arrays of a writer process (set by ``_start_writer``)."""


def _start_writer(dataset, folder: Path, size, native: bool, has_labels: bool) -> None:
    cv2.setNumThreads(1)  # the processes are the parallelism
    _WRITER.update(dataset=dataset, size=size, native=native)
    _WRITER["images"] = np.load(folder / IMAGES_FILE, mmap_mode="r+")
    _WRITER["labels"] = np.load(folder / LABELS_FILE, mmap_mode="r+") if has_labels else None


def _start_pool_writer(*arguments) -> None:
    """A writer process of the pool: it dies with the command (see ``cityseg.processes``)."""
    processes.die_with_parent()
    _start_writer(*arguments)


def _write_item(index: int) -> int:
    dataset, size = _WRITER["dataset"], _WRITER["size"]
    image, target = dataset[index]
    if _WRITER["native"] and image.shape[:2] != size:
        path = dataset.samples[index].image_path
        raise DataError(
            f"{path}: {image.shape[0]}x{image.shape[1]} (HxW) but the split's first image is "
            f"{size[0]}x{size[1]}; pass --size HxW to resize every image to one size"
        )
    image, target = resize_pair(image, target, size)
    _WRITER["images"][index] = image
    if _WRITER["labels"] is not None:
        _WRITER["labels"][index] = target
    return index


def _existing_index(folder: Path) -> object:
    return load_index(folder / INDEX_FILE)  # (bounded; None when not readable JSON)


def _matches(index, root, data_format, fingerprint, size, max_images) -> bool:
    if not sound_index(index):  # (a damaged index is rebuilt, not kept)
        return False
    same_size = index.get("native_size") if size is None else index.get("size") == list(size)
    return (
        bool(same_size)
        and index.get("source") == str(root)
        and index.get("format") == data_format
        and index.get("fingerprint") == fingerprint
        and index.get("max_images") == max_images
    )


def _check_free_space(out: Path, needed: int) -> None:
    free = shutil.disk_usage(out).free
    if needed > free:
        raise DataError(
            f"{out}: the cache needs {needed / 2**30:.1f} GiB but only {free / 2**30:.1f} GiB are "
            "free; free some space, choose another --out, or a smaller --size"
        )


def _remove_leftovers(out: Path, split: str) -> None:
    """Delete the temporary folders of interrupted prepares whose process is gone."""
    for folder in [*out.glob(f".{split}.tmp-*"), *out.glob(f".{split}.old-*")]:
        pid = folder.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _move_into_place(temporary: Path, folder: Path) -> None:
    """Rename the finished split to its place, replacing an older cache split (never anything
    else: a folder that appeared since the check is refused)."""
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    if folder.exists() or folder.is_symlink():
        if not is_cache_split(folder):
            raise _not_a_cache(folder)
        os.replace(folder, old)
    os.replace(temporary, folder)
    shutil.rmtree(old, ignore_errors=True)
    _fsync(folder.parent)


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
