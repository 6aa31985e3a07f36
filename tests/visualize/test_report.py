"""The HTML report: content and self-containment read from the text; rendering in headless Chromium.

All inputs are synthetic (random photos, blocky masks, made-up metrics), never Cityscapes data.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from cityseg import labels
from cityseg.visualize.plots import evaluation_charts, plot_comparison_grid
from cityseg.visualize.report import write_report
from tests.helpers.chromium import run_chromium

ABSENT = ("train", "motorcycle")
PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const requests = performance.getEntriesByType("resource");
  const external = requests.filter(entry => !entry.name.startsWith("data:"));
  Object.assign(document.body.dataset, {
    classRows: document.querySelectorAll("#per-class tbody tr").length,
    imagesLoaded: images.filter(image => image.complete && image.naturalWidth > 0).length,
    imagesTotal: images.length,
    externalRequests: external.length,
  });
});
</script>"""


def _metrics() -> dict:
    rng = np.random.default_rng(0)
    classes = {}
    for name in labels.CLASS_NAMES:
        if name in ABSENT:
            classes[name] = dict.fromkeys(("iou", "precision", "recall", "specificity", "f1"))
            classes[name]["pixels"] = 0
            continue
        iou = float(rng.uniform(0.2, 0.95))
        pixels = int(rng.integers(1e3, 1e7))
        classes[name] = {"iou": iou, "precision": iou, "recall": iou, "specificity": 0.99,
                         "f1": 2 * iou / (1 + iou), "pixels": pixels}  # fmt: skip
    confusion = rng.integers(0, 40, (19, 19)) + np.diag(rng.integers(1000, 9000, 19))
    for name in ABSENT:
        confusion[labels.CLASS_NAMES.index(name)] = 0
    official = {"classes_iou": 0.6123, "classes_iiou": 0.4101, "categories_iou": 0.8312}
    official |= {"categories_iiou": None, "note": "synthetic official block"}
    official["per_class"] = {name: {"iou": 0.5, "iiou": None} for name in labels.CLASS_NAMES}
    official["per_category"] = {name: {"iou": 0.8, "iiou": 0.4} for name in labels.CATEGORY_NAMES}
    return {
        "pixel_accuracy": 0.9123, "mean_accuracy": 0.7012, "mean_iou": 0.6123,
        "frequency_weighted_iou": 0.8501, "mean_f1": 0.7234, "classes": classes,
        "absent_classes": list(ABSENT), "confusion_matrix": confusion.tolist(),
        "cityscapes": official,
    }  # fmt: skip


def _grid(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    photo = rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)
    target = rng.integers(0, labels.NUM_CLASSES, (8, 16), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    prediction = np.where(rng.random(target.shape) < 0.2, 13, target).astype(np.uint8)
    target[-4:] = labels.IGNORE_INDEX
    return plot_comparison_grid([photo], [target], [prediction], path, titles=[f"frame_{seed}"])


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """A report with 2 charts, 2 best and 1 worst image; returns (report.html, every PNG used)."""
    out_dir = tmp_path_factory.mktemp("report")
    metrics = _metrics()
    charts = evaluation_charts(metrics, out_dir)
    best = [(f"best_{i}", 0.9 - i / 10, _grid(out_dir / f"best_{i}.png", i)) for i in range(2)]
    worst = [("worst_0", 0.12, _grid(out_dir / "worst_0.png", 7))]
    info = {"checkpoint": "runs/demo/best.pt", "config": {"model": {"base_channels": 32}}}
    path = write_report(out_dir, metrics, charts, best, worst, title="Synthetic <run>", info=info)
    pictures = dict(charts) | {frame: png for frame, _, png in best + worst}
    return path, pictures


def _class_rows(page: str) -> list[list[str]]:
    table = re.search(r'<table id="per-class">.*?<tbody>(.*?)</tbody>', page, re.S)
    assert table, "per-class table not found"
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table.group(1), re.S)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in rows]
    return [[html.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in row] for row in cells]


