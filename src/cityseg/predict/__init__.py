"""Segment photos with a trained model: the Python API behind ``cityseg predict``.

* :class:`Segmenter`: a checkpoint run with PyTorch (whole image, sliding window, flip and
  multi-scale TTA);
* :class:`OnnxSegmenter`: a model written by ``cityseg export`` run with onnxruntime, no torch;
* :func:`collect_inputs` and :func:`predict_files`: photos from files, folders and globs to
  ``<stem>_labelIds.png`` (official submission format), ``_trainIds``, ``_color`` and ``_overlay``;
* :func:`predict_video` (or ``segmenter.predict_video``): a video file or a folder of frames to
  ``<stem>_overlay.mp4`` at the source frame rate (optionally smoothed over time).

Importing this package does not import torch: :class:`Segmenter` (PyTorch) loads on first use.

Example:
    >>> import numpy as np
    >>> from cityseg.predict import Segmenter
    >>> segmenter = Segmenter.from_checkpoint("runs/demo/checkpoint_best.pt")  # doctest: +SKIP
    >>> segmenter.predict(np.zeros((128, 256, 3), np.uint8)).shape  # doctest: +SKIP
    (128, 256)
"""

from __future__ import annotations

import importlib

from cityseg.predict.base import BaseSegmenter
from cityseg.predict.files import (
    INPUT_FORMATS,
    OUTPUTS,
    collect_inputs,
    predict_files,
    read_photo,
    write_prediction,
)
from cityseg.predict.onnx_segmenter import OnnxSegmenter
from cityseg.predict.video import VideoResult, predict_video
from cityseg.pretrained import available_pretrained, pretrained_path

__all__ = [
    "INPUT_FORMATS",
    "OUTPUTS",
    "BaseSegmenter",
    "OnnxSegmenter",
    "Segmenter",
    "available_pretrained",
    "collect_inputs",
    "predict_files",
    "pretrained_path",
    "predict_video",
    "read_photo",
    "VideoResult",
    "write_prediction",
]


def __getattr__(name: str) -> object:
    # Loaded on first use: the ONNX path (cityseg predict --onnx) runs without torch.
    if name == "Segmenter":
        return importlib.import_module("cityseg.predict.segmenter").Segmenter
    raise AttributeError(f"module 'cityseg.predict' has no attribute {name!r}")
