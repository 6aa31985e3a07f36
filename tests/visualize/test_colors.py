"""Colour masks, overlays, error maps and legends (numpy only, plus one matplotlib figure)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cityseg import labels
from cityseg.visualize import color_mask_with_legend, colorize, error_map, legend_entries, overlay
from cityseg.visualize.colors import CORRECT_DIM, ERROR_COLOR, IGNORE_COLOR

ROAD, SKY, CAR, TRAIN = 0, 10, 13, 16


def _mask() -> np.ndarray:
    mask = np.full((40, 60), ROAD, dtype=np.uint8)
    mask[:10] = SKY
    mask[20:30, 10:40] = CAR
    mask[-3:] = labels.IGNORE_INDEX
    return mask


def _photo(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


def _read_rgb(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _has_color(image: np.ndarray, color) -> bool:
    return bool(np.all(image == np.asarray(color, dtype=np.uint8), axis=-1).any())


def test_colorize_is_the_labels_palette_with_black_ignore():
    colored = colorize(_mask())
    assert colored.dtype == np.uint8 and colored.shape == (40, 60, 3)
    assert colored[25, 20].tolist() == labels.PALETTE[CAR].tolist()
    assert colored[-1, 0].tolist() == [0, 0, 0]


def test_overlay_blends_labelled_pixels_and_keeps_the_photo_under_ignore():
    mask, photo = _mask(), _photo((40, 60))
    assert np.array_equal(overlay(photo, mask, alpha=0.0), photo)
    opaque = overlay(photo, mask, alpha=1.0)
    assert np.array_equal(opaque[:-3], colorize(mask)[:-3])
    assert np.array_equal(opaque[-3:], photo[-3:])
    half = overlay(photo, mask, alpha=0.5)
    expected = np.rint((photo[25, 20].astype(float) + labels.PALETTE[CAR]) / 2)
    assert np.abs(half[25, 20].astype(int) - expected).max() <= 1


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_overlay_rejects_alpha_outside_unit_interval(alpha):
    with pytest.raises(ValueError, match="alpha"):
        overlay(_photo((40, 60)), _mask(), alpha=alpha)


def test_overlay_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="image must be RGB"):
        overlay(_photo((40, 61)), _mask())
    with pytest.raises(ValueError, match="train_ids must be"):
        overlay(_photo((40, 60)), colorize(_mask()))


def test_error_map_marks_wrong_red_ignore_grey_and_dims_correct():
    target, photo = _mask(), _photo((40, 60))
    prediction = target.copy()
    prediction[prediction == labels.IGNORE_INDEX] = SKY  # predictions under ignore do not count
    prediction[20:30, 10:20] = ROAD  # part of the car missed
    prediction[0, 0] = labels.IGNORE_INDEX  # "no class" on a labelled pixel is an error too
    errors = error_map(prediction, target, photo)

    wrong = np.zeros(target.shape, bool)
    wrong[20:30, 10:20] = wrong[0, 0] = True
    ignored = target == labels.IGNORE_INDEX
    correct = ~wrong & ~ignored
    assert np.all(errors[wrong] == ERROR_COLOR)
    assert np.all(errors[ignored] == IGNORE_COLOR)
    shown = errors[correct].astype(int)
    assert np.all(shown[:, 0] == shown[:, 1]) and np.all(shown[:, 1] == shown[:, 2])  # greyscale
    assert shown.max() <= round(CORRECT_DIM * 255)
    brightness = photo[correct].astype(float) @ [0.299, 0.587, 0.114]
    assert np.corrcoef(brightness, shown[:, 0])[0, 1] > 0.99  # the photo, dimmed


def test_error_map_without_photo_dims_the_ground_truth_colours():
    target = _mask()
    errors = error_map(target, target)
    sky_grey = round(CORRECT_DIM * (labels.PALETTE[SKY].astype(float) @ [0.299, 0.587, 0.114]))
    assert errors[0, 0].tolist() == [sky_grey] * 3
    assert not _has_color(errors, ERROR_COLOR)


def test_error_map_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        error_map(_mask()[:, :50], _mask())


def test_legend_entries_lists_present_classes_in_train_id_order():
    entries = legend_entries(_mask())
    assert [entry[0] for entry in entries] == [ROAD, SKY, CAR]
    assert entries[2] == (CAR, "car", tuple(int(c) for c in labels.PALETTE[CAR]))
    other = np.full((4, 4), TRAIN, dtype=np.uint8)
    assert [entry[1] for entry in legend_entries(_mask(), other)] == ["road", "sky", "car", "train"]
    assert legend_entries(np.full((3, 3), labels.IGNORE_INDEX, dtype=np.uint8)) == []


def test_color_mask_with_legend_draws_the_mask_and_only_present_classes(tmp_path):
    path = color_mask_with_legend(_mask(), tmp_path / "sub" / "mask.png", title="synthetic")
    picture = _read_rgb(path)
    assert picture.shape[0] > 100 and picture.shape[1] > 300
    for class_id in (ROAD, SKY, CAR):
        assert _has_color(picture, labels.PALETTE[class_id]), labels.CLASS_NAMES[class_id]
    assert not _has_color(picture, labels.PALETTE[TRAIN])


def test_color_mask_with_legend_overlays_the_photo(tmp_path):
    mask = _mask()
    path = color_mask_with_legend(mask, tmp_path / "overlay.png", image=_photo(mask.shape))
    picture = _read_rgb(path)
    assert len(np.unique(picture.reshape(-1, 3), axis=0)) > 500  # the noisy photo shows through
