"""From a ``DataConfig`` to training and validation DataLoaders.

* Splits: the training split, limited to ``max_images`` (a random subset chosen by the seed); the
  validation split when the dataset has it, otherwise ``val_fraction`` of the training split held
  out by the seed (chosen from the whole split, so it does not move when ``max_images`` changes).
* Sampling: ``DistributedSampler`` over the training set (one process is the 1-rank case), so
  the shuffle of epoch ``e`` is fixed by (seed, e) and resumes exactly; validation is sharded
  without padding so that no image is counted twice.
* Augmentation: each sample draws from its own generator seeded by (seed, epoch, index): the
  same images whatever the number of workers.
* Batches are uint8: images (N, H, W, 3), targets (N, H, W); they are normalised on the device
  (:mod:`cityseg.runtime.normalize`).
* A sample that cannot be read becomes a :class:`~cityseg.data.unreadable.BadSample` in the
  worker and the batch a :class:`BadBatch`, so that its one-line problem reaches the training loop
  intact (an exception raised in a DataLoader worker comes back wrapped in a traceback).
* The training sampler can start an epoch part-way (``skip``), for a run resumed mid-epoch.
* Rare-class sampling (``data.rare_class_sampling``, :mod:`cityseg.data.rare_classes`) replaces
  the shuffle with draws that favour images holding rare classes, as resumable and as sharded.
"""

from __future__ import annotations

import math
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, default_collate

from cityseg import faults, processes
from cityseg.config import DataConfig
from cityseg.data.cities import city_of
from cityseg.data.datasets import open_dataset
from cityseg.data.formats import dataset_splits, detect_format
from cityseg.data.rare_classes import (
    COUNTS_FILE,
    RareClassPlan,
    cached_labels,
    count_table,
    counts_key,
    describe_plan,
    draw_epoch,
    load_counts,
    plan_sampling,
    save_counts,
)
from cityseg.data.transforms import EvalTransform, TrainTransform
from cityseg.data.unreadable import BadSample, read_or_report
from cityseg.errors import DataError
from cityseg.labels import CLASS_NAMES, NUM_CLASSES


@dataclass
class Splits:
    """The training and validation datasets (raw: images and trainIds, not augmented)."""

    train: Dataset
    val: Dataset | None
    format: str
    description: str


class SubsetDataset(Dataset):
    """The items ``indices`` of a dataset, in that order."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]) -> None:
        self.dataset, self.indices = dataset, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return self.dataset[self.indices[index]]


class AugmentedDataset(Dataset):
    """Training items: augmented by ``transform`` with a generator seeded (seed, epoch, index)."""

    def __init__(self, dataset: Dataset, transform: TrainTransform, seed: int) -> None:
        self.dataset, self.transform, self.seed = dataset, transform, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | BadSample:
        faults.reached("worker")
        item = read_or_report(self.dataset.__getitem__, index)
        if isinstance(item, BadSample):
            return item
        image, target = item
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image, target = self.transform(image, target, rng)
        return torch.from_numpy(image), torch.from_numpy(target)


class ResizedDataset(Dataset):
    """Validation items: resized to ``size`` (None: native), no augmentation."""

    def __init__(self, dataset: Dataset, size: Sequence[int] | None) -> None:
        self.dataset, self.transform = dataset, EvalTransform(size)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | BadSample:
        item = read_or_report(lambda i: self.transform(*self.dataset[i]), index)
        if isinstance(item, BadSample):
            return item
        image, target = item
        return torch.from_numpy(np.ascontiguousarray(image)), torch.from_numpy(target)


@dataclass
class BadBatch:
    """A batch holding unreadable samples: their problems, and the others collated (or None)."""

    problems: list[str]
    skipped: int
    batch: tuple[torch.Tensor, torch.Tensor] | None


def collate_reporting(items: list) -> tuple[torch.Tensor, torch.Tensor] | BadBatch:
    """``default_collate``, or a :class:`BadBatch` when some items are :class:`BadSample`."""
    bad = [item for item in items if isinstance(item, BadSample)]
    if not bad:
        return default_collate(items)
    good = [item for item in items if not isinstance(item, BadSample)]
    problems = [problem for item in bad for problem in item.problems]
    return BadBatch(problems, len(bad), default_collate(good) if good else None)


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` whose next epoch can start after its first ``skip`` indices."""

    note: str | None = None
    """A line for the start of training about how images are drawn (None: the plain shuffle)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.skip = 0

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())[self.skip :]
        self.skip = 0
        return iter(indices)


@dataclass
class UnsavedCounts:
    """Class counts to keep in the run folder once the first epoch starts: by then the folder
    exists and holds the run's configuration (a run that stops before leaves nothing there)."""

    path: Path
    key: str
    table: np.ndarray


