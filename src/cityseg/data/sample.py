"""`Sample`: where one image and its label live on disk, shared by every dataset format."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cityseg.errors import DataError

LABEL_KINDS = ("trainIds", "labelIds", "polygons", "pairs", "none")
"""Where a sample's trainIds come from: a ``*_labelTrainIds.png``, a ``*_labelIds.png`` mapped
through the official table, a ``*_polygons.json`` rasterised, the right half of a pairs JPEG, or
nowhere (the unlabelled ``test`` split)."""


@dataclass(frozen=True)
class Sample:
    """One image of a dataset and the files its target comes from.

    Attributes:
        image_path: the RGB photo.
        label_path: the file the trainIds are read from (``None`` when the split has no labels).
        frame_id: ``"aachen_000000_000019"`` for Cityscapes, the file stem (``"123"``) for pairs.
        label_kind: one of ``LABEL_KINDS``.
        instance_path: the ``*_gtFine_instanceIds.png`` beside the label, when present (iIoU).
    """

    image_path: Path
    label_path: Path | None
    frame_id: str
    label_kind: str
    instance_path: Path | None = None


def select_samples(
    samples: list[Sample],
    indices: Sequence[int] | None,
    max_images: int | None,
    folder: Path,
) -> list[Sample]:
    """Keep ``samples[i]`` for ``i`` in ``indices`` (all when None), then the first ``max_images``.

    Raises:
        DataError: an index outside the list (``folder`` names the split in the message).
    """
    if indices is not None:
        indices = [int(i) for i in indices]
        outside = [i for i in indices if not 0 <= i < len(samples)]
        if outside:
            raise DataError(
                f"{folder}: indices {outside[:5]} out of range for {len(samples)} images; "
                f"draw indices below {len(samples)}"
            )
        samples = [samples[i] for i in indices]
    return samples if max_images is None else samples[:max_images]


class SampleDataset:
    """What every file-backed dataset shares: a root, a split, its ``samples`` and a transform.

    Subclasses find their samples and say how one is read (``read(sample)``); this class selects
    them (``indices``, ``max_images``) and applies ``transform(image, target)`` in ``__getitem__``.
    """

    format = "unknown"

    def __init__(
        self,
        root: str | Path,
        split: str,
        samples: list[Sample],
        problems: list[str],
        indices: Sequence[int] | None = None,
        max_images: int | None = None,
        transform: Callable | None = None,
    ) -> None:
        if problems:
            raise DataError(*problems)
        self.root = Path(root)
        self.split = split
        self.samples = select_samples(samples, indices, max_images, self.root / split)
        self.transform = transform

    @property
    def frame_ids(self) -> list[str]:
        return [sample.frame_id for sample in self.samples]

    @property
    def has_labels(self) -> bool:
        return True

    def read(self, sample: Sample) -> tuple:
        """The ``(image, target)`` of one sample, before any transform."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        image, target = self.read(self.samples[index])
        if self.transform is not None:
            return self.transform(image, target)
        return image, target

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(root='{self.root}', split='{self.split}', images={len(self)})"
