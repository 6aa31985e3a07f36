"""Every mean of ``summarize`` against named references: torchmetrics' macro averages and
scikit-learn's (``labels`` = the classes present, ``zero_division=0``), including classes absent
from the ground truth, from the prediction, and from both."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import jaccard_score, precision_recall_fscore_support
from torchmetrics.functional.classification import (
    multiclass_f1_score,
    multiclass_jaccard_index,
    multiclass_precision,
    multiclass_recall,
    multiclass_specificity,
)

from cityseg.metrics.confusion import confusion_matrix_np
from cityseg.metrics.summary import summarize

TORCHMETRICS = {
    "mean_precision": multiclass_precision,
    "mean_recall": multiclass_recall,
    "mean_accuracy": multiclass_recall,
    "mean_specificity": multiclass_specificity,
    "mean_f1": multiclass_f1_score,
}


def ours(target, prediction, num_classes):
    matrix = confusion_matrix_np(np.array(prediction), np.array(target), num_classes)
    return summarize(matrix, [f"c{i}" for i in range(num_classes)])


def torchmetrics_means(target, prediction, num_classes):
    t, p = torch.tensor(target), torch.tensor(prediction)
    means = {
        name: float(function(p, t, num_classes=num_classes, average="macro"))
        for name, function in TORCHMETRICS.items()
    }
    means["mean_iou"] = float(multiclass_jaccard_index(p, t, num_classes=num_classes))
    return means


def sklearn_means(target, prediction):
    present = sorted(set(target) | set(prediction))
    precision, recall, f1, _ = precision_recall_fscore_support(
        target, prediction, labels=present, average="macro", zero_division=0
    )
    iou = jaccard_score(target, prediction, labels=present, average="macro", zero_division=0)
    return {"mean_precision": precision, "mean_recall": recall, "mean_accuracy": recall,
            "mean_f1": f1, "mean_iou": iou}  # fmt: skip


@pytest.mark.parametrize(
    ("target", "prediction", "num_classes", "expected"),
    [
        # class 2 absent from both: left out of every mean
        ([0, 0, 1, 1], [0, 1, 1, 1], 3, {"mean_specificity": 0.75}),
        # class 1 in the ground truth, never predicted: its precision counts as 0
        ([0, 0, 1, 1], [0, 0, 0, 0], 2, {"mean_precision": 0.25, "mean_recall": 0.5}),
        # class 1 predicted, absent from the ground truth: its recall counts as 0
        ([0, 0, 0, 0], [0, 0, 1, 1], 2, {"mean_recall": 0.25, "mean_accuracy": 0.25}),
    ],
)
def test_the_issue_cases_match_torchmetrics(target, prediction, num_classes, expected):
    result = ours(target, prediction, num_classes)
    reference = torchmetrics_means(target, prediction, num_classes)
    for name, value in expected.items():
        assert result[name] == pytest.approx(value)
        assert reference[name] == pytest.approx(value)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(2, 6).flatmap(
        lambda k: st.tuples(
            st.just(k),
            st.lists(st.tuples(st.integers(0, k - 1), st.integers(0, k - 1)), min_size=1,
                     max_size=40),
        )
    )
)  # fmt: skip
def test_every_mean_matches_torchmetrics_and_sklearn(case):
    num_classes, pairs = case
    target, prediction = [t for t, _ in pairs], [p for _, p in pairs]
    result = ours(target, prediction, num_classes)
    for name, value in torchmetrics_means(target, prediction, num_classes).items():
        assert result[name] == pytest.approx(value, abs=1e-6), name
    for name, value in sklearn_means(target, prediction).items():
        assert result[name] == pytest.approx(value, abs=1e-6), name
