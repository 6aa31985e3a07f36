"""What every evaluation's metrics must hold, whatever the data and model."""

from __future__ import annotations

import numpy as np

from cityseg import labels

HEADLINE = ("pixel_accuracy", "mean_accuracy", "mean_iou", "frequency_weighted_iou", "mean_f1")
CLASS_KEYS = {"iou", "precision", "recall", "specificity", "f1", "pixels"}
OFFICIAL_KEYS = ("classes_iou", "classes_iiou", "categories_iou", "categories_iiou")


def check_metrics(metrics: dict, images: int) -> None:
    for key in HEADLINE:
        assert 0 <= metrics[key] <= 1, key
    assert list(metrics["classes"]) == list(labels.CLASS_NAMES)
    for name, values in metrics["classes"].items():
        assert set(values) >= CLASS_KEYS, name
        assert all(v is None or 0 <= v <= 1 for k, v in values.items() if k != "pixels")
    assert np.asarray(metrics["confusion_matrix"]).shape == (19, 19)
    assert sum(map(sum, metrics["confusion_matrix"])) == metrics["pixels"] > 0
    assert set(metrics["absent_classes"]) <= set(labels.CLASS_NAMES)
    assert set(OFFICIAL_KEYS) <= set(metrics["cityscapes"])
    assert metrics["images"] == len(metrics["per_image"]) == images
    assert metrics["seconds"] >= 0
