"""Official Cityscapes layout: real frames, the zip layout, polygons, and every pairing mistake."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cityseg import labels
from cityseg.data import CityscapesDataset, Sample, open_dataset, read_label_png
from cityseg.data.cityscapes import read_target, scan_cityscapes
from cityseg.data.io import write_png
from cityseg.errors import DataError
from tests.helpers import write_scenes
from tests.helpers.contracts import DatasetContract

FRANKFURT = "frankfurt_000000_000294"


def make_frame(root: Path, split: str, frame_id: str, size=(16, 32), label_ids=None, suffix=None):
    """Write a tiny image and its labelIds (no label if suffix is False) in the official layout."""
    city = frame_id.split("_")[0]
    (root / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
    write_png(
        root / "leftImg8bit" / split / city / f"{frame_id}_leftImg8bit.png",
        np.full((*size, 3), 100, np.uint8),
    )
    if suffix is not False:
        label = np.full(size, 7, np.uint8) if label_ids is None else label_ids
        name = f"{frame_id}{suffix or '_gtFine_labelIds.png'}"
        write_png(root / "gtFine" / split / city / name, label)


def test_real_train_split_lists_the_eight_aachen_frames(cityscapes_root):
    dataset = CityscapesDataset(cityscapes_root, "train")
    assert dataset.frame_ids == [f"aachen_00000{i}_000019" for i in range(8)]
    first = dataset.samples[0]
    assert isinstance(first, Sample) and first.label_kind == "labelIds"
    assert first.instance_path.name == "aachen_000000_000019_gtFine_instanceIds.png"
    image, target = dataset[0]
    assert image.shape == (1024, 2048, 3) and image.dtype == np.uint8
    assert target.shape == (1024, 2048) and target.dtype == np.uint8
    assert set(np.unique(target)) <= {*range(19), 255}
    assert target[800, 1024] == 0 and target[1023, 1024] == 255  # road, then the ego vehicle


def test_val_prefers_label_train_ids_over_label_ids(cityscapes_root):
    sample = CityscapesDataset(cityscapes_root, "val").samples[0]
    assert sample.label_kind == "trainIds"
    assert sample.label_path.name == f"{FRANKFURT}_gtFine_labelTrainIds.png"


def test_label_ids_map_to_the_third_party_train_ids_on_997_per_mille(cityscapes_root):
    sample = CityscapesDataset(cityscapes_root, "val").samples[0]
    from_label_ids = Sample(
        sample.image_path,
        sample.label_path.with_name(f"{FRANKFURT}_gtFine_labelIds.png"),
        FRANKFURT,
        "labelIds",
    )
    mapped, reference = read_target(from_label_ids), read_label_png(sample.label_path)
    assert mapped.shape == reference.shape == (128, 256)
    differing = int((mapped != reference).sum())
    assert differing == 77  # on class boundaries: the two files were downscaled separately
    assert (mapped == reference).mean() >= 0.997


def test_label_id_lookup_covers_every_byte_value(tmp_path):
    every_value = np.arange(256, dtype=np.uint8).reshape(16, 16)
    write_png(tmp_path / "labelIds.png", every_value)
    with pytest.raises(DataError, match="unknown labelIds values 34, 35"):
        read_target(Sample(tmp_path / "x.png", tmp_path / "labelIds.png", "x", "labelIds"))
    known = np.arange(34, dtype=np.uint8).reshape(2, 17)
    write_png(tmp_path / "labelIds.png", known)
    mapped = read_target(Sample(tmp_path / "x.png", tmp_path / "labelIds.png", "x", "labelIds"))
    np.testing.assert_array_equal(mapped, labels.label_ids_to_train_ids(known))


def test_official_zip_layout_is_accepted(tmp_path, cityscapes_root):
    (tmp_path / "leftImg8bit_trainvaltest").mkdir()
    (tmp_path / "gtFine_trainvaltest").mkdir()
    (tmp_path / "leftImg8bit_trainvaltest" / "leftImg8bit").symlink_to(
        cityscapes_root / "leftImg8bit"
    )
    (tmp_path / "gtFine_trainvaltest" / "gtFine").symlink_to(cityscapes_root / "gtFine")
    dataset = open_dataset(tmp_path, "val")
    assert isinstance(dataset, CityscapesDataset) and dataset.frame_ids == [FRANKFURT]
    assert dataset[0][1].shape == (128, 256)


def test_polygons_only_labels_are_rasterised_the_official_way(tmp_path):
    make_frame(tmp_path, "train", "ulm_000000_000019", size=(32, 64), suffix=False)
    polygons = {
        "imgHeight": 32,
        "imgWidth": 64,
        "objects": [
            {"label": "sky", "polygon": [[0, 0], [63, 0], [63, 15], [0, 15]]},
            {"label": "road", "polygon": [[0, 16], [63, 16], [63, 31], [0, 31]]},
            {"label": "cargroup", "polygon": [[10, 20], [20, 20], [20, 25], [10, 25]]},
            {"label": "person", "polygon": [[40, 20], [45, 20], [45, 25]], "deleted": 1},
            {"label": "license plate", "polygon": [[12, 22], [14, 22], [14, 23]]},
        ],
    }
    label_path = tmp_path / "gtFine/train/ulm/ulm_000000_000019_gtFine_polygons.json"
    label_path.write_text(json.dumps(polygons))
    dataset = CityscapesDataset(tmp_path, "train")
    assert dataset.samples[0].label_kind == "polygons"
    image, target = dataset[0]
    expected = np.zeros((32, 64), np.uint8)
    expected[:16] = 10  # sky
    expected[20:26, 10:21] = 13  # car, the group drawn as its class; the plate not drawn
    assert image.shape == (32, 64, 3)
    np.testing.assert_array_equal(target, expected)


def test_polygons_with_unknown_label_or_bad_json_name_the_file(tmp_path):
    make_frame(tmp_path, "train", "ulm_000000_000019", suffix=False)
    label_path = tmp_path / "gtFine/train/ulm/ulm_000000_000019_gtFine_polygons.json"
    label_path.write_text(
        json.dumps(
            {
                "imgHeight": 16,
                "imgWidth": 32,
                "objects": [{"label": "spaceship", "polygon": [[0, 0], [5, 0], [5, 5]]}],
            }
        )
    )
    dataset = CityscapesDataset(tmp_path, "train")
    with pytest.raises(DataError, match="unknown label 'spaceship'") as error:
        dataset[0]
    assert str(label_path) in str(error.value)
    label_path.write_text("{not json")
    with pytest.raises(DataError, match="not a Cityscapes polygons file"):
        dataset[0]


def test_test_split_gives_images_without_targets(tmp_path):
    make_frame(tmp_path, "test", "berlin_000000_000019")
    make_frame(tmp_path, "train", "aachen_000000_000019")
    dataset = CityscapesDataset(tmp_path, "test")
    assert not dataset.has_labels
    assert dataset.samples[0].label_kind == "none" and dataset.samples[0].label_path is None
    image, target = dataset[0]
    assert image.shape == (16, 32, 3) and target is None


def test_max_images_and_cities_select_sorted_frames(tmp_path):
    for frame in ["ulm_000001_000019", "aachen_000002_000019", "aachen_000001_000019"]:
        make_frame(tmp_path, "train", frame)
    assert CityscapesDataset(tmp_path, "train").frame_ids == [
        "aachen_000001_000019",
        "aachen_000002_000019",
        "ulm_000001_000019",
    ]
    assert CityscapesDataset(tmp_path, "train", max_images=1).frame_ids == ["aachen_000001_000019"]
    assert CityscapesDataset(tmp_path, "train", cities=["ulm"]).frame_ids == ["ulm_000001_000019"]
    chosen = CityscapesDataset(tmp_path, "train", indices=[2, 0])
    assert chosen.frame_ids == ["ulm_000001_000019", "aachen_000001_000019"]
    with pytest.raises(DataError, match=r"indices \[3\] out of range for 3 images"):
        CityscapesDataset(tmp_path, "train", indices=[3])
    with pytest.raises(DataError, match="no city bonn; available cities: aachen, ulm"):
        CityscapesDataset(tmp_path, "train", cities=["bonn"])


def test_every_pairing_problem_is_listed_at_construction(tmp_path):
    make_frame(tmp_path, "train", "aachen_000000_000019")
    make_frame(tmp_path, "train", "aachen_000001_000019", suffix=False)  # image without label
    label = tmp_path / "gtFine/train/aachen/aachen_000002_000019_gtFine_labelIds.png"
    write_png(label, np.zeros((16, 32), np.uint8))  # label without image
    stray = tmp_path / "leftImg8bit/train/aachen/notes.png"
    stray.write_bytes(b"x")
    write_png(
        tmp_path / "gtFine/train/bonn/bonn_000000_000019_gtFine_labelIds.png",
        np.zeros((4, 4), np.uint8),
    )  # a city with labels only
    with pytest.raises(DataError) as error:
        CityscapesDataset(tmp_path, "train")
    problems = error.value.problems
    assert len(problems) == 4
    assert any("aachen_000001_000019_leftImg8bit.png: no label" in p for p in problems)
    assert any(f"{label}: label without image" in p for p in problems)
    assert any(f"{stray}: not named" in p for p in problems)
    assert any("gtFine/train/bonn: labels of city 'bonn'" in p for p in problems)


def test_missing_split_lists_the_available_ones(tmp_path):
    make_frame(tmp_path, "train", "aachen_000000_000019")
    with pytest.raises(DataError, match="split 'val' not found; available splits: train"):
        CityscapesDataset(tmp_path, "val")
    shutil.rmtree(tmp_path / "gtFine" / "train")
    with pytest.raises(DataError, match="gtFine/train: folder not found"):
        CityscapesDataset(tmp_path, "train")


def test_empty_split_is_an_error(tmp_path):
    (tmp_path / "leftImg8bit" / "train" / "aachen").mkdir(parents=True)
    (tmp_path / "gtFine" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="no \\*_leftImg8bit.png images"):
        CityscapesDataset(tmp_path, "train")


@pytest.mark.parametrize(
    "label, message",
    [
        (np.zeros((8, 32), np.uint8), "8 pixels but its image"),
        (np.full((16, 32), 40, np.uint8), "unknown labelIds values 40"),
        (np.zeros((16, 32, 3), np.uint8), "colour image"),
    ],
)
def test_getitem_names_the_label_file_it_cannot_use(tmp_path, label, message):
    make_frame(tmp_path, "train", "aachen_000000_000019", label_ids=label)
    dataset = CityscapesDataset(tmp_path, "train")
    with pytest.raises(DataError, match=message) as error:
        dataset[0]
    assert "aachen_000000_000019_gtFine_labelIds.png" in error.value.problems[0]


def test_label_train_ids_with_unknown_values_are_rejected(tmp_path):
    label = np.full((16, 32), 19, np.uint8)
    make_frame(
        tmp_path, "val", "lindau_000000_000019", label_ids=label, suffix="_gtFine_labelTrainIds.png"
    )
    with pytest.raises(DataError, match="unknown trainIds values 19 \\(expected 0..18 and 255\\)"):
        CityscapesDataset(tmp_path, "val")[0]


def test_scan_returns_problems_instead_of_raising(tmp_path):
    samples, problems = scan_cityscapes(tmp_path, "train")
    assert samples == [] and len(problems) == 1 and "no " in problems[0]


def test_open_dataset_reads_a_prepared_cache_when_given_one(tmp_path, monkeypatch):
    import cityseg.data.cache

    make_frame(tmp_path, "train", "aachen_000000_000019")
    calls = []
    monkeypatch.setattr(cityseg.data.cache, "CachedDataset", lambda *a, **k: calls.append((a, k)))
    open_dataset(tmp_path, "train", cache=tmp_path / "cache")
    assert calls == [
        (
            (tmp_path / "cache", "train"),
            {"expected_source": tmp_path, "expected_format": "cityscapes"},
        )
    ]
    with pytest.raises(DataError, match="unknown dataset format 'kitti'"):
        open_dataset(tmp_path, "train", format="kitti")


class TestCityscapesDatasetContract(DatasetContract):
    @pytest.fixture(scope="class")
    @classmethod
    def open_split(cls, tmp_path_factory):
        root = write_scenes(tmp_path_factory.mktemp("scenes"), {"train": 3}, 32, 64)
        return lambda **options: CityscapesDataset(root, "train", **options)
