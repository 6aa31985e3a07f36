"""Cross-entropy over trainIds with ignored pixels, class weights and online hard example mining.

Class weights computed from the training labels (``loss.class_weights``):

* ``"enet"`` (also ``"auto"``): ``w_c = 1 / ln(1.02 + p_c)`` with ``p_c`` the share of class ``c``
  among all labelled pixels (Paszke et al., ENet, 2016). Weights stay in [1.4, 50.5].
* ``"median"``: median frequency balancing, ``w_c = median(f) / f_c`` with ``f_c`` the pixels of
  ``c`` divided by the pixels of the images that contain ``c`` (Eigen & Fergus, 2015). A class
  that never occurs gets weight 0 (it cannot contribute to the loss anyway).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cityseg.labels import IGNORE_INDEX

WEIGHT_METHODS = ("enet", "median")


class SegmentationLoss(nn.Module):
    """Mean pixel cross-entropy of logits (N, C, H, W) against trainIds (N, H, W), 255 ignored.

    Args:
        num_classes: number of classes C.
        class_weights: optional C weights; the mean is then weighted (as ``F.cross_entropy``).
        ohem_thresh: when set, only pixels whose true-class probability is below it count, and at
            least ``ohem_min_kept`` of the hardest pixels of the batch (the largest losses).
        ohem_min_kept: lower bound on the pixels OHEM keeps.
        label_smoothing: as in ``F.cross_entropy``.

    A batch whose pixels are all ignored gives a loss of 0 (with a gradient), never NaN.

    Example:
        >>> import torch
        >>> loss = SegmentationLoss(num_classes=3)
        >>> logits, target = torch.zeros(1, 3, 2, 2), torch.tensor([[[0, 1], [2, 255]]])
        >>> round(loss(logits, target).item(), 4)  # ln(3)
        1.0986
    """

    def __init__(
        self,
        num_classes: int,
        class_weights: Sequence[float] | None = None,
        ohem_thresh: float | None = None,
        ohem_min_kept: int = 100_000,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        weights = torch.ones(num_classes) if class_weights is None else torch.tensor(class_weights)
        self.register_buffer("class_weights", weights.float(), persistent=False)
        self.ohem_thresh = ohem_thresh
        self.ohem_min_kept = ohem_min_kept
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.long()
        losses = F.cross_entropy(
            logits.float(),
            target,
            ignore_index=IGNORE_INDEX,
            reduction="none",
            label_smoothing=self.label_smoothing,
        )
        valid = target != IGNORE_INDEX
        pixel_weights = self.class_weights[target.clamp(max=self.num_classes - 1)] * valid
        if self.ohem_thresh is not None:
            pixel_weights = pixel_weights * self.hard_pixels(losses.detach(), valid)
        return (losses * pixel_weights).sum() / pixel_weights.sum().clamp(min=1e-12)

    @torch.no_grad()
    def hard_pixels(self, losses: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Mask of the pixels OHEM keeps: loss above -ln(thresh), or the ``min_kept`` largest
        where fewer pass.

        Computed on the device without reading anything back (no counts, no boolean indexing),
        so that a GPU never waits for it: ignored pixels enter the top-k as -1, below every loss.
        """
        threshold = -math.log(self.ohem_thresh)
        above = valid & (losses > threshold)
        kept = min(self.ohem_min_kept, losses.numel())
        if kept <= 0:
            return above
        kth = losses.masked_fill(~valid, -1.0).flatten().topk(kept).values[-1]
        too_few = above.sum() < valid.sum().clamp(max=kept)
        return torch.where(too_few, valid & (losses >= kth.clamp(max=threshold)), above)


def count_class_pixels(labels: Iterable[np.ndarray], num_classes: int) -> tuple[np.ndarray, ...]:
    """Per class: labelled pixels, and pixels of the images in which the class occurs."""
    pixels = np.zeros(num_classes, dtype=np.int64)
    image_pixels = np.zeros(num_classes, dtype=np.int64)
    for label in labels:
        counts = np.bincount(np.asarray(label).ravel(), minlength=256)[:num_classes]
        pixels += counts
        image_pixels[counts > 0] += np.asarray(label).size
    return pixels, image_pixels


def class_weights_from_counts(
    pixels: np.ndarray, image_pixels: np.ndarray, method: str
) -> list[float]:
    """Class weights by ``method`` ("enet" or "median", see the module docstring)."""
    if method == "enet":
        share = pixels / max(int(pixels.sum()), 1)
        return (1.0 / np.log(1.02 + share)).tolist()
    if method == "median":
        present = pixels > 0
        frequency = np.zeros(len(pixels))
        frequency[present] = pixels[present] / image_pixels[present]
        if not present.any():
            return [1.0] * len(pixels)
        weights = np.zeros(len(pixels))
        weights[present] = np.median(frequency[present]) / frequency[present]
        return weights.tolist()
    raise ValueError(f"unknown class weight method {method!r}; known: {list(WEIGHT_METHODS)}")
