"""A dataset decoded once: every image and label resized and stored as memory-mapped uint8 arrays.

``cityseg data prepare ROOT --out CACHE`` writes, for each split, a folder ``CACHE/<split>/``:

* ``images.npy``: (N, H, W, 3) uint8 RGB photos;
* ``labels.npy``: (N, H, W) uint8 trainIds (absent for an unlabelled split);
* ``index.json``: what the arrays were made from: the resolved source root, its format, the split,
  the size, the count, each sample's files and frame id, and a fingerprint of the source files
  (relative names, byte sizes and modification times).

A split is written into a hidden temporary folder and renamed into place only when complete, so
an interrupted prepare never leaves a folder that looks like a valid cache. :class:`CachedDataset`
reads it with ``np.load(mmap_mode="r")``: opening costs nothing, an item is a copy of its rows, and
DataLoader workers share the page cache instead of each decoding PNGs or JPEGs. It refuses, with a
:class:`~cityseg.errors.DataError` naming the cache and the fix, a cache made from another source,
at another size, or from files changed since. Sizes are (height, width) everywhere.

Example:
    >>> from cityseg.data.cache import CachedDataset
    >>> from cityseg.data.prepare import prepare_cache
    >>> prepare_cache("/data/pairs", "/data/pairs_cache", size=(256, 512))  # doctest: +SKIP
    >>> dataset = CachedDataset("/data/pairs_cache", "train", "/data/pairs")  # doctest: +SKIP
    >>> image, target = dataset[0]  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from cityseg import limits
from cityseg.data.formats import open_files
from cityseg.data.sample import Sample
from cityseg.errors import DataError

CACHE_FORMAT = "cityseg-cache-v1"
MAX_INDEX_BYTES = 256 * 2**20
"""An index lists its samples' paths: about 300 bytes each (3,000 images: 1 MB)."""
INDEX_FILE, IMAGES_FILE, LABELS_FILE = "index.json", "images.npy", "labels.npy"


def cache_splits(cache_dir: str | Path) -> list[str]:
    """The complete splits of a cache: the sub-folders holding an index."""
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return []
    return sorted(
        p.name
        for p in cache_dir.iterdir()
        if not p.name.startswith(".") and (p / INDEX_FILE).is_file()
    )


def source_fingerprint(root: str | Path, samples: Sequence[Sample]) -> str:
    """SHA-256 of the relative name, byte size and modification time of every source file."""
    root = Path(root)
    digest = hashlib.sha256()
    seen: set[Path] = set()
    for sample in samples:
        for path in (sample.image_path, sample.label_path):
            if path is None or path in seen:
                continue
            seen.add(path)
            try:
                stat = path.stat()
            except OSError:
                raise DataError(f"{path}: cannot be read; check the dataset root") from None
            digest.update(f"{_relative(path, root)}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def read_index(cache_dir: str | Path, split: str) -> dict:
    """The ``index.json`` of one split of a cache.

    Raises:
        DataError: no cache at ``cache_dir``, no such split in it, or an unreadable index.
    """
    cache_dir = Path(cache_dir)
    path = cache_dir / split / INDEX_FILE
    if not path.is_file():
        if not cache_splits(cache_dir):
            raise DataError(
                f"{cache_dir}: not a cityseg cache (no */{INDEX_FILE}); build one with "
                f"`cityseg data prepare ROOT --out {cache_dir}`"
            )
        raise DataError(
            f"{cache_dir}: no split '{split}' in this cache (it has: "
            f"{', '.join(cache_splits(cache_dir))}); add it with `cityseg data prepare ROOT "
            f"--out {cache_dir} --split {split}`"
        )
    problem = limits.regular_file_problem(path, MAX_INDEX_BYTES)
    if problem is not None:
        raise DataError(f"{path}: {problem}; rebuild the cache with `cityseg data prepare`")
    index = load_index(path)
    if not sound_index(index):
        raise DataError(
            f"{path}: not a {CACHE_FORMAT} index (corrupt or from another version); rebuild the "
            f"cache with `cityseg data prepare ROOT --out {cache_dir}`"
        )
    return index


def load_index(path: Path) -> object:
    """The JSON of the index at ``path``, or None when it is not a regular file of at most
    ``MAX_INDEX_BYTES`` (a pipe there is not opened: it would block) or not JSON (deep nesting
    and ``Infinity`` included)."""
    try:
        return limits.read_json(path, MAX_INDEX_BYTES)
    except (OSError, ValueError):
        return None


def sound_index(index: object) -> bool:
    """Whether ``index`` has every field a :class:`CachedDataset` reads, of its type."""
    if not isinstance(index, dict) or index.get("format_version") != CACHE_FORMAT:
        return False
    size, samples, count = index.get("size"), index.get("samples"), index.get("count")
    return (
        isinstance(index.get("source"), str)
        and isinstance(index.get("format"), str)
        and isinstance(index.get("has_labels"), bool)
        and isinstance(index.get("fingerprint"), str)
        and isinstance(size, list)
        and len(size) == 2
        and all(type(side) is int and side > 0 for side in size)
        and type(count) is int
        and isinstance(samples, list)
        and len(samples) == count
        and all(map(_sound_sample, samples))
    )


def _sound_sample(entry: object) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("image"), str)
        and isinstance(entry.get("frame_id"), str)
        and isinstance(entry.get("label_kind"), str)
        and all(
            entry.get(name) is None or isinstance(entry[name], str)
            for name in ("label", "instance")
        )
        and "label" in entry
        and "instance" in entry
    )


