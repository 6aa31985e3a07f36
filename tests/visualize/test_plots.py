"""Charts: each is checked by the colours it must (and must not) draw, on synthetic inputs."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from matplotlib import colors as mcolors

from cityseg import labels
from cityseg.visualize.colors import ERROR_COLOR
from cityseg.visualize.plots import (
    evaluation_charts,
    plot_comparison_grid,
    plot_confusion_matrix,
    plot_per_class_iou,
    plot_training_curves,
    read_metrics_jsonl,
)

MIOU_GREEN = (44, 160, 44)  # tab:green, the validation mIoU curve
LR_PURPLE = (148, 103, 189)  # tab:purple, the learning-rate curve
ABSENT_GREY = (238, 238, 238)  # confusion-matrix rows of absent classes


def _read_rgb(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _count_color(image: np.ndarray, color) -> int:
    return int(np.all(image == np.asarray(color, dtype=np.uint8), axis=-1).sum())


def synthetic_scene(seed: int, height: int = 64, width: int = 128):
    """A random photo, a blocky street-like trainId mask and a noisy prediction of it."""
    rng = np.random.default_rng(seed)
    target = np.full((height, width), 2, dtype=np.uint8)  # building
    target[: height // 4] = 10  # sky
    target[height // 2 :] = 0  # road
    left = int(rng.integers(0, width - 40))
    target[height // 2 - 8 : height // 2 + 8, left : left + 30] = 13  # car
    target[-4:] = labels.IGNORE_INDEX
    photo = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    prediction = np.where(target == labels.IGNORE_INDEX, 0, target).astype(np.uint8)
    flipped = rng.random(target.shape) < 0.1
    prediction[flipped] = rng.integers(0, labels.NUM_CLASSES, int(flipped.sum()))
    return photo, target, prediction


def _history(with_validation: bool = True) -> list[dict]:
    records = []
    for epoch in range(1, 9):
        records.append({"epoch": epoch, "train_loss": 2 / epoch, "lr": 0.01 * 0.7**epoch})
        if with_validation and epoch % 2 == 0:
            records.append({"epoch": epoch, "val": {"loss": 2.5 / epoch, "mean_iou": 0.1 * epoch}})
    return records


def test_read_metrics_jsonl_skips_blank_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    records = _history()
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n\n", encoding="utf-8")
    assert read_metrics_jsonl(path) == records


def test_training_curves_draw_validation_miou_and_lr_when_logged(tmp_path):
    picture = _read_rgb(plot_training_curves(_history(), tmp_path / "curves.png", title="run"))
    assert picture.shape[1] > 3 * picture.shape[0]  # three panels side by side
    assert _count_color(picture, MIOU_GREEN) > 50
    assert _count_color(picture, LR_PURPLE) > 50


def test_training_curves_without_validation_leave_the_miou_panel_empty(tmp_path):
    picture = _read_rgb(plot_training_curves(_history(False), tmp_path / "curves.png"))
    assert _count_color(picture, MIOU_GREEN) == 0
    assert _count_color(picture, LR_PURPLE) > 50


def test_training_curves_accept_an_empty_history(tmp_path):
    assert plot_training_curves([], tmp_path / "empty.png").is_file()


def _iou_by_class() -> dict[str, float | None]:
    values = np.linspace(0.9, 0.1, labels.NUM_CLASSES)
    iou: dict[str, float | None] = dict(zip(labels.CLASS_NAMES, values.tolist(), strict=True))
    iou["train"] = None
    iou["bus"] = float("nan")
    return iou


@pytest.mark.parametrize("sort", [False, True])
def test_per_class_iou_colours_each_present_class_and_skips_absent(tmp_path, sort):
    picture = _read_rgb(plot_per_class_iou(_iou_by_class(), tmp_path / "iou.png", sort=sort))
    for name in ("road", "building", "car", "bicycle"):
        color = labels.PALETTE[labels.CLASS_NAMES.index(name)]
        assert _count_color(picture, color) > 30, name
    for name in ("train", "bus"):  # absent: no bar
        assert _count_color(picture, labels.PALETTE[labels.CLASS_NAMES.index(name)]) == 0, name


def test_per_class_iou_bar_length_follows_the_value(tmp_path):
    iou = {"road": 0.9, "car": 0.3}
    picture = _read_rgb(plot_per_class_iou(iou, tmp_path / "iou.png"))
    road = _count_color(picture, labels.PALETTE[0])
    car = _count_color(picture, labels.PALETTE[13])
    assert 2.5 < road / car < 3.5


def _confusion(absent: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(0)
    confusion = rng.integers(0, 30, (19, 19)) + np.diag(rng.integers(500, 5000, 19))
    if absent is not None:
        confusion[absent] = 0
    return confusion


def test_confusion_matrix_is_readable_at_19_classes(tmp_path):
    picture = _read_rgb(plot_confusion_matrix(_confusion(), tmp_path / "cm.png"))
    assert picture.shape[0] / labels.NUM_CLASSES >= 40  # pixels per row: room for names and values
    assert _count_color(picture, ABSENT_GREY) < 100


def test_confusion_matrix_greys_the_row_of_an_absent_class(tmp_path):
    picture = _read_rgb(plot_confusion_matrix(_confusion(absent=16), tmp_path / "cm.png"))
    assert _count_color(picture, ABSENT_GREY) > 5000


def test_confusion_matrix_is_row_normalised(tmp_path):
    """Rows with very different totals but the same proportions get the same darkest cell."""
    confusion = np.diag(np.geomspace(10, 1e7, 19)).astype(np.int64)
    picture = _read_rgb(plot_confusion_matrix(confusion, tmp_path / "cm.png", title=None))
    darkest = np.rint(np.array(mcolors.to_rgb("#08306b")) * 255)  # Blues at 100%
    cells = _count_color(picture, darkest)
    assert cells > 19 * 900  # every diagonal cell is fully dark, not only the biggest row


def test_confusion_matrix_rejects_a_wrong_shape(tmp_path):
    with pytest.raises(ValueError, match="19x19"):
        plot_confusion_matrix(np.ones((18, 18)), tmp_path / "cm.png")


def test_comparison_grid_has_one_row_per_image_and_shows_errors_in_red(tmp_path):
    scenes = [synthetic_scene(seed) for seed in range(3)]
    photos, targets, predictions = zip(*scenes, strict=True)
    titles = [f"frame_{i} - mIoU {50 + i}.0%" for i in range(3)]
    three = _read_rgb(
        plot_comparison_grid(photos, targets, predictions, tmp_path / "3.png", titles)
    )
    one = _read_rgb(
        plot_comparison_grid(photos[:1], targets[:1], predictions[:1], tmp_path / "1.png")
    )
    assert three.shape[0] > 2.2 * one.shape[0] - 200
    assert _count_color(three, ERROR_COLOR) > 300
    exact = [np.where(t == labels.IGNORE_INDEX, 0, t) for t in targets[:1]]
    perfect = _read_rgb(plot_comparison_grid(photos[:1], targets[:1], exact, tmp_path / "ok.png"))
    assert _count_color(perfect, ERROR_COLOR) < _count_color(one, ERROR_COLOR) / 10


def test_comparison_grid_downscales_large_images_and_accepts_missing_ground_truth(tmp_path):
    photo, target, prediction = synthetic_scene(0, height=1024, width=2048)
    path = plot_comparison_grid([photo], [None], [prediction], tmp_path / "big.png", max_width=256)
    assert path.is_file()


def test_comparison_grid_rejects_unequal_lengths(tmp_path):
    photo, target, prediction = synthetic_scene(0)
    with pytest.raises(ValueError, match="equal length"):
        plot_comparison_grid([photo, photo], [target], [prediction], tmp_path / "x.png")
    with pytest.raises(ValueError, match="titles"):
        plot_comparison_grid([photo], [target], [prediction], tmp_path / "x.png", titles=["a", "b"])


def test_evaluation_charts_writes_iou_bars_and_confusion_matrix(tmp_path):
    iou = _iou_by_class()
    metrics = {
        "classes": {name: {"iou": value} for name, value in iou.items()},
        "confusion_matrix": _confusion(absent=16).tolist(),
    }
    charts = evaluation_charts(metrics, tmp_path)
    assert list(charts) == ["Per-class IoU", "Confusion matrix"]
    assert all(path.is_file() and path.parent == tmp_path for path in charts.values())
