"""The confusion matrix, NumPy and torch, against scikit-learn and against each other."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import confusion_matrix

from cityseg.metrics.confusion import ConfusionMatrix, confusion_matrix_np


def random_batch(rng: np.random.Generator, shape: tuple[int, ...], num_classes: int):
    target = rng.integers(0, num_classes, shape).astype(np.uint8)
    target[rng.random(shape) < 0.2] = 255
    pred = rng.integers(0, num_classes, shape).astype(np.uint8)
    return pred, target


def sklearn_confusion(pred: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    kept = target.ravel() != 255
    if not kept.any():  # scikit-learn refuses empty input
        return np.zeros((num_classes, num_classes), dtype=np.int64)
    return confusion_matrix(target.ravel()[kept], pred.ravel()[kept], labels=np.arange(num_classes))


@pytest.mark.filterwarnings("ignore:A single label was found")
@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    num_classes=st.integers(1, 19),
    height=st.integers(1, 20),
    width=st.integers(1, 20),
)
def test_numpy_matches_sklearn(seed, num_classes, height, width):
    pred, target = random_batch(np.random.default_rng(seed), (height, width), num_classes)
    ours = confusion_matrix_np(pred, target, num_classes)
    assert ours.dtype == np.int64 and ours.shape == (num_classes, num_classes)
    np.testing.assert_array_equal(ours, sklearn_confusion(pred, target, num_classes))


def test_ignored_pixels_are_left_out():
    target = np.array([[0, 255], [1, 255]], dtype=np.uint8)
    pred = np.array([[0, 1], [0, 1]], dtype=np.uint8)
    assert confusion_matrix_np(pred, target, 2).tolist() == [[1, 0], [1, 0]]


def test_torch_matches_numpy_over_batches():
    rng = np.random.default_rng(0)
    matrix = ConfusionMatrix(num_classes=19)
    expected = np.zeros((19, 19), dtype=np.int64)
    for _ in range(3):
        pred, target = random_batch(rng, (2, 33, 47), 19)
        matrix.update(torch.from_numpy(pred).long(), torch.from_numpy(target))
        expected += confusion_matrix_np(pred, target, 19)
    assert matrix.matrix.dtype == torch.int64
    np.testing.assert_array_equal(matrix.matrix.numpy(), expected)
    np.testing.assert_array_equal(matrix.numpy(), expected)
    matrix.reset()
    assert matrix.matrix.sum() == 0


@pytest.mark.parametrize("bad_pred", [255, 19, -1])
def test_prediction_outside_the_classes_is_an_error(bad_pred):
    target = np.zeros((4, 4), dtype=np.int64)
    pred = np.zeros((4, 4), dtype=np.int64)
    pred[1, 2] = bad_pred
    with pytest.raises(ValueError, match=f"predictions \\[{bad_pred}\\]"):
        confusion_matrix_np(pred, target, 19)
    matrix = ConfusionMatrix(19)
    with pytest.raises(ValueError, match=f"predictions \\[{bad_pred}\\]"):
        matrix.update(torch.from_numpy(pred), torch.from_numpy(target))
    assert matrix.matrix.sum() == 0


def test_prediction_outside_the_classes_on_ignored_pixels_is_fine():
    target = np.array([0, 255])
    pred = np.array([0, 255])
    assert confusion_matrix_np(pred, target, 2).sum() == 1
    matrix = ConfusionMatrix(2)
    matrix.update(torch.from_numpy(pred), torch.from_numpy(target))
    assert matrix.matrix.sum() == 1


def test_target_that_is_neither_a_class_nor_ignored_is_an_error():
    target, pred = np.array([0, 30]), np.array([0, 0])
    with pytest.raises(ValueError, match="targets \\[30\\]"):
        confusion_matrix_np(pred, target, 19)
    with pytest.raises(ValueError, match="targets \\[30\\]"):
        ConfusionMatrix(19).update(torch.from_numpy(pred), torch.from_numpy(target))


def test_logits_and_mismatched_shapes_are_refused():
    matrix = ConfusionMatrix(3)
    with pytest.raises(TypeError, match="argmax"):
        matrix.update(torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        matrix.update(torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(TypeError):
        confusion_matrix_np(np.zeros(3), np.zeros(3, dtype=int), 3)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix_np(np.zeros(3, dtype=int), np.zeros(4, dtype=int), 3)


def test_reduce_without_process_group_is_the_local_matrix():
    matrix = ConfusionMatrix(2)
    matrix.update(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]))
    assert matrix.reduce().tolist() == [[1, 1], [0, 1]]
    assert matrix.reduce().tolist() == [[1, 1], [0, 1]]


def _sum_over_ranks(rank: int, world_size: int, init_file: str, results) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        matrix = ConfusionMatrix(3)
        matrix.update(torch.tensor([rank, 2]), torch.tensor([rank, rank]))
        results[rank] = (matrix.reduce().tolist(), matrix.matrix.tolist())
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_reduce_sums_the_ranks(tmp_path):
    manager = torch.multiprocessing.Manager()
    results = manager.dict()
    torch.multiprocessing.spawn(
        _sum_over_ranks, args=(2, str(tmp_path / "init"), results), nprocs=2, join=True
    )
    expected = [[1, 0, 1], [0, 1, 1], [0, 0, 0]]
    assert results[0][0] == expected and results[1][0] == expected
    assert results[0][1] == [[1, 0, 1], [0, 0, 0], [0, 0, 0]]


def test_a_matrix_checked_on_read_counts_alike_and_raises_when_read():
    pred, target = torch.tensor([0, 1, 2, 1]), torch.tensor([0, 1, 255, 0])
    checked = ConfusionMatrix(3, check_on_read=True)
    checked.update(pred, target)
    now = ConfusionMatrix(3)
    now.update(pred, target)
    assert torch.equal(checked.matrix, now.matrix)
    checked.update(torch.tensor([7, 0, -2]), torch.tensor([1, 30, 255]))  # noted, not raised yet
    with pytest.raises(ValueError, match=r"targets \[30\] and predictions \[7\] outside 0..2"):
        checked.numpy(reduce=False)
    with pytest.raises(ValueError, match=r"targets \[30\]"):
        checked.reduce()
    checked.reset()
    assert checked.matrix.sum() == 0