class RareClassSampler(Sampler[int]):
    """Rare-class sampling (:mod:`cityseg.data.rare_classes`): an epoch of ``length`` draws fixed
    by (``seed``, epoch), dealt to the processes as ``DistributedSampler`` deals its shuffle
    (process ``rank`` takes draws ``rank, rank + num_replicas, ...``, ``ceil(length /
    num_replicas)`` each); like :class:`ResumableSampler`, the next epoch can start after its
    first ``skip`` indices.

    Args:
        plan: the class probabilities and the images of each class.
        length: the draws of an epoch over all processes (the training images).
        num_replicas: the processes of the job; rank: this one's.
        seed: with the epoch, fixes the draws.
        note: the line printed when training starts.
        unsaved: counts written into the run folder when the first epoch starts (rank 0).
        counts: the (N, C + 1) class pixels of each training image the plan was made from
            (:func:`~cityseg.data.rare_classes.count_table`), for the class weights.
    """

    def __init__(
        self,
        plan: RareClassPlan,
        length: int,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        note: str | None = None,
        unsaved: UnsavedCounts | None = None,
        counts: np.ndarray | None = None,
    ) -> None:
        self.plan, self.num_replicas, self.rank, self.seed = plan, num_replicas, rank, seed
        self.num_samples = math.ceil(length / num_replicas)
        self.note, self.unsaved, self.counts = note, unsaved, counts
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        if self.unsaved is not None:
            save_counts(self.unsaved.path, self.unsaved.key, self.unsaved.table)
            self.unsaved = None
        draws = draw_epoch(self.plan, self.num_samples * self.num_replicas, self.seed, self.epoch)
        indices = draws[self.rank :: self.num_replicas][self.skip :].tolist()
        self.skip = 0
        return iter(indices)


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...``: every item on exactly one process, no padding."""

    def __init__(self, length: int, rank: int = 0, world_size: int = 1) -> None:
        self.indices = list(range(rank, length, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def open_splits(config: DataConfig, seed: int) -> Splits:
    """Open the training and validation datasets that ``config`` describes."""
    if not config.root:
        raise DataError("data.root is not set; pass data.root=PATH (a dataset folder)")
    root = Path(config.root)
    data_format = detect_format(root) if config.format == "auto" else config.format
    train = _open(root, config.train_split, data_format, config)
    _require_labels(train, root, config.train_split)
    total = len(train)
    rng = np.random.default_rng(seed)
    train_indices, val, how = list(range(total)), None, "no validation"
    if config.val_split and config.val_split in dataset_splits(root, data_format):
        val = _open(root, config.val_split, data_format, config)
        _require_labels(val, root, config.val_split)
        how = f"split {config.val_split!r}"
    elif config.val_cities:
        held_out = held_out_cities(train, data_format, config.train_split, config.val_cities)
        if len(held_out) >= total:
            raise DataError(
                f"{root}: data.val_cities {config.val_cities} are every training image's cities; "
                "leave some to train on"
            )
        val = SubsetDataset(train, held_out)
        train_indices = sorted(set(train_indices) - set(held_out))
        how = f"cities {', '.join(config.val_cities)} held out of {config.train_split!r}"
    elif config.val_fraction > 0:
        held_out = set(
            rng.permutation(total)[: max(1, round(total * config.val_fraction))].tolist()
        )
        if len(held_out) >= total:
            raise DataError(f"{root}: {total} training images are too few to hold some out")
        val = SubsetDataset(train, sorted(held_out))
        train_indices = [i for i in train_indices if i not in held_out]
        how = f"{len(held_out)} held out of {config.train_split!r}, seed {seed}"
    if config.max_images is not None and config.max_images < len(train_indices):
        train_indices = sorted(rng.permutation(train_indices)[: config.max_images].tolist())
    if val is not None and config.max_val_images is not None and config.max_val_images < len(val):
        val = SubsetDataset(val, range(config.max_val_images))
    train = SubsetDataset(train, train_indices) if len(train_indices) < total else train
    description = (
        f"data {data_format} {root}: {len(train)} training images, "
        f"{len(val) if val is not None else 0} validation ({how})"
    )
    return Splits(train, val, data_format, description)


def held_out_cities(dataset, data_format: str, split: str, cities: list[str]) -> list[int]:
    """Indices of ``dataset``'s samples whose city is one of ``cities``.

    Raises:
        DataError: a city with no image in the split (the message lists the split's cities).
    """
    found = [city_of(sample.frame_id, data_format, split) for sample in dataset.samples]
    missing = [city for city in cities if city not in found]
    if missing:
        present = sorted({city for city in found if city is not None}) or "none known"
        raise DataError(
            f"{dataset.root}: no image of {missing} in split {split!r} (data.val_cities); "
            f"its cities: {present}"
        )
    wanted = set(cities)
    return [index for index, city in enumerate(found) if city in wanted]


def _open(root: Path, split: str, data_format: str, config: DataConfig):
    """A split of the dataset, or of its prepared cache (which must be at ``data.size``)."""
    if config.cache is None:
        return open_dataset(root, split, data_format)
    size = {"expected_size": config.size} if config.size is not None else {}
    return open_dataset(root, split, data_format, cache=config.cache, **size)


def _require_labels(dataset, root: Path, split: str) -> None:
    if not getattr(dataset, "has_labels", True):
        raise DataError(
            f"{root}: split {split!r} has no labels; train and validate on labelled splits"
        )


def training_workers(workers: int | str, world_size: int = 1) -> int:
    """``data.workers``: "auto" is the cores each process has, minus one for the training loop,
    at most 8 (see :func:`cityseg.processes.worker_count`)."""
    return processes.worker_count(workers, world_size, spare=1, cap=8)


def worker_options(workers: int, pin_memory: bool = False) -> dict:
    """DataLoader options for ``workers`` processes, with OpenCV made single-threaded first.

    The workers are the parallelism: OpenCV threads in them would only oversubscribe the cores.
    It has to be set in this process, before the workers fork: a forked worker that changes it
    waits forever on the thread pool it inherited.
    """
    if not workers:
        return {"num_workers": 0, "pin_memory": pin_memory}
    cv2.setNumThreads(1)
    processes.remember_parent()
    return {"num_workers": workers, "pin_memory": pin_memory, "worker_init_fn": start_worker}


def start_worker(worker_id: int) -> None:
    """In a DataLoader worker: die with the command (see :mod:`cityseg.processes`)."""
    processes.die_with_parent()


def build_loaders(
    splits: Splits,
    config: DataConfig,
    batch_size: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
    cpu: bool = False,
    run_dir: Path | None = None,
) -> tuple[DataLoader, DataLoader | None]:
    """Training and validation loaders; ``batch_size`` is per process and per step, ``cpu`` says
    the network trains on the CPU (whose cores the loader's workers would share), ``run_dir``
    keeps the class counts of rare-class sampling for a resumed run (None: counted each time)."""
    transform = TrainTransform(
        size=config.size,
        crop=config.crop,
        scale=config.scale,
        hflip=config.hflip,
        rotation=config.rotation,
        color_jitter=config.color_jitter,
    )
    workers = training_workers(config.workers, world_size)
    if config.cache is not None and config.workers == "auto" and cpu:
        # A cached item is a copy out of memory plus the augmentation, about 1% of a step. A
        # worker beside the training threads costs more than it saves on the cores they share
        # (the workers1 switch of BENCHMARKS.md's epoch tables).
        workers = 0
    common = worker_options(workers, pin_memory)
    if common["num_workers"]:
        common["worker_init_fn"] = start_training_worker
    train_set = AugmentedDataset(splits.train, transform, seed)
    if len(train_set) < batch_size * world_size:
        raise DataError(
            f"{config.root}: {len(train_set)} training images, fewer than one batch of "
            f"{batch_size * world_size}; lower train.batch_size or use more images"
        )
    if config.rare_class_sampling is None:
        sampler = ResumableSampler(train_set, world_size, rank, shuffle=True, seed=seed)
    else:
        sampler = rare_class_sampler(splits.train, config, seed, rank, world_size, run_dir)
    common["collate_fn"] = collate_reporting
    train = DataLoader(train_set, batch_size, sampler=sampler, drop_last=True, **common)
    if splits.val is None:
        return train, None
    val_set = ResizedDataset(splits.val, config.size)
    val_batch = batch_size if config.size is not None else 1  # native sizes may differ
    if config.cache is not None and config.workers == "auto":
        # A cached validation image is a copy out of memory: a worker would only add its start
        # (a fraction of a second each validation), on any device.
        common = {**worker_options(0, pin_memory), "collate_fn": collate_reporting}
    val = DataLoader(
        val_set, val_batch, sampler=ShardSampler(len(val_set), rank, world_size), **common
    )
    return train, val


def rare_class_sampler(
    dataset: Dataset,
    config: DataConfig,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    run_dir: Path | None = None,
) -> RareClassSampler:
    """The :class:`RareClassSampler` of ``config`` over ``dataset`` (the training images), its
    class counts read back from ``run_dir`` or counted (and kept there by rank 0).

    Raises:
        DataError: no image holds enough of any class, or (unless ``data.skip_bad_samples``) a
            label cannot be read.
    """
    key = counts_key(dataset, NUM_CLASSES)
    path = None if run_dir is None or key is None else Path(run_dir) / COUNTS_FILE
    table = None if path is None else load_counts(path, key, len(dataset), NUM_CLASSES)
    unsaved = None
    if table is None:
        table = class_counts(dataset, config, world_size)
        if path is not None and rank == 0:
            unsaved = UnsavedCounts(path, key, table)
    plan = plan_sampling(
        table, config.rare_class_sampling, config.rare_class_min_pixels, config.size
    )
    if not plan.probabilities.any():
        least = config.rare_class_min_pixels
        least = "0.15% of its pixels" if least is None else f"{least} pixels"
        raise DataError(
            f"{config.root}: no training image holds more than {least} of any class; lower "
            "data.rare_class_min_pixels or check the training labels"
        )
    note = describe_plan(plan, config.rare_class_sampling, CLASS_NAMES)
    return RareClassSampler(plan, len(dataset), world_size, rank, seed, note, unsaved, table)


class _Labels(Dataset):
    """The trainIds of a dataset's items; an unreadable item becomes a BadSample."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> np.ndarray | BadSample:
        return read_or_report(lambda i: self.dataset[i][1], index)


def class_counts(dataset: Dataset, config: DataConfig, world_size: int = 1) -> np.ndarray:
    """The (N, C + 1) class pixels of each image of ``dataset`` and its pixels
    (:func:`~cityseg.data.rare_classes.count_table`): from a prepared cache's labels in memory,
    else read by ``data.workers`` DataLoader workers; an unreadable label stops with its problem,
    or is a row of zeros with ``data.skip_bad_samples``."""
    in_memory = cached_labels(dataset)
    if in_memory is not None:
        labels, rows = in_memory
        return count_table((labels[row] for row in rows), NUM_CLASSES)
    loader = DataLoader(
        _Labels(dataset),
        batch_size=None,
        collate_fn=_identity,
        **worker_options(training_workers(config.workers, world_size)),
    )
    return count_table(_readable(loader, config.skip_bad_samples), NUM_CLASSES)


def _identity(item):
    return item


def _readable(items, skip_bad: bool) -> Iterator[np.ndarray | None]:
    for item in items:
        if not isinstance(item, BadSample):
            yield item
        elif skip_bad:
            yield None
        else:
            raise DataError(*item.problems)


def start_training_worker(worker_id: int) -> None:
    """In a training DataLoader worker: die with the training process, and leave Ctrl-C,
    SIGTERM and SIGHUP to it, which finishes its step and saves (a terminal or a scheduler
    signals every process of the job; a worker that quit on them would break the step being
    finished)."""
    processes.die_with_parent()
    for signum in processes.STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Fix the shuffle and the augmentation of ``epoch``."""
    loader.sampler.set_epoch(epoch)
    loader.dataset.set_epoch(epoch)
