"""Open a split of a dataset, from its files or from a prepared cache of them."""

from __future__ import annotations

from pathlib import Path

from cityseg.data import cache as prepared
from cityseg.data.formats import DATASETS, resolve_format


def open_dataset(
    root: str | Path, split: str, format: str = "auto", cache: str | Path | None = None, **kwargs
):
    """Open split ``split`` of the dataset at ``root`` as a CityscapesDataset or PairsDataset.

    Args:
        root: the dataset folder.
        split: ``"train"``, ``"val"``, ...
        format: ``"auto"`` (detect from the layout), ``"cityscapes"`` or ``"pairs"``.
        cache: a folder written by ``cityseg data prepare`` from ``root``: read the split from
            it instead (a :class:`~cityseg.data.cache.CachedDataset`, checked against ``root``).
        **kwargs: passed to the dataset class (``max_images``, ``indices``, ``cities``, ...).

    Raises:
        DataError: unknown format, undetectable layout, or problems found by the dataset.
    """
    format = resolve_format(root, format)
    if cache is not None:
        return prepared.CachedDataset(
            cache, split, expected_source=root, expected_format=format, **kwargs
        )
    return DATASETS[format](root, split, **kwargs)