class CachedDataset:
    """One split of a cache made by :func:`~cityseg.data.prepare.prepare_cache`, with the item
    contract of the other datasets.

    Items are ``(image, target)``: RGB uint8 (H, W, 3) and trainIds uint8 (H, W), 255 = ignore
    (``None`` for an unlabelled split), copied out of the memory-mapped arrays (writable, and
    independent of the cache file). ``samples`` and ``frame_ids`` are those of the source dataset,
    with the original file paths (for official scoring).

    Args:
        cache_dir: the folder given to ``cityseg data prepare --out``.
        split: the split to read.
        expected_source: when given, the dataset root the cache must have been built from; the
            source files are listed again and must match the fingerprint (same names, sizes and
            modification times), else the cache is stale.
        expected_size: when given, the (height, width) the cache must have been built at.
        expected_format: when given, the format ("cityscapes" or "pairs") the source must have.
        max_images: keep only the first N images (after the checks, which cover the whole cache).
        transform: optional ``transform(image, target) -> anything`` applied by ``__getitem__``.

    Raises:
        DataError: missing cache or split, corrupt arrays, or a cache built from another source,
            size or format, or from files changed since; the message says how to rebuild it.

    Example:
        >>> dataset = CachedDataset("cache", "train", "data", (256, 512))  # doctest: +SKIP
        >>> image, target = dataset[0]  # (256, 512, 3) and (256, 512) uint8
    """

    def __init__(
        self,
        cache_dir: str | Path,
        split: str,
        expected_source: str | Path | None = None,
        expected_size: Sequence[int] | None = None,
        expected_format: str | None = None,
        max_images: int | None = None,
        transform: Callable | None = None,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.split = split
        self.index = read_index(self.cache_dir, split)
        self.root = Path(self.index["source"])
        self.format: str = self.index["format"]
        self.size: tuple[int, int] = tuple(self.index["size"])
        self.has_labels: bool = self.index["has_labels"]
        self.samples: list[Sample] = [
            _sample_from_json(s, self.root) for s in self.index["samples"]
        ]
        self.transform = transform
        self._images: np.ndarray | None = None
        self._labels: np.ndarray | None = None
        self._check_expectations(expected_source, expected_size, expected_format)
        self._open_arrays()
        if max_images is not None:
            self.samples = self.samples[:max_images]

    @property
    def native_size(self) -> bool:
        """Whether the images kept their own size (built without ``--size``): what evaluation
        at the ground truth's resolution needs."""
        return bool(self.index.get("native_size"))

    @property
    def frame_ids(self) -> list[str]:
        return [sample.frame_id for sample in self.samples]

    @property
    def label_array(self) -> np.ndarray | None:
        """The memory-mapped (count, H, W) trainIds of the whole split (None when unlabelled):
        many labels read without their photos, untransformed."""
        if self._images is None:
            self._open_arrays()
        return self._labels

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        index %= len(self)
        if self._images is None:
            self._open_arrays()
        image = np.array(self._images[index])
        target = np.array(self._labels[index]) if self._labels is not None else None
        if self.transform is not None:
            return self.transform(image, target)
        return image, target

    def __getstate__(self) -> dict:
        # Pickled into spawned DataLoader workers: send the index, not the mapped arrays.
        return {**self.__dict__, "_images": None, "_labels": None}

    def __repr__(self) -> str:
        height, width = self.size
        return (
            f"CachedDataset(cache='{self.cache_dir}', split='{self.split}', images={len(self)}, "
            f"size={height}x{width}, source='{self.root}')"
        )

    def _open_arrays(self) -> None:
        count, (height, width) = self.index["count"], self.size
        self._images = self._load(IMAGES_FILE, (count, height, width, 3))
        self._labels = self._load(LABELS_FILE, (count, height, width)) if self.has_labels else None

    def _load(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        path = self.cache_dir / self.split / name
        array = None
        if path.is_file():  # (a pipe in its place would block the open)
            try:
                array = np.load(path, mmap_mode="r")
            except (OSError, ValueError):
                pass
        if array is None or array.shape != shape or array.dtype != np.uint8:
            raise DataError(
                f"{path}: missing, truncated or not uint8 {shape} as its index says; rebuild the "
                f"cache with {self._rebuild_command()}"
            )
        return array

    def _check_expectations(
        self,
        expected_source: str | Path | None,
        expected_size: Sequence[int] | None,
        expected_format: str | None,
    ) -> None:
        where = f"{self.cache_dir} (split {self.split})"
        if expected_size is not None and tuple(expected_size) != self.size:
            wanted = "x".join(str(v) for v in expected_size)
            raise DataError(
                f"{where}: built at {_size_text(self.size)} but {wanted} is wanted; rebuild it "
                f"with {self._rebuild_command(size=wanted)} or train at {_size_text(self.size)}"
            )
        if expected_format is not None and expected_format != self.format:
            raise DataError(
                f"{where}: built from a {self.format} dataset, not {expected_format}; use a cache "
                f"of the {expected_format} dataset or rebuild it with {self._rebuild_command()}"
            )
        if expected_source is None:
            return
        source = Path(expected_source).resolve()
        if source != self.root:
            raise DataError(
                f"{where}: built from {self.root}, not {source}; rebuild it with "
                f"{self._rebuild_command(root=source)} or use the cache of {source}"
            )
        current = open_files(source, self.split, self.format, **self._dataset_options())
        if source_fingerprint(source, current.samples) != self.index["fingerprint"]:
            raise DataError(
                f"{where}: the files of {source} changed since the cache was built (added, "
                f"removed or modified); rebuild it with {self._rebuild_command()}"
            )

    def _dataset_options(self) -> dict:
        max_images = self.index.get("max_images")
        return {} if max_images is None else {"max_images": max_images}

    def _rebuild_command(self, root: Path | None = None, size: str | None = None) -> str:
        size = size or (None if self.index.get("native_size") else _size_text(self.size))
        size_option = f" --size {size}" if size else ""
        return (
            f"`cityseg data prepare {root or self.root} --out {self.cache_dir} "
            f"--split {self.split}{size_option}`"
        )


def _size_text(size: Sequence[int]) -> str:
    return f"{size[0]}x{size[1]}"


def _relative(path: Path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(Path(path).resolve())


def sample_to_json(sample: Sample, root: Path) -> dict:
    """A sample as a JSON object with paths relative to ``root``."""
    return {
        "frame_id": sample.frame_id,
        "image": _relative(sample.image_path, root),
        "label": None if sample.label_path is None else _relative(sample.label_path, root),
        "label_kind": sample.label_kind,
        "instance": None if sample.instance_path is None else _relative(sample.instance_path, root),
    }


def _sample_from_json(entry: dict, root: Path) -> Sample:
    def path(name: str) -> Path | None:
        return None if entry[name] is None else root / entry[name]

    return Sample(
        path("image"), path("label"), entry["frame_id"], entry["label_kind"], path("instance")
    )
