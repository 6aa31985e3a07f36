"""From configuration to DataLoaders: splits, subsets, seeded augmentation, sharded validation."""

from __future__ import annotations

import pytest
import torch

from cityseg.config import load_config
from cityseg.data.loader import (
    ShardSampler,
    build_loaders,
    open_splits,
    set_epoch,
    training_workers,
)
from cityseg.data.transforms import resize_pair
from cityseg.errors import DataError
from tests.helpers import write_pairs, write_scenes


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return write_pairs(tmp_path_factory.mktemp("pairs"), count=20, size=32)


def data_config(root, *overrides):
    return load_config(None, [f"data.root={root}", "data.size=[32,64]", *overrides]).data


def frame_ids(dataset) -> list[int]:
    return [int(dataset.dataset.samples[i].frame_id) for i in dataset.indices]


def test_held_out_split_is_chosen_by_seed_and_independent_of_max_images(pairs):
    splits = open_splits(data_config(pairs, "data.val_fraction=0.25"), seed=0)
    assert (len(splits.train), len(splits.val), splits.format) == (15, 5, "pairs")
    val = frame_ids(splits.val)
    assert not set(val) & set(frame_ids(splits.train))
    assert frame_ids(open_splits(data_config(pairs, "data.val_fraction=0.25"), 0).val) == val
    assert frame_ids(open_splits(data_config(pairs, "data.val_fraction=0.25"), 1).val) != val
    limited = open_splits(data_config(pairs, "data.val_fraction=0.25", "data.max_images=4"), 0)
    assert len(limited.train) == 4 and frame_ids(limited.val) == val
    assert set(frame_ids(limited.train)) <= set(frame_ids(splits.train))
    capped = open_splits(data_config(pairs, "data.val_fraction=0.25", "data.max_val_images=2"), 0)
    assert len(capped.val) == 2


def test_official_val_split_is_used_when_present(tmp_path):
    root = write_scenes(tmp_path, {"train": 3, "val": 2})
    splits = open_splits(data_config(root), seed=0)
    assert (len(splits.train), len(splits.val)) == (3, 2)
    assert "split 'val'" in splits.description
    no_val = open_splits(data_config(root, "data.val_split=null", "data.val_fraction=0"), 0)
    assert no_val.val is None


def test_missing_root_is_a_data_error():
    with pytest.raises(DataError, match="data.root is not set"):
        open_splits(load_config(None).data, seed=0)


def batches(loader, epoch):
    set_epoch(loader, epoch)
    return [(images.clone(), targets.clone()) for images, targets in loader]


def test_batches_are_uint8_and_the_same_whatever_the_workers(pairs):
    config = data_config(pairs, "data.rotation=10", "data.color_jitter=0.3", "data.workers=0")
    splits = open_splits(config, seed=0)
    serial, val = build_loaders(splits, config, batch_size=4, seed=7)
    config.workers = 2
    parallel, _ = build_loaders(splits, config, batch_size=4, seed=7)
    first = batches(serial, 0)
    images, targets = first[0]
    assert images.dtype == torch.uint8 and images.shape == (4, 32, 64, 3)
    assert targets.dtype == torch.uint8 and targets.shape == (4, 32, 64)
    assert len(first) == 4  # 18 images, drop_last
    for (a, b), (c, d) in zip(first, batches(parallel, 0), strict=True):
        assert torch.equal(a, c) and torch.equal(b, d)
    assert not torch.equal(first[0][0], batches(serial, 1)[0][0])  # a new epoch, new draws
    val_images, _ = next(iter(val))
    assert val_images.shape[1:] == (32, 64, 3)


def test_too_few_images_for_a_batch(pairs):
    config = data_config(pairs, "data.max_images=3")
    with pytest.raises(DataError, match="fewer than one batch"):
        build_loaders(open_splits(config, seed=0), config, batch_size=4, seed=0)


def test_validation_shards_cover_every_image_once():
    shards = [list(ShardSampler(7, rank, 3)) for rank in range(3)]
    assert sorted(sum(shards, [])) == list(range(7))


def test_auto_workers():
    assert training_workers(3) == 3
    assert 1 <= training_workers("auto") <= 8


def test_prepared_cache_gives_the_same_splits(pairs, tmp_path):
    from cityseg.data.prepare import prepare_cache

    prepare_cache(pairs, tmp_path / "cache", size=(32, 64), workers=1)
    direct = open_splits(data_config(pairs), seed=0)
    cached = open_splits(data_config(pairs, f"data.cache={tmp_path / 'cache'}"), seed=0)
    assert len(cached.train) == len(direct.train) and len(cached.val) == len(direct.val)
    image, target = cached.train[0]
    expected_image, expected_target = resize_pair(*direct.train[0], (32, 64))
    assert torch.equal(torch.from_numpy(image), torch.from_numpy(expected_image))
    assert torch.equal(torch.from_numpy(target), torch.from_numpy(expected_target))
    with pytest.raises(DataError, match="built at 32x64"):
        open_splits(data_config(pairs, f"data.cache={tmp_path / 'cache'}", "data.size=[64,128]"), 0)


def test_cached_validation_reads_in_the_training_process_unless_workers_are_given(pairs, tmp_path):
    from cityseg.data.prepare import prepare_cache

    prepare_cache(pairs, tmp_path / "cache", size=(32, 64), workers=1)
    cached = data_config(pairs, f"data.cache={tmp_path / 'cache'}", "data.workers=auto")
    train, val = build_loaders(open_splits(cached, seed=0), cached, batch_size=4, seed=0)
    assert (train.num_workers, val.num_workers) == (training_workers("auto"), 0)
    assert next(iter(val))[0].shape == (2, 32, 64, 3)
    cached.workers = 2
    train, val = build_loaders(open_splits(cached, seed=0), cached, batch_size=4, seed=0)
    assert (train.num_workers, val.num_workers) == (2, 2)
    files = data_config(pairs, "data.workers=auto")
    _, val = build_loaders(open_splits(files, seed=0), files, batch_size=4, seed=0)
    assert val.num_workers == training_workers("auto")


def test_cached_training_on_the_cpu_reads_in_the_training_process(pairs, tmp_path):
    from cityseg.data.prepare import prepare_cache

    prepare_cache(pairs, tmp_path / "cache", size=(32, 64), workers=1)
    cached = data_config(pairs, f"data.cache={tmp_path / 'cache'}", "data.workers=auto")
    splits = open_splits(cached, seed=0)
    train, _ = build_loaders(splits, cached, batch_size=4, seed=0, cpu=True)
    assert train.num_workers == 0
    assert next(iter(train))[0].shape == (4, 32, 64, 3)
    cached.workers = 1  # asked for: kept
    train, _ = build_loaders(splits, cached, batch_size=4, seed=0, cpu=True)
    assert train.num_workers == 1
    files = data_config(pairs, "data.workers=auto")  # decoding files: the workers stay
    train, _ = build_loaders(open_splits(files, seed=0), files, batch_size=4, seed=0, cpu=True)
    assert train.num_workers == training_workers("auto")
