"""Validation during training: the loss, pixel accuracy and mIoU of a model over the validation
batches of every process of the job."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from cityseg.labels import IGNORE_INDEX
from cityseg.metrics.confusion import ConfusionMatrix
from cityseg.metrics.summary import summarize
from cityseg.runtime.normalize import Normalize, batch_to_device
from cityseg.runtime.precision import Precision
from cityseg.train.distributed import DistInfo, all_reduce_sum


@torch.no_grad()
def validation_scores(
    model: torch.nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    normalize: Normalize,
    precision: Precision,
    class_names: Sequence[str],
    info: DistInfo,
) -> dict[str, Any]:
    """``val_loss`` (plain cross-entropy per labelled pixel) and every metric of
    :func:`~cityseg.metrics.summary.summarize`, summed over all processes. The sums stay on the
    device until every batch is done: no batch waits for the one before it.

    Args:
        model: the network, in eval mode.
        batches: this process's share of the uint8 validation batches (images, trainIds).
        normalize: the network's input normalisation, on its device.
        precision: the number format to run in.
        class_names: the names of the classes, in trainId order.
        info: this process's place in the job (every process must call this).
    """
    device = normalize.mean.device
    confusion = ConfusionMatrix(len(class_names), device=device, check_on_read=True)
    loss_sum = torch.zeros((), device=device)  # float32: MPS has no float64
    pixels = torch.zeros((), dtype=torch.int64, device=device)
    for images, targets in batches:
        images, targets = batch_to_device(images, targets, normalize)
        with precision.autocast():
            logits = model(images)
        targets = targets.long()
        loss = F.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX, reduction="sum")
        loss_sum += loss
        pixels += (targets != IGNORE_INDEX).sum()
        confusion.update(logits.argmax(1), targets)
    matrix = confusion.reduce().cpu().numpy()
    loss_sum, pixels = all_reduce_sum(loss_sum, info), all_reduce_sum(pixels, info)
    metrics = summarize(matrix, class_names)
    val_loss = (loss_sum / pixels.clamp(min=1)).item()
    return {"val_loss": val_loss, **metrics}
