"""One confusion matrix, two back ends: NumPy on the host, torch on the device.

Both count ``confusion[target, pred]`` (rows ground truth, columns prediction, int64) with a single
``bincount``. Pixels whose target is the ignore label (255) are left out. Any other target outside
``0..K-1``, or a prediction outside ``0..K-1`` on an evaluated pixel, raises ``ValueError``: a
K x K matrix cannot hold such a pixel and dropping it would inflate every score. (Submissions that
predict void labelIds are scored by :mod:`cityseg.metrics.official`, which keeps them as misses.)

"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from cityseg.labels import IGNORE_INDEX, NUM_CLASSES

_LARGEST = torch.iinfo(torch.int64).max


def _out_of_range_message(targets: np.ndarray, preds: np.ndarray, num_classes: int) -> str:
    bad_targets = np.unique(targets[(targets < 0) | (targets >= num_classes)])
    bad_preds = np.unique(preds[(preds < 0) | (preds >= num_classes)])
    parts = []
    if bad_targets.size:
        parts.append(f"targets {bad_targets[:8].tolist()}")
    if bad_preds.size:
        parts.append(f"predictions {bad_preds[:8].tolist()}")
    return (
        f"{' and '.join(parts)} outside 0..{num_classes - 1} on evaluated pixels; "
        "pass trainIds (argmax of the logits) with ignored pixels set to the ignore label"
    )


def confusion_matrix_np(
    pred: np.ndarray,
    target: np.ndarray,
    num_classes: int = NUM_CLASSES,
    ignore_index: int = IGNORE_INDEX,
) -> np.ndarray:
    """The (K, K) int64 confusion matrix of integer predictions against targets of any shape.

    Example:
        >>> confusion_matrix_np(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 255]), 2).tolist()
        [[1, 1], [0, 1]]
    """
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from target shape {target.shape}")
    if pred.dtype.kind not in "iu" or target.dtype.kind not in "iu":
        raise TypeError(f"integer class ids expected, got {pred.dtype} and {target.dtype}")
    targets = target.ravel().astype(np.intp)
    preds = pred.ravel().astype(np.intp)
    evaluated = targets != ignore_index
    valid = (targets >= 0) & (targets < num_classes) & (preds >= 0) & (preds < num_classes)
    if (evaluated & ~valid).any():
        bad = evaluated & ~valid
        raise ValueError(_out_of_range_message(targets[bad], preds[bad], num_classes))
    index = np.where(valid, targets * num_classes + preds, num_classes * num_classes)
    counts = np.bincount(index, minlength=num_classes * num_classes + 1)
    return counts[: num_classes * num_classes].reshape(num_classes, num_classes).astype(np.int64)


class ConfusionMatrix:
    """A (K, K) int64 confusion matrix accumulated on the device where the predictions live.

    Args:
        num_classes: K, the number of classes (19 for Cityscapes trainIds).
        ignore_index: target value of pixels that are not evaluated.
        device: where to keep the counts; by default the device of the first ``update``.
        check_on_read: check the ids' range when the counts are read (:attr:`matrix`,
            :meth:`reduce`), not in every ``update``: no update then waits for the device
            (the error names the smallest and largest ids out of range).

    Example:
        >>> import torch
        >>> matrix = ConfusionMatrix(num_classes=3)
        >>> matrix.update(torch.tensor([[0, 2], [1, 1]]), torch.tensor([[0, 1], [1, 255]]))
        >>> matrix.matrix.tolist()
        [[1, 0, 0], [0, 1, 1], [0, 0, 0]]
    """

    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        ignore_index: int = IGNORE_INDEX,
        device: torch.device | str | None = None,
        check_on_read: bool = False,
    ) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.check_on_read = check_on_read
        self._device_fixed = device is not None
        self._counts = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
        # Of the pixels out of range (check_on_read): their number, the smallest (target,
        # prediction) and the largest.
        self._rejected = torch.zeros((), dtype=torch.int64, device=device)
        self._low = torch.full((2,), _LARGEST, device=device)
        self._high = torch.full((2,), -_LARGEST, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: integer predictions and targets of the same shape (any layout)."""
        if pred.shape != target.shape:
            raise ValueError(
                f"prediction shape {tuple(pred.shape)} != target {tuple(target.shape)}"
            )
        if pred.is_floating_point() or target.is_floating_point():
            raise TypeError("integer class ids expected: take the argmax of the logits first")
        if not self._device_fixed:
            self._counts = self._counts.to(pred.device)
            self._rejected = self._rejected.to(pred.device)
            self._low, self._high = self._low.to(pred.device), self._high.to(pred.device)
            self._device_fixed = True
        k = self.num_classes
        # The range is checked in the ids' own type, before the narrowing to int32 (where
        # 2**32 + 3 would become 3).
        targets = target.reshape(-1).to(self._counts.device)
        preds = pred.reshape(-1).to(self._counts.device)
        valid = (targets >= 0) & (targets < k) & (preds >= 0) & (preds < k)
        rejected = (targets != self.ignore_index).to(torch.int32) + k * k  # k*k: ignored
        index = torch.where(valid, targets.to(torch.int32) * k + preds.to(torch.int32), rejected)
        counts = torch.bincount(index, minlength=k * k + 2)
        if self.check_on_read:
            self._note_out_of_range(counts[k * k + 1], targets, preds, valid)
        elif counts[k * k + 1] > 0:
            bad = ~valid & (targets != self.ignore_index)
            message = _out_of_range_message(targets[bad].cpu().numpy(), preds[bad].cpu().numpy(), k)
            raise ValueError(message)
        self._counts += counts[: k * k]

    def _note_out_of_range(self, pixels, targets, preds, valid) -> None:
        """Count the evaluated pixels out of range and keep their extreme ids, on the device."""
        k, bad = self.num_classes, ~valid & (targets != self.ignore_index)
        bad_targets = bad & ((targets < 0) | (targets >= k))
        bad_preds = bad & ((preds < 0) | (preds >= k))
        targets, preds = targets.long(), preds.long()
        low = torch.stack(
            [
                torch.where(bad_targets, targets, _LARGEST).amin(),
                torch.where(bad_preds, preds, _LARGEST).amin(),
            ]
        )
        high = torch.stack(
            [
                torch.where(bad_targets, targets, -_LARGEST).amax(),
                torch.where(bad_preds, preds, -_LARGEST).amax(),
            ]
        )
        self._rejected += pixels
        torch.minimum(self._low, low, out=self._low)
        torch.maximum(self._high, high, out=self._high)

    def _check_range(self) -> None:
        """The ValueError of ``update``, for ids out of range noted since (``check_on_read``)."""
        if not self.check_on_read:
            return
        rejected, *extremes = torch.cat([self._rejected.view(1), self._low, self._high]).tolist()
        if rejected:
            low_target, low_pred, high_target, high_pred = extremes
            targets = sorted({low_target, high_target} - {_LARGEST, -_LARGEST})
            preds = sorted({low_pred, high_pred} - {_LARGEST, -_LARGEST})
            message = _out_of_range_message(np.array(targets), np.array(preds), self.num_classes)
            raise ValueError(message)

    @property
    def matrix(self) -> torch.Tensor:
        """This process's (K, K) counts, a copy on the counting device."""
        self._check_range()
        return self._counts.view(self.num_classes, self.num_classes).clone()

    def reset(self) -> None:
        self._counts.zero_()
        self._rejected.zero_()
        self._low.fill_(_LARGEST)
        self._high.fill_(-_LARGEST)

    def reduce(self) -> torch.Tensor:
        """The (K, K) counts summed over all distributed ranks (every rank must call it).

        Without an initialised process group this is :attr:`matrix`. The local counts are left
        as they are, so calling it twice never counts a rank twice.
        """
        total = self.matrix
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    def numpy(self, reduce: bool = True) -> np.ndarray:
        """The counts as a NumPy int64 array, summed over ranks unless ``reduce`` is False."""
        return (self.reduce() if reduce else self.matrix).cpu().numpy().astype(np.int64)
