"""Joint image/label augmentation on uint8 numpy arrays with OpenCV.

Scale, rotation, horizontal flip and crop are composed into one affine matrix and applied with a
single ``cv2.warpAffine`` per array, which only computes the pixels of the output crop: bilinear for
the image, nearest for the label. Whatever the warp brings in from outside the source (padding,
rotated-in corners) is 0 in the image and 255 (ignore) in the label, so the label never claims a
class for a pixel that has no image behind it.

Every random draw comes from the ``numpy.random.Generator`` passed in; the loader seeds one per
sample from (seed, epoch, index), so augmentation is the same whatever the number of workers.

Example:
    >>> import numpy as np
    >>> from cityseg.data.transforms import TrainTransform
    >>> transform = TrainTransform(size=(64, 128), crop=(32, 64), scale=(0.5, 2.0), rotation=10)
    >>> image, label = np.zeros((100, 200, 3), np.uint8), np.zeros((100, 200), np.uint8)
    >>> out_image, out_label = transform(image, label, np.random.default_rng(0))
    >>> out_image.shape, out_label.shape
    ((32, 64, 3), (32, 64))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from cityseg.labels import IGNORE_INDEX

Size = tuple[int, int]


@dataclass
class TrainTransform:
    """Random scale, rotation, horizontal flip, crop and colour jitter of an image and its label.

    Args:
        size: (H, W) the source is resized to first (see ``resize_pair``); None keeps its size.
        crop: (H, W) of the output; None = ``size``.
        scale: (min, max) of the random scale factor, drawn uniformly.
        hflip: probability of a horizontal flip.
        rotation: maximum absolute rotation in degrees.
        color_jitter: brightness, contrast and saturation factors drawn in [1-s, 1+s].
        image_interpolation: OpenCV flag for the image (nearest is only useful in tests).
    """

    size: Sequence[int] | None = None
    crop: Sequence[int] | None = None
    scale: Sequence[float] = (1.0, 1.0)
    hflip: float = 0.5
    rotation: float = 0.0
    color_jitter: float = 0.0
    image_interpolation: int = cv2.INTER_LINEAR

    def __post_init__(self) -> None:
        if self.size is None and self.crop is None:
            raise ValueError("TrainTransform needs a size or a crop so that outputs share a shape")

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the augmented (image uint8 HxWx3, label uint8 HxW)."""
        image, label = resize_pair(image, label, self.size)
        if self.color_jitter > 0:
            image = jitter_colors(image, self.color_jitter, rng)
        matrix, out_size = self.sample_geometry(image.shape[:2], rng)
        return (
            warp(image, matrix, out_size, self.image_interpolation, 0),
            warp(label, matrix, out_size, cv2.INTER_NEAREST, IGNORE_INDEX),
        )

    def sample_geometry(self, source: Size, rng: np.random.Generator) -> tuple[np.ndarray, Size]:
        """A 2x3 matrix mapping source pixels (already at ``size``) to output pixels, and the
        output (H, W). A crop larger than the scaled image leaves padding at the bottom/right."""
        source_h, source_w = source
        out_h, out_w = self.crop if self.crop is not None else source
        factor = rng.uniform(self.scale[0], self.scale[1])
        scaled_h, scaled_w = round(source_h * factor), round(source_w * factor)
        flip = rng.random() < self.hflip
        angle = rng.uniform(-self.rotation, self.rotation) if self.rotation > 0 else 0.0
        top = rng.integers(0, max(scaled_h - out_h, 0) + 1)
        left = rng.integers(0, max(scaled_w - out_w, 0) + 1)
        matrix = scale_matrix(scaled_h / source_h, scaled_w / source_w)
        if flip:
            matrix = translation(scaled_w - 1, 0) @ np.diag([-1.0, 1.0, 1.0]) @ matrix
        if angle:
            center = ((scaled_w - 1) / 2, (scaled_h - 1) / 2)
            rotation = np.vstack([cv2.getRotationMatrix2D(center, angle, 1.0), [0, 0, 1]])
            matrix = rotation @ matrix
        matrix = translation(-left, -top) @ matrix
        return matrix[:2], (out_h, out_w)


@dataclass
class EvalTransform:
    """Resize an image and its label to (H, W) ``size`` as ``resize_pair`` does; None keeps them."""

    size: Sequence[int] | None = None

    def __call__(
        self, image: np.ndarray, label: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        return resize_pair(image, label, self.size)


def resize_pair(
    image: np.ndarray, label: np.ndarray | None, size: Sequence[int] | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Resize an image and its label to (H, W) ``size`` (None: unchanged). The image is averaged
    over its pixels when shrunk (INTER_AREA, no aliasing) and bilinear when enlarged; the label
    takes the nearest pixel."""
    if size is None or tuple(image.shape[:2]) == tuple(size):
        return image, label
    height, width = size
    shrinking = height * width < image.shape[0] * image.shape[1]
    image_interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    image = cv2.resize(image, (width, height), interpolation=image_interpolation)
    if label is not None:
        label = cv2.resize(label, (width, height), interpolation=cv2.INTER_NEAREST)
    return image, label


def scale_matrix(factor_h: float, factor_w: float) -> np.ndarray:
    """3x3 resize matrix with pixel-centre alignment (as ``cv2.resize``): x' = f (x + 0.5) - 0.5."""
    return np.array(
        [[factor_w, 0, (factor_w - 1) / 2], [0, factor_h, (factor_h - 1) / 2], [0, 0, 1]],
        dtype=np.float64,
    )


def translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1]], dtype=np.float64)


def warp(
    array: np.ndarray, matrix: np.ndarray, out_size: Size, interpolation: int, fill: int
) -> np.ndarray:
    """Apply a source-to-output affine ``matrix`` (2x3), filling outside pixels with ``fill``."""
    out_h, out_w = out_size
    array = np.ascontiguousarray(array)
    fill_value = (fill,) * (array.shape[2] if array.ndim == 3 else 1)
    return cv2.warpAffine(
        array,
        matrix,
        (out_w, out_h),
        flags=interpolation,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=fill_value,
    )


def jitter_colors(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Random brightness, then contrast, then saturation, each a factor in [1-s, 1+s].

    Brightness and contrast together are one affine map of the intensities, applied as a 256-entry
    lookup table; saturation blends each pixel with its grey value. All in uint8 with OpenCV, far
    faster than in float32 NumPy.
    """
    brightness, contrast, saturation = rng.uniform(1 - strength, 1 + strength, size=3)
    mean = float(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).mean()) * brightness
    levels = np.arange(256, dtype=np.float64) * brightness
    table = np.clip((levels - mean) * contrast + mean, 0, 255).round().astype(np.uint8)
    image = cv2.LUT(np.ascontiguousarray(image), table)
    grey = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    return cv2.addWeighted(image, saturation, grey, 1 - saturation, 0)