def test_report_embeds_every_image_and_loads_nothing_external(report):
    path, pictures = report
    page = path.read_text(encoding="utf-8")
    sources = re.findall(r'<img src="([^"]*)"', page)
    assert len(sources) == len(pictures) == 5
    prefix = "data:image/png;base64,"
    assert all(source.startswith(prefix) for source in sources)
    embedded = {base64.b64decode(source[len(prefix) :]) for source in sources}
    assert embedded == {png.read_bytes() for png in pictures.values()}
    for external in ("http://", "https://", "<link", "<script", "url(", "@import"):
        assert external not in page, external


def test_per_class_table_has_19_rows_with_dashes_for_absent_classes(report):
    page = report[0].read_text(encoding="utf-8")
    rows = _class_rows(page)
    assert [row[0] for row in rows] == list(labels.CLASS_NAMES)
    assert all(len(row) == 7 for row in rows)  # class, IoU, precision, recall, spec., F1, pixels
    metrics = _metrics()
    road = metrics["classes"]["road"]
    assert rows[0][1] == f"{100 * road['iou']:.1f}" and rows[0][6] == f"{road['pixels']:,}"
    for name in ABSENT:
        assert rows[labels.CLASS_NAMES.index(name)][1:6] == ["—"] * 5
    note = re.search(r"Absent: ([^<]*)\.</p>", page)
    assert note and note.group(1) == "train, motorcycle"


def test_headline_shows_percentages_and_only_the_official_scores_given(report):
    page = report[0].read_text(encoding="utf-8")
    for shown in ("61.23%", "91.23%", "70.12%", "85.01%", "72.34%", "41.01%", "83.12%"):
        assert shown in page, shown
    assert "iIoU classes" in page and "iIoU categories" not in page  # null: no card
    assert "synthetic official block" in page
    assert page.count("<h3>Classes</h3>") == page.count("<h3>Categories</h3>") == 1


def test_report_lists_best_and_worst_images_and_escapes_text(report):
    page = report[0].read_text(encoding="utf-8")
    assert page.index("best_0 — mIoU 90.0%") < page.index("best_1 — mIoU 80.0%")
    assert page.index("best_1") < page.index("worst_0 — mIoU 12.0%")
    assert "<title>Synthetic &lt;run&gt;</title>" in page and "<run>" not in page
    assert "runs/demo/best.pt" in page and "base_channels" in page


def test_minimal_report_without_charts_or_official_scores(tmp_path):
    metrics = _metrics()
    del metrics["cityscapes"]
    page = write_report(tmp_path, metrics).read_text(encoding="utf-8")
    assert len(_class_rows(page)) == 19
    assert "<img" not in page and "Official" not in page and "Charts" not in page


def test_missing_chart_is_reported_with_its_path(tmp_path):
    missing = tmp_path / "nowhere.png"
    with pytest.raises(FileNotFoundError, match="nowhere.png"):
        write_report(tmp_path, _metrics(), {"chart": missing})


@pytest.mark.slow
def test_report_renders_in_chromium_with_every_image_loaded(report, tmp_path):
    path, pictures = report
    probed = tmp_path / "probed.html"
    probed.write_text(path.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"))
    dom = run_chromium(probed, tmp_path / "profile", "--dump-dom")
    body = re.search(r"<body([^>]*)>", dom)
    assert body, dom[:500]
    found = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(1)))
    assert found == {
        "class-rows": "19",
        "images-loaded": str(len(pictures)),
        "images-total": str(len(pictures)),
        "external-requests": "0",
    }

    screenshot = tmp_path / "report.png"
    run_chromium(
        path, tmp_path / "profile", f"--screenshot={screenshot}", "--window-size=1280,3000"
    )
    picture = cv2.cvtColor(cv2.imread(str(screenshot), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert picture.shape[:2] == (3000, 1280)
    assert (picture < 240).any(axis=-1).mean() > 0.05  # not a blank page
    road = np.all(picture == labels.PALETTE[labels.CLASS_NAMES.index("road")], axis=-1).sum()
    assert road > 1000  # more than its swatch: the per-class IoU chart shows, in class colours
