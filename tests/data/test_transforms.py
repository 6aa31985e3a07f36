"""Joint image/label augmentation: labels stay aligned, padding is ignored, draws are seeded."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cityseg.data.transforms import EvalTransform, TrainTransform, jitter_colors, resize_pair


def encoded_pair(height: int = 60, width: int = 90, seed: int = 0):
    """Random trainIds 0..18 and an image whose pixels spell them (R = G = B = 10 id + 5)."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 19, size=(height, width), dtype=np.uint8)
    image = np.repeat(label[..., None] * 10 + 5, 3, axis=2).astype(np.uint8)  # never 0
    return image, label


def decode(image: np.ndarray) -> np.ndarray:
    return (image[..., 0].astype(np.int64) - 5) // 10


@pytest.mark.parametrize("seed", range(12))
def test_every_labelled_pixel_keeps_its_image_pixel(seed):
    image, label = encoded_pair(seed=seed)
    transform = TrainTransform(
        size=None,
        crop=(48, 80),
        scale=(0.6, 1.8),
        hflip=0.5,
        rotation=15,
        image_interpolation=cv2.INTER_NEAREST,
    )
    out_image, out_label = transform(image, label, np.random.default_rng(seed))
    assert out_image.shape == (48, 80, 3) and out_label.shape == (48, 80)
    labelled = out_label != 255
    assert labelled.mean() > 0.3
    np.testing.assert_array_equal(decode(out_image)[labelled], out_label[labelled])
    # whatever the warp brought in from outside the source is 0 in the image and 255 in the label
    np.testing.assert_array_equal(out_image[~labelled], 0)


def test_bilinear_image_stays_aligned_with_nearest_label():
    # big constant blocks: bilinear and nearest agree away from block edges
    label = np.kron(np.arange(24, dtype=np.uint8).reshape(4, 6) % 19, np.ones((20, 20), np.uint8))
    image = np.repeat(label[..., None] * 10 + 5, 3, axis=2).astype(np.uint8)
    transform = TrainTransform(crop=(64, 96), scale=(0.8, 1.3), rotation=8)
    out_image, out_label = transform(image, label, np.random.default_rng(3))
    labelled = out_label != 255
    agree = np.abs(out_image[..., 0].astype(int) - (out_label.astype(int) * 10 + 5)) <= 5
    assert agree[labelled].mean() > 0.95


def test_crop_larger_than_image_pads_with_zero_and_ignore():
    image, label = encoded_pair(40, 50)
    transform = TrainTransform(crop=(64, 80), scale=(1, 1), hflip=0)
    out_image, out_label = transform(image, label, np.random.default_rng(0))
    np.testing.assert_array_equal(out_label[:40, :50], label)
    np.testing.assert_array_equal(out_image[:40, :50], image)
    assert (out_label[40:] == 255).all() and (out_label[:, 50:] == 255).all()
    assert (out_image[40:] == 0).all() and (out_image[:, 50:] == 0).all()


def test_identity_settings_change_nothing():
    image, label = encoded_pair()
    transform = TrainTransform(size=(60, 90), scale=(1, 1), hflip=0)
    out_image, out_label = transform(image, label, np.random.default_rng(0))
    np.testing.assert_array_equal(out_image, image)
    np.testing.assert_array_equal(out_label, label)


def test_horizontal_flip_mirrors_both():
    image, label = encoded_pair()
    transform = TrainTransform(size=(60, 90), scale=(1, 1), hflip=1.0)
    out_image, out_label = transform(image, label, np.random.default_rng(0))
    np.testing.assert_array_equal(out_label, label[:, ::-1])
    np.testing.assert_array_equal(out_image, image[:, ::-1])


def test_rotation_turns_the_content_about_the_centre():
    # a bright column through the centre of a square leans by the drawn angle
    label = np.full((81, 81), 1, np.uint8)
    label[:, 40] = 7
    image = np.repeat(label[..., None] * 10 + 5, 3, axis=2).astype(np.uint8)
    transform = TrainTransform(
        size=(81, 81), scale=(1, 1), hflip=0, rotation=10, image_interpolation=cv2.INTER_NEAREST
    )
    rng = np.random.default_rng(5)
    angle = np.random.default_rng(5)
    angle.uniform(1, 1), angle.random()  # the draws before the angle: scale, flip
    expected = angle.uniform(-10, 10)
    _, out_label = transform(image, label, rng)
    rows, cols = np.nonzero(out_label == 7)
    slope = np.polyfit(rows - 40, cols - 40, 1)[0]  # column offset per row
    assert np.degrees(np.arctan(slope)) == pytest.approx(-expected, abs=1.5)
    assert out_label[40, 40] == 7  # the centre stays put
    assert (out_label[0, 0] == 255) == (abs(expected) > 0.5)  # corners rotated in are ignored


def test_same_generator_seed_same_result_and_different_seed_differs():
    image, label = encoded_pair()
    transform = TrainTransform(crop=(40, 60), scale=(0.5, 2), rotation=10, color_jitter=0.3)
    first = transform(image, label, np.random.default_rng([1, 2, 3]))
    again = transform(image, label, np.random.default_rng([1, 2, 3]))
    other = transform(image, label, np.random.default_rng([1, 2, 4]))
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


def test_color_jitter_changes_the_image_not_the_label():
    image, label = encoded_pair()
    transform = TrainTransform(size=(60, 90), scale=(1, 1), hflip=0, color_jitter=0.4)
    out_image, out_label = transform(image, label, np.random.default_rng(0))
    np.testing.assert_array_equal(out_label, label)
    assert not np.array_equal(out_image, image) and out_image.dtype == np.uint8


def test_jitter_of_zero_strength_is_identity():
    image, _ = encoded_pair()
    np.testing.assert_array_equal(jitter_colors(image, 0.0, np.random.default_rng(0)), image)


def test_eval_transform_resizes_image_and_label():
    image, label = encoded_pair(64, 128)
    out_image, out_label = EvalTransform((32, 64))(image, label)
    assert out_image.shape == (32, 64, 3) and out_label.shape == (32, 64)
    assert set(np.unique(out_label)) <= set(np.unique(label))  # nearest: no invented ids
    assert EvalTransform(None)(image, label)[0] is image
    assert resize_pair(image, None, (16, 32))[1] is None


def test_size_or_crop_is_required():
    with pytest.raises(ValueError):
        TrainTransform(size=None, crop=None)


def test_jitter_keeps_greys_grey_and_scales_brightness():
    grey = np.full((8, 8, 3), 100, np.uint8)
    out = jitter_colors(grey, 0.5, np.random.default_rng(1))
    assert (out == out[0, 0, 0]).all()  # still one grey: contrast and saturation change nothing
    brightness = np.random.default_rng(1).uniform(0.5, 1.5)
    assert abs(int(out[0, 0, 0]) - 100 * brightness) <= 1
