"""Rare-class sampling: images holding rare classes drawn more often (DAFormer, Hoyer et al. 2022,
section 3.3).

With ``f_c`` the share of class ``c`` among the labelled pixels of the training set, a draw picks
class ``c`` with probability ``P(c) = exp((1 - f_c) / T) / sum_k exp((1 - f_k) / T)``, then one of
the images holding ``c`` uniformly. ``T`` (``data.rare_class_sampling``, 0.01 in DAFormer) sets
how strongly rare classes are preferred: as ``T`` grows, every class becomes as likely. An image
holds ``c`` only when ``c`` covers more than ``data.rare_class_min_pixels`` of its pixels at
``data.size`` (null: 0.15%, DAFormer's 3000 of a 1024x2048 frame); a class no image holds so is
never drawn. An epoch is as many draws as the training set has images, fixed by (seed, epoch).

The per-image class counts come from one pass over the training labels (the memory-mapped labels
of a prepared cache when there is one) and are kept in the run folder as ``class_pixels.json``,
under a key naming the images and their files, so that a resumed run reads them back. No torch
here: the sampler is in :mod:`cityseg.data.loader`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cityseg import limits
from cityseg.data.cache import CachedDataset, source_fingerprint

COUNTS_FILE = "class_pixels.json"
COUNTS_FORMAT = "cityseg-class-pixels-v1"
DAFORMER_MIN_PIXELS, DAFORMER_FRAME_PIXELS = 3000, 1024 * 2048
"""DAFormer's threshold: more than 3000 pixels of a class in a 1024x2048 frame (0.15%)."""


@dataclass(frozen=True)
class RareClassPlan:
    """What rare-class sampling draws from.

    Attributes:
        frequencies: (C,) share of each class among the labelled training pixels.
        probabilities: (C,) probability of drawing each class (0 for a class no image holds).
        images: per class, the indices of the training images that hold it.
    """

    frequencies: np.ndarray
    probabilities: np.ndarray
    images: tuple[np.ndarray, ...]


def image_class_pixels(target: np.ndarray, num_classes: int) -> np.ndarray:
    """(C + 1,) int64: the pixels of each class in a trainId ``target``, then all its pixels
    (ignored ones included)."""
    counts = np.bincount(target.ravel(), minlength=256)[:num_classes]
    return np.append(counts, target.size).astype(np.int64)


def count_table(targets: Iterable[np.ndarray | None], num_classes: int) -> np.ndarray:
    """(N, C + 1) int64 table of :func:`image_class_pixels`, a row per target; a None target (an
    unreadable image that is skipped) is a row of zeros: it holds no class and is never drawn."""
    rows = [
        np.zeros(num_classes + 1, np.int64) if target is None
        else image_class_pixels(target, num_classes)
        for target in targets
    ]  # fmt: skip
    return np.array(rows, dtype=np.int64).reshape(len(rows), num_classes + 1)


