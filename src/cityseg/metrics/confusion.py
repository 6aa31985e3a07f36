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
    ) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self._device_fixed = device is not None
        self._counts = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)

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
        if counts[k * k + 1] > 0:
            bad = ~valid & (targets != self.ignore_index)
            message = _out_of_range_message(targets[bad].cpu().numpy(), preds[bad].cpu().numpy(), k)
            raise ValueError(message)
        self._counts += counts[: k * k]

    @property
    def matrix(self) -> torch.Tensor:
        """This process's (K, K) counts, a copy on the counting device."""
        return self._counts.view(self.num_classes, self.num_classes).clone()

    def reset(self) -> None:
        self._counts.zero_()

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
