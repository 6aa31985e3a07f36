"""The Kaggle pairs format: numeric order, colour decoding rules, real class shares and speed."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from cityseg import labels
from cityseg.data import PairsDataset, open_dataset
from cityseg.data.pairs import (
    MAX_COLOR_DISTANCE,
    DecodingStatistics,
    decode_label_colors,
    decoding_statistics,
)
from cityseg.errors import DataError
from tests.helpers import write_pairs
from tests.helpers.contracts import DatasetContract

ROAD, CAR, TRUCK, CARAVAN = (128, 64, 128), (0, 0, 142), (0, 0, 70), (0, 0, 90)


def write_pair(path: Path, photo_value: int = 90, label_color=ROAD, size=(8, 16)) -> None:
    pair = np.zeros((*size, 3), np.uint8)
    pair[:, : size[1] // 2] = photo_value
    pair[:, size[1] // 2 :] = label_color
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(pair, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 100])


def _pixels(*colors) -> np.ndarray:
    return np.array(colors, dtype=np.uint8).reshape(1, -1, 3)


def test_every_label_colour_decodes_to_its_train_id():
    decoded = decode_label_colors(labels.LABEL_COLORS.reshape(1, -1, 3))[0]
    for label_id, color in enumerate(labels.LABEL_COLORS):
        owner = labels.COLOR_TO_LABEL_ID[tuple(int(c) for c in color)]
        assert decoded[label_id] == labels.LABEL_ID_TO_TRAIN_ID[owner], labels.LABEL_NAMES[label_id]
    by_name = dict(zip(labels.LABEL_NAMES, decoded, strict=True))
    assert by_name["road"] == 0 and by_name["car"] == 13 and by_name["pole"] == 5
    assert by_name["unlabeled"] == by_name["ego vehicle"] == by_name["static"] == 255
    assert by_name["polegroup"] == 5  # shares the pole grey; the lower labelId wins
    assert by_name["caravan"] == by_name["ground"] == 255  # void colours are ignored too


def test_near_far_and_ambiguous_pixels():
    noisy_road = (128 + 10, 64 - 12, 128 + 5)
    white = (255, 255, 255)
    between_truck_and_caravan = (0, 0, 80)
    decoded = decode_label_colors(_pixels(noisy_road, white, between_truck_and_caravan))[0]
    assert decoded.tolist() == [0, 255, 255]
    statistics = decoding_statistics(_pixels(ROAD, noisy_road, white, between_truck_and_caravan))
    assert (statistics.exact, statistics.near, statistics.far, statistics.ambiguous) == (1, 1, 1, 1)
    assert statistics.shares() == {"exact": 0.25, "near": 0.25, "far": 0.25, "ambiguous": 0.25}


def test_distance_threshold_is_where_the_module_says():
    person = np.array([220, 20, 60])
    inside, outside = (
        person + (0, 0, MAX_COLOR_DISTANCE - 5),
        person + (0, 0, MAX_COLOR_DISTANCE + 5),
    )
    assert decode_label_colors(_pixels(inside, outside))[0].tolist() == [11, 255]
    statistics = decoding_statistics(_pixels(inside, outside))
    assert (statistics.near, statistics.far) == (1, 1)


def test_lookup_table_agrees_with_the_exact_rules_on_real_labels(pairs_root):
    from cityseg.data.pairs import _decodable, _nearest_colors

    dataset = PairsDataset(pairs_root, "train", indices=[0, 1000, 2000])
    for index in range(len(dataset)):
        _, label_rgb = dataset.read_halves(index)
        train_ids, nearest, second = _nearest_colors(label_rgb.reshape(-1, 3))
        exact = np.where(_decodable(nearest, second), train_ids, 255).reshape(label_rgb.shape[:2])
        assert (decode_label_colors(label_rgb) == exact).mean() > 0.99


def test_real_pairs_are_sorted_numerically_and_split_in_halves(pairs_root):
    dataset = PairsDataset(pairs_root, "train")
    assert len(dataset) == 2975
    assert dataset.frame_ids[:12] == [str(n) for n in range(1, 13)]
    assert dataset.samples[0].label_kind == "pairs"
    assert dataset.samples[0].label_path == dataset.samples[0].image_path
    image, target = dataset[0]
    assert image.shape == (256, 256, 3) and image.dtype == np.uint8
    assert target.shape == (256, 256) and target.dtype == np.uint8


def test_decoded_real_labels_agree_with_the_official_frame_they_come_from(
    pairs_root, cityscapes_root
):
    """Pair 1 is aachen_000000_000019: decoded pixels must match its labelIds, downscaled."""
    label_ids = cv2.imread(
        str(cityscapes_root / "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png"),
        cv2.IMREAD_UNCHANGED,
    )
    reference = labels.label_ids_to_train_ids(
        cv2.resize(label_ids, (256, 256), interpolation=cv2.INTER_NEAREST)
    )
    _, decoded = PairsDataset(pairs_root, "train", max_images=1)[0]
    labelled = decoded != 255
    assert labelled.mean() > 0.8
    assert (decoded[labelled] == reference[labelled]).mean() > 0.97


def test_real_class_shares_are_plausible(pairs_root):
    dataset = PairsDataset(pairs_root, "train", indices=range(0, 2975, 100))
    counts = np.zeros(256, np.int64)
    statistics = DecodingStatistics()
    for index in range(len(dataset)):
        _, label_rgb = dataset.read_halves(index)
        counts += np.bincount(decode_label_colors(label_rgb).ravel(), minlength=256)
        statistics += decoding_statistics(label_rgb)
    shares = counts / counts.sum()
    top = [labels.CLASS_NAMES[i] for i in np.argsort(-shares[:19])[:6]]
    assert top[0] == "road"
    assert {"road", "building", "vegetation", "car", "sky"} <= set(top)
    assert 0.1 < shares[255] < 0.3
    assert statistics.shares()["exact"] + statistics.shares()["near"] > 0.8


def test_decoding_is_fast_enough_to_run_per_sample():
    label_rgb = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    decode_label_colors(label_rgb)  # builds the lookup table
    timings = []
    for _ in range(20):
        start = time.perf_counter()
        decode_label_colors(label_rgb)
        timings.append(time.perf_counter() - start)
    assert np.median(timings) < 0.01  # measured ~0.2 ms; generous for a busy machine


def test_numeric_order_indices_and_max_images(tmp_path):
    for name in ["10", "2", "1", "b", "a"]:
        write_pair(tmp_path / "train" / f"{name}.jpg")
    dataset = open_dataset(tmp_path, "train")
    assert isinstance(dataset, PairsDataset)
    assert dataset.frame_ids == ["1", "2", "10", "a", "b"]
    assert PairsDataset(tmp_path, "train", indices=[2, 0]).frame_ids == ["10", "1"]
    assert PairsDataset(tmp_path, "train", indices=[2, 0], max_images=1).frame_ids == ["10"]
    with pytest.raises(DataError, match=r"indices \[5\] out of range for 5 images"):
        PairsDataset(tmp_path, "train", indices=[5])
    image, target = dataset[0]
    assert image.shape == (8, 8, 3) and (target == 0).all()


def test_wrong_size_pair_is_reported_when_read(tmp_path):
    write_pair(tmp_path / "train" / "1.jpg", size=(8, 24))
    dataset = PairsDataset(tmp_path, "train")
    with pytest.raises(DataError, match="24x8 pixels") as error:
        dataset[0]
    assert str(tmp_path / "train" / "1.jpg") in error.value.problems[0]


def test_missing_val_split_suggests_a_split_of_train(tmp_path):
    write_pair(tmp_path / "train" / "1.jpg")
    with pytest.raises(DataError, match="split 'val' not found; available splits: train; make"):
        PairsDataset(tmp_path, "val")


def test_empty_split_and_non_jpeg_images_are_errors(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="train: no .jpg images"):
        PairsDataset(tmp_path, "train")
    write_pair(tmp_path / "train" / "1.jpg")
    (tmp_path / "train" / "2.png").write_bytes(b"")
    with pytest.raises(DataError, match="2.png: not a .jpg pairs image"):
        PairsDataset(tmp_path, "train")


class TestPairsDatasetContract(DatasetContract):
    @pytest.fixture(scope="class")
    @classmethod
    def open_split(cls, tmp_path_factory):
        root = write_pairs(tmp_path_factory.mktemp("pairs"), 3, 32)
        return lambda **options: PairsDataset(root, "train", **options)
