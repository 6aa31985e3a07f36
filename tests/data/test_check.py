"""`check_dataset`: summaries of the real samples, and every problem collected at once."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from cityseg.data.check import check_dataset, format_report
from cityseg.data.io import write_png
from cityseg.errors import DataError


def make_official(root: Path, frames: dict[str, tuple[int, int]], split: str = "train") -> None:
    """Tiny images and labelIds (all road) of the given sizes (H, W) in the official layout."""
    for frame_id, size in frames.items():
        city = frame_id.split("_")[0]
        write_png(
            root / f"leftImg8bit/{split}/{city}/{frame_id}_leftImg8bit.png",
            np.full((*size, 3), 120, np.uint8),
        )
        write_png(
            root / f"gtFine/{split}/{city}/{frame_id}_gtFine_labelIds.png",
            np.full(size, 7, np.uint8),
        )


def make_pairs(root: Path, count: int, size=(8, 16)) -> None:
    (root / "train").mkdir(parents=True, exist_ok=True)
    for n in range(1, count + 1):
        pair = np.zeros((*size, 3), np.uint8)
        pair[:, size[1] // 2 :] = (70, 70, 70)  # building, written as BGR: same grey
        cv2.imwrite(str(root / "train" / f"{n}.jpg"), pair, [cv2.IMWRITE_JPEG_QUALITY, 100])


def test_real_cityscapes_sample_is_summarised(cityscapes_root):
    report = check_dataset(cityscapes_root, sample=2, progress=False)
    assert report.format == "cityscapes"
    train, val = report.splits
    assert (train.name, train.images, train.sampled) == ("train", 8, 2)
    assert (val.name, val.images, val.sampled) == ("val", 1, 1)
    assert train.label_kinds == {"labelIds": 8} and val.label_kinds == {"trainIds": 1}
    assert train.sizes == {(2048, 1024): 8} and val.sizes == {(256, 128): 1}
    assert train.class_pixels.sum() == 2 * 2048 * 1024
    text = format_report(report)
    assert "train       8  labelIds   2048x1024        2" in text
    assert "road" in text and "ignore (255)" in text


def test_real_pairs_sample_reports_the_colour_decoding_rules(pairs_root):
    report = check_dataset(pairs_root, sample=3, progress=False)
    (train,) = report.splits
    assert (report.format, train.images, train.sampled) == ("pairs", 2975, 3)
    assert train.sizes == {(512, 256): 2975}
    assert train.decoding.pixels == 3 * 256 * 256
    assert abs(sum(train.decoding.shares().values()) - 1) < 1e-9
    assert "colour decoding" in format_report(report) and "ambiguous" in format_report(report)


def test_one_split_only_and_test_split_without_labels(tmp_path):
    make_official(tmp_path, {"aachen_000000_000019": (16, 32)})
    write_png(
        tmp_path / "leftImg8bit/test/bonn/bonn_000000_000019_leftImg8bit.png",
        np.zeros((16, 32, 3), np.uint8),
    )
    report = check_dataset(tmp_path, split="test", progress=False)
    (test,) = report.splits
    assert test.label_kinds == {"none": 1} and not test.labelled and test.sampled == 1
    assert "share of pixels per class" not in format_report(report)


def test_every_problem_of_an_official_dataset_is_collected(tmp_path):
    frames = {f"aachen_00000{i}_000019": (16, 32) for i in range(5)}
    make_official(tmp_path, frames)
    images, gt = tmp_path / "leftImg8bit/train/aachen", tmp_path / "gtFine/train/aachen"
    (gt / "aachen_000000_000019_gtFine_labelIds.png").unlink()  # image without label
    write_png(gt / "aachen_000009_000019_gtFine_labelIds.png", np.zeros((16, 32), np.uint8))
    truncated = images / "aachen_000001_000019_leftImg8bit.png"
    truncated.write_bytes(truncated.read_bytes()[:-30])
    write_png(gt / "aachen_000002_000019_gtFine_labelIds.png", np.zeros((8, 32), np.uint8))
    write_png(gt / "aachen_000003_000019_gtFine_labelIds.png", np.full((16, 32), 99, np.uint8))
    write_png(gt / "aachen_000004_000019_gtFine_labelIds.png", np.zeros((16, 32, 3), np.uint8))
    with pytest.raises(DataError) as error:
        check_dataset(tmp_path, sample=20, progress=False)
    problems = error.value.problems
    expected = {
        "aachen_000000_000019_leftImg8bit.png: no label",
        "aachen_000009_000019_gtFine_labelIds.png: label without image",
        "aachen_000001_000019_leftImg8bit.png: truncated",
        "aachen_000002_000019_gtFine_labelIds.png: 32x8 pixels but its image",
        "aachen_000003_000019_gtFine_labelIds.png: unknown labelIds values 99",
        "aachen_000004_000019_gtFine_labelIds.png: a 3-channel 8-bit PNG",
    }
    assert len(problems) == len(expected)
    for fragment in expected:
        assert sum(fragment in p for p in problems) == 1, fragment


def test_every_problem_of_a_pairs_dataset_is_collected(tmp_path):
    make_pairs(tmp_path, 4)
    split = tmp_path / "train"
    cv2.imwrite(str(split / "2.jpg"), np.zeros((8, 20, 3), np.uint8))
    (split / "3.jpg").write_bytes((split / "3.jpg").read_bytes()[:-10])
    (split / "4.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "val").mkdir()
    with pytest.raises(DataError) as error:
        check_dataset(tmp_path, progress=False)
    problems = error.value.problems
    assert len(problems) == 4
    assert f"{split / '2.jpg'}: 20x8 pixels" in problems[0]
    assert f"{split / '3.jpg'}: truncated" in problems[1]
    assert f"{split / '4.jpg'}: neither a PNG nor a JPEG" in problems[2]
    assert f"{tmp_path / 'val'}: no .jpg images" in problems[3]


def test_a_clean_tiny_pairs_dataset_passes_and_decodes_building(tmp_path):
    make_pairs(tmp_path, 3)
    report = check_dataset(tmp_path, sample=0, progress=False)
    assert report.splits[0].sampled == 0 and report.splits[0].images == 3
    report = check_dataset(tmp_path, sample=2, progress=False)
    assert report.splits[0].class_pixels[2] == 2 * 8 * 8  # building


@pytest.mark.parametrize("setup", ["missing", "empty"])
def test_unusable_roots_are_one_problem(tmp_path, setup):
    root = tmp_path / "data"
    if setup == "empty":
        root.mkdir()
    with pytest.raises(DataError) as error:
        check_dataset(root, progress=False)
    assert len(error.value.problems) == 1 and error.value.problems[0].startswith(f"{root}: ")
