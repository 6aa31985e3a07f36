"""Evaluation per image: ``per_image.csv`` beside ``metrics.json``, and the report's worst images
(photo, ground truth, prediction, errors; lowest mIoU first) and the images where each class is
missed most, checked in headless Chromium."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from cityseg import labels
from cityseg.evaluate.evaluator import ImageScore, evaluate_checkpoint, missed_most
from cityseg.metrics import scores as metric_functions
from tests.helpers.chromium import run_chromium

PROBE = """<script>
window.addEventListener("load", () => {
  const worst = Array.from(document.querySelectorAll("section.worst .image"));
  const images = Array.from(document.querySelectorAll("section.worst img"));
  Object.assign(document.body.dataset, {
    worstScores: worst.map(entry => entry.dataset.miou).join(","),
    worstLoaded: images.filter(image => image.complete && image.naturalWidth > 0).length,
    missedRows: document.querySelectorAll("section.missed tbody tr").length,
  });
});
</script>"""


@pytest.fixture(scope="module")
def evaluated(tiny_checkpoint, tmp_path_factory):
    from cityseg.cli import main

    root = tmp_path_factory.mktemp("scenes")

    assert main(["data", "generate", str(root), "--train", "0", "--val", "8", "--test", "0",
                 "--size", "64x128"]) == 0  # fmt: skip
    out = root / "eval"
    metrics = evaluate_checkpoint(
        tiny_checkpoint, root, "val", out, device="cpu", report=True, progress=False,
        report_images=4,
    )  # fmt: skip
    return out, metrics


def test_per_image_csv_has_one_row_per_image_with_per_class_iou(evaluated):
    out, metrics = evaluated
    with open(out / "per_image.csv") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == metrics["images"] == 8
    assert list(rows[0])[:4] == ["file", "frame_id", "pixel_accuracy", "mean_iou"]
    assert [f"iou_{name}" for name in labels.CLASS_NAMES] == list(rows[0])[4:]
    saved = json.loads((out / "metrics.json").read_text())["per_image"]
    for row, entry in zip(rows, saved, strict=True):
        assert Path(row["file"]).is_file() and row["frame_id"] == entry["frame_id"]
        assert float(row["mean_iou"]) == pytest.approx(entry["mean_iou"], abs=1e-6)
        ious = [float(row[f"iou_{n}"]) for n in labels.CLASS_NAMES if row[f"iou_{n}"]]
        assert float(row["mean_iou"]) == pytest.approx(np.mean(ious), abs=1e-5)
        assert 0 <= float(row["pixel_accuracy"]) <= 1


def test_missed_most_ranks_images_by_the_share_of_a_class_missed():
    def image(frame_id: str, road_hit: int, road_missed: int) -> ImageScore:
        confusion = np.zeros((19, 19), np.int64)
        confusion[0, 0], confusion[0, 1], confusion[2, 2] = road_hit, road_missed, 500
        return ImageScore(0, frame_id, None, confusion)

    images = [image("a", 90, 10), image("b", 20, 80), image("c", 60, 40), image("d", 10, 0)]
    table = missed_most(images, list(labels.CLASS_NAMES))
    assert [entry[0] for entry in table["road"]] == ["b", "c", "a"]
    assert table["road"][0][1] == pytest.approx(0.8)
    assert "sidewalk" not in table  # no image holds enough sidewalk pixels
    assert [entry[1] for entry in table["building"]] == [0.0, 0.0, 0.0]
    assert metric_functions.pixel_accuracy(images[1].confusion) == pytest.approx(520 / 600)


@pytest.mark.slow
def test_the_report_shows_the_worst_images_in_order_in_chromium(evaluated, tmp_path):
    out, metrics = evaluated
    page = (out / "report.html").read_text(encoding="utf-8")
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", PROBE + "</body>"))
    dom = run_chromium(probed, tmp_path / "profile", "--dump-dom")
    found = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', re.search(r"<body([^>]*)>", dom)[1]))
    scores = [float(value) for value in found["worst-scores"].split(",")]
    assert len(scores) == 4 and int(found["worst-loaded"]) == 4
    assert scores == sorted(scores)  # the worst first
    every = sorted(entry["mean_iou"] for entry in metrics["per_image"])
    assert scores[0] == pytest.approx(every[0], abs=1e-5)
    assert int(found["missed-rows"]) >= 1
