"""What every segmenter offers: a photo in, trainIds out, in batches, from files and videos.

No torch import here: :class:`~cityseg.predict.onnx_segmenter.OnnxSegmenter` runs without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cityseg.predict.files import read_photo
from cityseg.predict.video import VideoResult, predict_video


class BaseSegmenter:
    """What every segmenter offers on top of its own ``predict(image) -> trainIds``."""

    def predict(self, image: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def probabilities_batch(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (N, C, H, W) float32 of a uint8 batch (N, H, W, 3)."""
        raise NotImplementedError

    def predict_video(self, source: str | Path, out_dir: str | Path, **options: Any) -> VideoResult:
        """Segment a video file or a folder of frames into ``out_dir``: an overlay video at the
        source frame rate and, as asked, a colour video and per-frame label PNGs. See
        :func:`cityseg.predict.video.predict_video` for the options (``smooth``, ``batch_size``,
        ``outputs``, ...); returns its :class:`~cityseg.predict.video.VideoResult`."""
        return predict_video(self, source, out_dir, **options)

    def predict_batch(
        self, images: Sequence[np.ndarray] | np.ndarray
    ) -> list[np.ndarray] | np.ndarray:
        """TrainIds of several photos: an array (N, H, W) for an array (N, H, W, 3), else a
        list of (H, W) masks for a list of photos (which may differ in size)."""
        if isinstance(images, np.ndarray):
            if images.ndim != 4:
                raise ValueError(f"expected a batch (N, H, W, 3), got shape {images.shape}")
            return np.stack([self.predict(image) for image in images])
        return [self.predict(image) for image in images]

    def predict_file(self, path: str | Path, input_format: str = "image") -> np.ndarray:
        """TrainIds (H, W) of a PNG or JPEG file; see :func:`read_photo` for ``input_format``."""
        return self.predict(read_photo(path, input_format))


def check_photo(image: np.ndarray) -> np.ndarray:
    """``image`` as an array, or a one-line ValueError if it is not an RGB uint8 photo (H, W, 3)
    of at least one pixel."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 photo (H, W, 3), got {image.shape} {image.dtype}")
    if image.size == 0:
        raise ValueError(
            f"expected an RGB uint8 photo (H, W, 3) of at least 1x1 pixels, got an empty one "
            f"of shape {image.shape}"
        )
    return image


def check_batch(images: np.ndarray) -> np.ndarray:
    """``images`` as an array, or a one-line ValueError if it is not a uint8 batch (N, H, W, 3)
    of at least one photo of at least one pixel."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected a uint8 batch (N, H, W, 3), got {images.shape} {images.dtype}")
    if images.size == 0:
        raise ValueError(
            "expected a uint8 batch (N, H, W, 3) of at least one photo of at least 1x1 pixels, "
            f"got an empty one of shape {images.shape}"
        )
    return images
