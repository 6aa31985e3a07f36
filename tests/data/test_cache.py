"""The memory-mapped cache: same items as the source, refuses the wrong source, atomic writes."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from cityseg.cli import main
from cityseg.data import open_dataset
from cityseg.data.cache import CACHE_FORMAT, CachedDataset, cache_splits, read_index
from cityseg.data.io import write_png
from cityseg.data.prepare import prepare_cache
from cityseg.data.transforms import resize_pair
from cityseg.errors import DataError
from cityseg.labels import LABEL_COLORS
from tests.helpers import write_scenes
from tests.helpers.contracts import DatasetContract

ROAD, SKY = LABEL_COLORS[7], LABEL_COLORS[23]


def make_pairs(root: Path, count: int = 6, size: tuple[int, int] = (24, 24)) -> Path:
    """``count`` pairs JPEGs whose photos and labels differ from one image to the next."""
    height, width = size
    rng = np.random.default_rng(0)
    for index in range(1, count + 1):
        photo = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        label = np.empty((height, width, 3), np.uint8)
        label[: index * height // (count + 1)] = SKY
        label[index * height // (count + 1) :] = ROAD
        pair = np.concatenate([photo, label], axis=1)
        path = root / "train" / f"{index}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(
            str(path), cv2.cvtColor(pair, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]
        )
    return root


@pytest.fixture
def pairs(tmp_path: Path) -> Path:
    return make_pairs(tmp_path / "pairs")


def assert_same_items(cached: CachedDataset, source, size) -> None:
    assert len(cached) == len(source)
    assert cached.frame_ids == source.frame_ids
    for index in range(len(source)):
        image, target = resize_pair(*source[index], size)
        cached_image, cached_target = cached[index]
        assert cached_image.dtype == np.uint8 and cached_image.shape == (*size, 3)
        np.testing.assert_array_equal(cached_image, image)
        np.testing.assert_array_equal(cached_target, target)


def test_cached_items_equal_the_resized_source_items(pairs, tmp_path):
    (result,) = prepare_cache(pairs, tmp_path / "cache", size=(16, 32), workers=1)
    assert (result.split, result.count, result.size, result.up_to_date) == (
        "train",
        6,
        (16, 32),
        False,
    )
    cached = CachedDataset(tmp_path / "cache", "train", pairs, (16, 32), "pairs")
    source = open_dataset(pairs, "train")
    assert_same_items(cached, source, (16, 32))
    assert cached.samples == source.samples and cached.has_labels and cached.format == "pairs"
    image, _ = cached[0]
    image[:] = 0  # items are writable copies, not views of the cache
    assert cached[0][0].any()


def test_index_records_what_the_cache_was_built_from(pairs, tmp_path):
    prepare_cache(pairs, tmp_path / "cache", size=(16, 32), workers=1)
    index = read_index(tmp_path / "cache", "train")
    assert index["format_version"] == CACHE_FORMAT
    assert index["source"] == str(pairs.resolve())
    assert (index["format"], index["split"], index["size"], index["count"]) == (
        "pairs", "train", [16, 32], 6,
    )  # fmt: skip
    assert [s["frame_id"] for s in index["samples"]] == [str(i) for i in range(1, 7)]
    assert len(index["fingerprint"]) == 64
    assert cache_splits(tmp_path / "cache") == ["train"]


def test_process_pool_writes_the_same_arrays(pairs, tmp_path):
    prepare_cache(pairs, tmp_path / "one", size=(16, 32), workers=1)
    prepare_cache(pairs, tmp_path / "two", size=(16, 32), workers=2)
    for name in ("images.npy", "labels.npy"):
        np.testing.assert_array_equal(
            np.load(tmp_path / "one" / "train" / name), np.load(tmp_path / "two" / "train" / name)
        )


@pytest.mark.parametrize(
    "expectation, message",
    [
        ({"expected_size": (32, 64)}, "built at 16x32 but 32x64 is wanted"),
        ({"expected_format": "cityscapes"}, "built from a pairs dataset, not cityscapes"),
    ],
)
def test_refuses_another_size_or_format(pairs, tmp_path, expectation, message):
    prepare_cache(pairs, tmp_path / "cache", size=(16, 32), workers=1)
    with pytest.raises(DataError, match=message) as error:
        CachedDataset(tmp_path / "cache", "train", **expectation)
    assert str(tmp_path / "cache") in str(error.value) and "cityseg data prepare" in str(
        error.value
    )


def test_refuses_another_source(pairs, tmp_path):
    other = make_pairs(tmp_path / "other")
    prepare_cache(pairs, tmp_path / "cache", size=(16, 32), workers=1)
    with pytest.raises(DataError, match=f"built from {pairs.resolve()}, not {other.resolve()}"):
        CachedDataset(tmp_path / "cache", "train", expected_source=other)


@pytest.mark.parametrize("change", ["modify", "add", "remove"])
def test_refuses_a_source_changed_since(pairs, tmp_path, change):
    prepare_cache(pairs, tmp_path / "cache", size=(16, 32), workers=1)
    CachedDataset(tmp_path / "cache", "train", expected_source=pairs)  # still valid
    first = pairs / "train" / "1.jpg"
    if change == "modify":
        os.utime(first, ns=(first.stat().st_atime_ns, first.stat().st_mtime_ns + 10**9))
    elif change == "add":
        (pairs / "train" / "7.jpg").write_bytes(first.read_bytes())
    else:
        first.unlink()
    with pytest.raises(DataError, match="changed since the cache was built"):
        CachedDataset(tmp_path / "cache", "train", expected_source=pairs)


def test_up_to_date_split_is_kept_and_force_rebuilds_it(pairs, tmp_path):
    prepare_cache(pairs, tmp_path / "cache", size=(16, 32), workers=1)
    images = tmp_path / "cache" / "train" / "images.npy"
    before = images.stat().st_ino
    (again,) = prepare_cache(pairs, tmp_path / "cache", size=(16, 32), workers=1)
    assert again.up_to_date and images.stat().st_ino == before
    (resized,) = prepare_cache(pairs, tmp_path / "cache", size=(8, 16), workers=1)
    assert not resized.up_to_date and CachedDataset(tmp_path / "cache", "train").size == (8, 16)
    (forced,) = prepare_cache(pairs, tmp_path / "cache", size=(8, 16), workers=1, force=True)
    assert not forced.up_to_date
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["train"]  # no leftovers


def test_interrupted_prepare_leaves_no_cache(pairs, tmp_path):
    (pairs / "train" / "4.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DataError, match="4.jpg"):
        prepare_cache(pairs, tmp_path / "cache", size=(16, 32), workers=1)
    assert list((tmp_path / "cache").iterdir()) == []
    with pytest.raises(DataError, match="not a cityseg cache"):
        CachedDataset(tmp_path / "cache", "train")


def test_leftover_of_a_dead_prepare_is_removed(pairs, tmp_path):
    leftovers = [
        tmp_path / "cache" / ".train.tmp-999999999",
        tmp_path / "cache" / ".train.old-999999999",
    ]
    for leftover in leftovers:
        leftover.mkdir(parents=True)
        (leftover / "images.npy").write_bytes(b"partial")
    prepare_cache(pairs, tmp_path / "cache", size=(16, 32), workers=1)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["train"]


def test_native_size_needs_one_size_per_split(tmp_path):
    root = make_pairs(tmp_path / "pairs", count=2)
    make_pairs(tmp_path / "bigger", count=3, size=(32, 32))
    (tmp_path / "bigger" / "train" / "3.jpg").rename(root / "train" / "3.jpg")
    with pytest.raises(DataError, match=r"3.jpg: 32x32 \(HxW\) but .* 24x24; pass --size"):
        prepare_cache(root, tmp_path / "cache", workers=1)
    (tmp_path / "cache_2").mkdir()
    (result,) = prepare_cache(root, tmp_path / "cache_2", workers=1, max_images=2)
    assert result.size == (24, 24) and result.count == 2
    assert CachedDataset(tmp_path / "cache_2", "train", expected_source=root).native_size


def test_truncated_array_is_reported(pairs, tmp_path):
    prepare_cache(pairs, tmp_path / "cache", size=(16, 32), workers=1)
    labels = tmp_path / "cache" / "train" / "labels.npy"
    labels.write_bytes(labels.read_bytes()[:200])
    with pytest.raises(DataError, match="labels.npy: missing, truncated"):
        CachedDataset(tmp_path / "cache", "train")


def test_missing_split_names_the_fix(pairs, tmp_path):
    prepare_cache(pairs, tmp_path / "cache", size=(16, 32), workers=1)
    with pytest.raises(DataError, match=r"no split 'val' in this cache \(it has: train\)"):
        CachedDataset(tmp_path / "cache", "val")


def test_pickled_dataset_leaves_the_arrays_behind(pairs, tmp_path):
    prepare_cache(pairs, tmp_path / "cache", size=(64, 128), workers=1)
    cached = CachedDataset(tmp_path / "cache", "train")
    copy = pickle.loads(pickle.dumps(cached))
    assert len(pickle.dumps(cached)) < 64 * 128 * 3  # not even one image
    np.testing.assert_array_equal(copy[5][0], cached[5][0])


def test_unlabelled_split_has_no_targets(tmp_path):
    root = tmp_path / "cityscapes"
    for frame in ("berlin_000000_000019", "berlin_000001_000019"):
        image = np.full((16, 32, 3), len(frame), np.uint8)
        write_png(root / "leftImg8bit" / "test" / "berlin" / f"{frame}_leftImg8bit.png", image)
    (result,) = prepare_cache(root, tmp_path / "cache", splits=["test"], workers=1)
    cached = CachedDataset(tmp_path / "cache", "test", expected_source=root)
    assert result.bytes == 2 * 16 * 32 * 3 and not cached.has_labels
    image, target = cached[1]
    assert image.shape == (16, 32, 3) and target is None


def test_real_cityscapes_frames(cityscapes_root, tmp_path):
    prepare_cache(cityscapes_root, tmp_path / "cache", splits=["val"], size=(64, 128), workers=1)
    cached = CachedDataset(tmp_path / "cache", "val", cityscapes_root, (64, 128), "cityscapes")
    assert_same_items(cached, open_dataset(cityscapes_root, "val"), (64, 128))
    assert cached.samples[0].label_path.name.endswith("_gtFine_labelTrainIds.png")


def test_cli_prepares_and_reports(pairs, tmp_path, capsys):
    out = tmp_path / "cache"
    assert main(["data", "prepare", str(pairs), "--out", str(out), "--size", "16x32"]) == 0
    assert "train: 6 images at 16x32" in capsys.readouterr().out
    assert main(["data", "prepare", str(pairs), "--out", str(out), "--size", "16x32"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["data", "prepare", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_prepare_takes_every_size_form_of_the_other_commands(pairs, tmp_path, capsys):
    sizes = {"16x32": (16, 32), "16*32": (16, 32), "16,32": (16, 32), "16": (16, 16)}
    for index, (text, size) in enumerate(sizes.items()):
        out = tmp_path / f"cache{index}"
        args = ["data", "prepare", str(pairs), "--out", str(out), "--workers", "1"]
        assert main([*args, "--size", text]) == 0
        assert CachedDataset(out, "train").size == size
    for text in ("0x5", "axb", "1x2x3"):
        with pytest.raises(SystemExit):
            main(["data", "prepare", str(pairs), "--out", str(tmp_path / "bad"), "--size", text])
        assert "HEIGHTxWIDTH" in capsys.readouterr().err


def test_modules_import_no_torch():
    code = (
        "import sys, cityseg.data.cache, cityseg.data.prepare, cityseg.cli.data.prepare; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_max_images_keeps_the_first_ones(pairs, tmp_path):
    prepare_cache(pairs, tmp_path / "cache", size=(16, 32), workers=1)
    full = CachedDataset(tmp_path / "cache", "train")
    first = CachedDataset(tmp_path / "cache", "train", max_images=2)
    assert len(first) == 2 and first.frame_ids == ["1", "2"] and not first.native_size
    np.testing.assert_array_equal(first[-1][0], full[1][0])
    with pytest.raises(IndexError):
        first[2]


def test_index_is_plain_json(pairs, tmp_path):
    prepare_cache(pairs, tmp_path / "cache", size=(16, 32), workers=1)
    index = json.loads((tmp_path / "cache" / "train" / "index.json").read_text())
    assert index["has_labels"] is True and index["native_size"] is False


class TestCachedDatasetContract(DatasetContract):
    @pytest.fixture(scope="class")
    @classmethod
    def open_split(cls, tmp_path_factory):
        root = write_scenes(tmp_path_factory.mktemp("scenes"), {"train": 3}, 32, 64)
        cache = tmp_path_factory.mktemp("cache")
        prepare_cache(root, cache, size=(32, 64), workers=1)
        return lambda **options: CachedDataset(cache, "train", root, **options)
