"""Metrics of a confusion matrix, checked against scikit-learn on random labels."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    jaccard_score,
    multilabel_confusion_matrix,
    precision_score,
    recall_score,
)

from cityseg.labels import CLASS_NAMES
from cityseg.metrics import scores as metrics
from cityseg.metrics.summary import format_table, summarize

NUM_CLASSES = 6


def labels_and_confusion(seed: int, void_predictions: bool = False):
    """Random labels where class 4 is only predicted and class 5 is absent from both."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 4, 2000)
    pred = np.where(rng.random(2000) < 0.6, truth, rng.integers(0, 5, 2000))
    columns = NUM_CLASSES + void_predictions
    if void_predictions:  # label NUM_CLASSES stands for "predicted as no class"
        pred[rng.random(2000) < 0.1] = NUM_CLASSES
    confusion = np.zeros((NUM_CLASSES, columns), dtype=np.int64)
    np.add.at(confusion, (truth, pred), 1)
    return truth, pred, confusion


def sklearn_scores(truth, pred, function):
    """Per-class scores, NaN where undefined (jaccard_score has no NaN option: absent -> NaN)."""
    labels = np.arange(NUM_CLASSES)
    if function is jaccard_score:
        scores = function(truth, pred, labels=labels, average=None, zero_division=0)
        absent = ~np.isin(labels, truth) & ~np.isin(labels, pred)
        return np.where(absent, np.nan, scores)
    return function(truth, pred, labels=labels, average=None, zero_division=np.nan)


def sklearn_mean(truth, pred, function):
    labels = np.arange(NUM_CLASSES)
    if function is jaccard_score:  # macro over the classes present in truth or prediction
        present = labels[np.isin(labels, truth) | np.isin(labels, pred)]
        return function(truth, pred, labels=present, average="macro")
    return function(truth, pred, labels=labels, average="macro", zero_division=np.nan)


@pytest.mark.parametrize("void_predictions", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_class_metrics_match_sklearn(seed, void_predictions):
    truth, pred, confusion = labels_and_confusion(seed, void_predictions)
    for ours, theirs in (
        (metrics.iou, jaccard_score),
        (metrics.precision, precision_score),
        (metrics.recall, recall_score),
        (metrics.f1, f1_score),
    ):
        np.testing.assert_allclose(ours(confusion), sklearn_scores(truth, pred, theirs), 1e-12)
        assert metrics.mean(ours(confusion)) == pytest.approx(sklearn_mean(truth, pred, theirs))
    assert metrics.pixel_accuracy(confusion) == pytest.approx(accuracy_score(truth, pred))


@pytest.mark.parametrize("void_predictions", [False, True])
def test_specificity_matches_sklearn_counts(void_predictions):
    truth, pred, confusion = labels_and_confusion(3, void_predictions)
    per_class = multilabel_confusion_matrix(truth, pred, labels=np.arange(NUM_CLASSES))
    tn, fp = per_class[:, 0, 0], per_class[:, 0, 1]
    np.testing.assert_allclose(metrics.specificity(confusion), tn / (tn + fp))


def test_undefined_values_are_nan_and_left_out_of_means():
    _, _, confusion = labels_and_confusion(4)
    iou = metrics.iou(confusion)
    assert np.isnan(iou[5]) and iou[4] == 0.0  # absent: undefined; predicted, no truth: 0
    assert np.isnan(metrics.recall(confusion)[4]) and metrics.precision(confusion)[4] == 0.0
    assert metrics.mean(iou) == pytest.approx(np.mean(iou[:5]))
    assert metrics.absent_classes(confusion).tolist() == [False] * 5 + [True]


def test_frequency_weighted_iou():
    truth, _, confusion = labels_and_confusion(5)
    share = np.bincount(truth, minlength=NUM_CLASSES) / truth.size
    expected = np.nansum(share * metrics.iou(confusion))
    assert metrics.frequency_weighted_iou(confusion) == pytest.approx(expected)


def test_summarize_schema_and_absent_classes():
    _, _, confusion = labels_and_confusion(6, void_predictions=True)
    names = [f"class{i}" for i in range(NUM_CLASSES)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        summary = summarize(confusion, names)
    json.dumps(summary, allow_nan=False)
    assert summary["absent_classes"] == ["class5"]
    assert summary["classes"]["class5"] == {
        "iou": None,
        "precision": None,
        "recall": None,
        "specificity": pytest.approx(1.0),
        "f1": None,
        "pixels": 0,
    }
    assert summary["classes"]["class0"]["pixels"] == confusion[0].sum()
    assert summary["mean_iou"] == pytest.approx(np.mean(metrics.iou(confusion)[:5]))
    # class 4 is only predicted: its recall is undefined and counts as 0 in the mean
    recall = np.nan_to_num(metrics.recall(confusion)[:5])
    assert summary["mean_accuracy"] == pytest.approx(np.mean(recall))
    assert np.array(summary["confusion_matrix"]).shape == (NUM_CLASSES, NUM_CLASSES)
    assert summary["unassigned"] == confusion[:, NUM_CLASSES].tolist()
    assert summary["cityscapes"] is None
    for key in ("pixel_accuracy", "mean_iou", "frequency_weighted_iou", "mean_f1"):
        assert 0.0 <= summary[key] <= 1.0


def test_empty_matrix_gives_none_not_nan():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        summary = summarize(np.zeros((3, 3), dtype=np.int64), ["a", "b", "c"])
    assert summary["pixel_accuracy"] is None and summary["mean_iou"] is None
    assert summary["absent_classes"] == ["a", "b", "c"]
    json.dumps(summary, allow_nan=False)


def test_cityscapes_block_for_the_19_classes():
    rng = np.random.default_rng(7)
    confusion = rng.integers(0, 50, (19, 19))
    confusion[3] = 0
    confusion[:, 3] = 0
    summary = summarize(confusion, CLASS_NAMES)
    block = summary["cityscapes"]
    assert block["classes_iou"] == pytest.approx(summary["mean_iou"])
    assert block["per_class"]["wall"]["iou"] is None
    assert block["classes_iiou"] is None and "instanceIds" in block["note"]
    assert set(block["per_category"]) == {
        "flat", "construction", "object", "nature", "sky", "human", "vehicle"
    }  # fmt: skip


def test_format_table_marks_absent_classes():
    _, _, confusion = labels_and_confusion(8)
    names = [f"class{i}" for i in range(NUM_CLASSES)]
    table = format_table(summarize(confusion, names))
    assert all(name in table for name in names)
    assert "class5" in table.splitlines()[-1] and "absent" in table
    assert "mean" in table and "pixel accuracy" in table


def test_wrong_shapes_are_refused():
    with pytest.raises(ValueError):
        metrics.iou(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="class names"):
        summarize(np.zeros((3, 3)), ["a", "b"])