def class_totals(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per class, from a :func:`count_table`: its labelled pixels, and the pixels of the images in
    which it occurs (what class weights are computed from, so that one pass over the labels
    serves both)."""
    pixels, totals = table[:, :-1], table[:, -1:]
    return pixels.sum(axis=0), ((pixels > 0) * totals).sum(axis=0)


def cached_labels(dataset) -> tuple[np.ndarray, list[int]] | None:
    """The memory-mapped labels of a prepared cache under ``dataset`` (a
    :class:`~cityseg.data.cache.CachedDataset` or a subset of one) and the rows of its items, or
    None when its labels are read from files."""
    base, indices = base_and_indices(dataset)
    if not isinstance(base, CachedDataset) or base.transform is not None:
        return None
    labels = base.label_array
    return None if labels is None else (labels, indices)


def base_and_indices(dataset) -> tuple[object, list[int]]:
    """The dataset under any subsets (objects with ``dataset`` and ``indices``) of ``dataset``,
    and the indices in it of ``dataset``'s items."""
    indices = list(range(len(dataset)))
    while hasattr(dataset, "indices") and hasattr(dataset, "dataset"):
        indices = [dataset.indices[i] for i in indices]
        dataset = dataset.dataset
    return dataset, indices


def counts_key(dataset, num_classes: int) -> str | None:
    """What the class counts of ``dataset`` depend on, hashed: its images in order, and the
    cache they come from or the names, sizes and modification times of their files (None when
    the dataset does not list its samples)."""
    base, indices = base_and_indices(dataset)
    all_samples = getattr(base, "samples", None)
    if all_samples is None:
        return None
    samples = [all_samples[i] for i in indices]
    if isinstance(base, CachedDataset):
        source = ["cache", base.index["fingerprint"], list(base.size), indices]
    else:
        source = ["files", source_fingerprint(base.root, samples)]
    frames = [sample.frame_id for sample in samples]
    text = json.dumps([COUNTS_FORMAT, num_classes, source, frames])
    return hashlib.sha256(text.encode()).hexdigest()


def load_counts(path: Path, key: str, length: int, num_classes: int) -> np.ndarray | None:
    """The table saved at ``path`` under ``key`` with ``length`` rows, or None: missing, of
    another key or shape, larger than such a table can be, or damaged (counted as none)."""
    most_bytes = 4096 + length * (num_classes + 1) * 21  # 20 digits and a comma a count
    try:
        saved = limits.read_json(path, most_bytes)
        if not isinstance(saved, dict) or saved.get("format") != COUNTS_FORMAT:
            return None
        if saved.get("key") != key:
            return None
        table = np.array(saved["counts"], dtype=np.int64)
    except (OSError, ValueError, TypeError, KeyError, OverflowError, RecursionError):
        return None
    if table.shape != (length, num_classes + 1) or (table < 0).any():
        return None
    return table


def save_counts(path: Path, key: str, table: np.ndarray) -> None:
    """Write ``table`` under ``key`` to ``path``, atomically; a folder that cannot be written
    leaves it unwritten (a resumed run then counts again)."""
    text = json.dumps({"format": COUNTS_FORMAT, "key": key, "counts": table.tolist()})
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        partial.write_text(text)
        os.replace(partial, path)
    except OSError:
        partial.unlink(missing_ok=True)


def plan_sampling(
    table: np.ndarray,
    temperature: float,
    min_pixels: int | None = None,
    size: Sequence[int] | None = None,
) -> RareClassPlan:
    """The class probabilities and the images of each class, from a :func:`count_table`.

    Args:
        table: (N, C + 1) class pixels of each image, then its pixels.
        temperature: ``T`` of the class probabilities (> 0).
        min_pixels: an image holds a class covering more than this many of its pixels at
            ``size`` (each image's own size when ``size`` is None); None: more than 0.15% of them.
        size: [H, W] the training images are resized to.
    """
    pixels, totals = table[:, :-1], table[:, -1:]
    labelled = pixels.sum()
    frequencies = pixels.sum(axis=0) / max(int(labelled), 1)
    if min_pixels is None:
        holds = pixels * DAFORMER_FRAME_PIXELS > DAFORMER_MIN_PIXELS * totals
    elif size is None:
        holds = pixels > min_pixels
    else:
        holds = pixels * (size[0] * size[1]) > min_pixels * totals
    images = tuple(np.flatnonzero(column) for column in holds.T)
    drawable = np.array([len(held) > 0 for held in images])
    return RareClassPlan(
        frequencies, class_probabilities(frequencies, temperature, drawable), images
    )


def class_probabilities(
    frequencies: np.ndarray, temperature: float, drawable: np.ndarray | None = None
) -> np.ndarray:
    """``softmax((1 - f) / T)`` over the ``drawable`` classes (all when None), 0 for the others;
    all zeros when none is drawable.

    Example:
        >>> class_probabilities(np.array([0.9, 0.1]), 1.0).round(3)
        array([0.31, 0.69])
    """
    drawable = np.ones(len(frequencies), bool) if drawable is None else drawable
    probabilities = np.zeros(len(frequencies))
    if drawable.any():
        logits = (1 - frequencies[drawable]) / temperature
        weights = np.exp(logits - logits.max())
        probabilities[drawable] = weights / weights.sum()
    return probabilities


def draw_epoch(plan: RareClassPlan, count: int, seed: int, epoch: int) -> np.ndarray:
    """``count`` image indices: a class by ``plan.probabilities``, then one of its images
    uniformly, each; fixed by (``seed``, ``epoch``)."""
    rng = np.random.default_rng([seed, epoch])
    classes = rng.choice(len(plan.probabilities), size=count, p=plan.probabilities)
    lengths = np.array([len(held) for held in plan.images])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    picks = rng.integers(0, np.maximum(lengths[classes], 1))
    return np.concatenate(plan.images)[starts[classes] + picks]


def describe_plan(
    plan: RareClassPlan, temperature: float, class_names: Sequence[str], shown: int = 3
) -> str:
    """One line: rare-class sampling is on, and the ``shown`` rarest drawn classes' probabilities
    and images."""
    drawn = np.flatnonzero(plan.probabilities > 0)
    rarest = drawn[np.argsort(plan.frequencies[drawn], kind="stable")][:shown]
    parts = [
        f"{class_names[c]} {plan.probabilities[c]:.3f} ({_images(len(plan.images[c]))})"
        for c in rarest
    ]
    return (
        f"rare-class sampling on (temperature {temperature:g}, {len(drawn)} classes drawn); "
        f"rarest: {', '.join(parts)}"
    )


def _images(count: int) -> str:
    return f"{count} image" if count == 1 else f"{count} images"
