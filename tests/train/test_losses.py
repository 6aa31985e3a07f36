"""The segmentation loss: ignored pixels, class weights, OHEM; class weights from label counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cityseg.train.losses import SegmentationLoss, class_weights_from_counts, count_class_pixels


def batch(seed: int = 0, classes: int = 4):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, classes, 5, 6, generator=generator, requires_grad=True)
    target = torch.randint(0, classes, (2, 5, 6), generator=generator).to(torch.uint8)
    return logits, target


def test_matches_plain_cross_entropy():
    logits, target = batch()
    expected = F.cross_entropy(logits, target.long())
    assert SegmentationLoss(4)(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


def test_ignored_pixels_do_not_count():
    logits, target = batch()
    masked = target.clone()
    masked[:, :2] = 255
    loss = SegmentationLoss(4)(logits, masked)
    keep = masked != 255
    expected = F.cross_entropy(logits.permute(0, 2, 3, 1)[keep], target[keep].long())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert (logits.grad.permute(0, 2, 3, 1)[~keep] == 0).all()


def test_all_ignored_gives_zero_not_nan():
    logits, target = batch()
    loss = SegmentationLoss(4)(logits, torch.full_like(target, 255))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_class_weights_match_weighted_cross_entropy():
    logits, target = batch()
    weights = [0.5, 2.0, 1.0, 3.0]
    expected = F.cross_entropy(logits, target.long(), weight=torch.tensor(weights))
    loss = SegmentationLoss(4, class_weights=weights)(logits, target)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_ohem_keeps_the_hardest_pixels():
    logits, target = batch(seed=1)
    losses = F.cross_entropy(logits, target.long(), reduction="none").flatten()
    hardest = losses.topk(10).values
    # a threshold no pixel passes: OHEM keeps exactly the min_kept hardest pixels
    loss = SegmentationLoss(4, ohem_thresh=1e-9, ohem_min_kept=10)(logits, target)
    assert loss.item() == pytest.approx(hardest.mean().item(), rel=1e-6)


def test_ohem_threshold_selects_low_confidence_pixels():
    logits, target = batch(seed=2)
    losses = F.cross_entropy(logits, target.long(), reduction="none")
    probability = torch.exp(-losses)
    expected = losses[probability < 0.5].mean()
    loss = SegmentationLoss(4, ohem_thresh=0.5, ohem_min_kept=1)(logits, target)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert loss.item() > F.cross_entropy(logits, target.long()).item()


def kept_by_definition(losses, valid, thresh, min_kept):
    """OHEM's mask as defined: the valid pixels whose loss is above -ln(thresh), or, where fewer
    than ``min_kept`` pass, those at or above the ``min_kept``-th largest valid loss."""
    threshold = -math.log(thresh)
    valid_losses = losses[valid]
    kept = min(min_kept, valid_losses.numel())
    if kept > 0 and int((valid_losses > threshold).sum()) < kept:
        threshold = min(threshold, valid_losses.topk(kept).values[-1].item())
        return valid & (losses >= threshold)
    return valid & (losses > threshold)


@pytest.mark.parametrize("thresh", [1e-9, 0.3, 0.7, 0.999])
@pytest.mark.parametrize("min_kept", [0, 1, 7, 40, 60, 1000])
@pytest.mark.parametrize("ignored", [0.0, 0.5, 1.0])
def test_ohem_mask_matches_its_definition(thresh, min_kept, ignored):
    """Every threshold, ``min_kept`` below, between and above the valid and all pixels (60),
    with none, half or all of the pixels ignored."""
    logits, target = batch(seed=4)
    generator = torch.Generator().manual_seed(5)
    target[torch.rand(target.shape, generator=generator) < ignored] = 255
    losses = F.cross_entropy(logits, target.long(), ignore_index=255, reduction="none").detach()
    valid = target != 255
    loss = SegmentationLoss(4, ohem_thresh=thresh, ohem_min_kept=min_kept)
    mask = loss.hard_pixels(losses, valid)
    assert torch.equal(mask, kept_by_definition(losses, valid, thresh, min_kept))


def test_ohem_never_picks_ignored_pixels():
    logits, target = batch(seed=3)
    target[0] = 255
    loss = SegmentationLoss(4, ohem_thresh=1e-9, ohem_min_kept=1000)(logits, target)
    expected = F.cross_entropy(logits[1:], target[1:].long())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_label_smoothing_is_passed_on():
    logits, target = batch()
    expected = F.cross_entropy(logits, target.long(), label_smoothing=0.1)
    loss = SegmentationLoss(4, label_smoothing=0.1)(logits, target)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_class_pixel_counts_and_weights():
    labels = [
        np.array([[0, 0, 1, 255]], np.uint8),
        np.array([[0, 0, 0, 0]], np.uint8),
    ]
    pixels, image_pixels = count_class_pixels(labels, num_classes=3)
    assert pixels.tolist() == [6, 1, 0]
    assert image_pixels.tolist() == [8, 4, 0]
    enet = class_weights_from_counts(pixels, image_pixels, "enet")
    assert enet[0] == pytest.approx(1 / math.log(1.02 + 6 / 7))
    assert enet[1] == pytest.approx(1 / math.log(1.02 + 1 / 7))
    assert enet[1] > enet[0]  # the rarer class weighs more
    median = class_weights_from_counts(pixels, image_pixels, "median")
    frequencies = [6 / 8, 1 / 4]
    assert median[:2] == pytest.approx([np.median(frequencies) / f for f in frequencies])
    assert median[2] == 0.0
    with pytest.raises(ValueError):
        class_weights_from_counts(pixels, image_pixels, "inverse")
