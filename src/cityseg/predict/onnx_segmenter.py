"""Run a model exported by ``cityseg export`` with onnxruntime: numpy and OpenCV, no torch.

The exported graph (see :mod:`cityseg.export`) takes what an image decoder gives:

* input ``image``: uint8 RGB, channels last, (N, H, W, 3), any batch size, height and width;
* output ``logits``: float32 (N, C, H, W), at the input's size;
* output ``labels``: uint8 trainIds (N, H, W), the argmax of the logits.

The normalisation (``/ 255``, mean and std of the checkpoint) and the padding to a multiple of
``2**depth`` happen inside the graph. Its ``metadata_props`` hold, as JSON strings, the class names,
palette, normalisation, training input size (``input_size``), smallest size (``min_size``) and the
model configuration, under the format tag ``cityseg_format = "cityseg-onnx-v1"``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cityseg import labels
from cityseg.errors import CheckpointError, ConfigError
from cityseg.inference.options import InferenceOptions, describe_scale, scaled_size
from cityseg.predict.base import BaseSegmenter, check_photo

ONNX_FORMAT = "cityseg-onnx-v1"
INPUT_NAME = "image"
OUTPUT_NAMES = ("logits", "labels")


class OnnxSegmenter(BaseSegmenter):
    """Segment RGB photos into Cityscapes trainIds with an exported ONNX model.

    Whole-image inference only, with the same resize and flip / multi-scale TTA options as
    :class:`cityseg.predict.Segmenter` (:class:`~cityseg.inference.options.InferenceOptions`; the
    photo is resized with OpenCV rather than torch, so results with a resize or TTA can differ
    from the checkpoint's on a few boundary pixels).

    Args:
        path: the ``.onnx`` file written by ``cityseg export``.
        device: "auto" (every provider onnxruntime offers here but TensorRT, CUDA first), "cpu",
            "cuda", "cuda:N", "tensorrt" or "tensorrt:N" (see ``session_providers``).
        options: whole mode only (sliding-window inference needs the checkpoint), in fp32;
            ``resize``, ``scale``, ``flip`` and ``scales`` apply (default: each image resized to
            the training size the model records, else at its own size).

    Example:
        >>> from cityseg.predict import OnnxSegmenter
        >>> segmenter = OnnxSegmenter("model.onnx")  # doctest: +SKIP
        >>> train_ids = segmenter.predict_file("photo.png")  # doctest: +SKIP
    """

    def __init__(
        self, path: str | Path, device: str = "auto", options: InferenceOptions | None = None
    ) -> None:
        options = options or InferenceOptions()
        if options.mode != "whole" or options.tile is not None:
            raise ConfigError("ONNX models run in whole mode only; use the checkpoint for slide")
        if options.precision != "fp32":
            raise ConfigError(f"precision {options.precision} is not available with ONNX; use fp32")
        self.path = Path(path)
        self.session = _open_session(self.path, device)
        self.metadata = read_metadata(self.session, self.path)
        self.class_names = self.metadata["class_names"]
        self.palette = np.asarray(self.metadata["palette"], dtype=np.uint8)
        self.normalization = self.metadata["normalization"]
        self.input_size = tuple(self.metadata["input_size"] or ()) or None
        self.min_size = int(self.metadata.get("min_size") or 1)
        crop_size = tuple(self.metadata.get("crop_size") or ()) or None
        self.options = options.for_training_size(self.input_size, crop_size)
        self.scale_line = describe_scale(options, self.input_size, crop_size)
        """The scale the network runs at, why, and how to change it (one line)."""

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Raw logits (N, C, H, W) float32 of a uint8 batch (N, H, W, 3), as the graph runs."""
        return self.session.run(["logits"], {INPUT_NAME: np.ascontiguousarray(images)})[0]

    def predict(self, image: np.ndarray) -> np.ndarray:
        """TrainIds (H, W) uint8 of one RGB uint8 photo (H, W, 3)."""
        image = check_photo(image)
        size = image.shape[:2]
        flips = (False, True) if self.options.flip else (False,)
        passes = [(scale, flip) for scale in self.options.scales for flip in flips]
        if passes == [(1.0, False)] and self._run_size(size, 1.0) == size:
            return self.session.run(["labels"], {INPUT_NAME: np.ascontiguousarray(image[None])})[0][
                0
            ]
        return self.probabilities(image).argmax(axis=0).astype(np.uint8)

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """Class probabilities (C, H, W) float32 of one RGB uint8 photo, averaged over the
        passes (scales, flips) of the options."""
        image = check_photo(image)
        size = image.shape[:2]
        flips = (False, True) if self.options.flip else (False,)
        total = np.zeros((len(self.class_names), *size), dtype=np.float32)
        for scale in self.options.scales:
            for flip in flips:
                photo = resize_photo(image, self._run_size(size, scale))
                logits = self.logits((photo[:, ::-1] if flip else photo)[None])[0]
                total += softmax(resize_map(logits[:, :, ::-1] if flip else logits, size))
        return total / self.options.passes

    def probabilities_batch(self, images: np.ndarray) -> np.ndarray:
        return np.stack([self.probabilities(image) for image in np.asarray(images)])

    def _run_size(self, size: tuple[int, int], scale: float) -> tuple[int, int]:
        base = self.options.resize or scaled_size(size, self.options.scale)
        height, width = scaled_size(base, scale)
        return max(height, self.min_size), max(width, self.min_size)


def resize_photo(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an RGB uint8 photo to (height, width) as the PyTorch path does (bilinear,
    antialiased when it shrinks: :func:`resample_weights`), rounded back to uint8."""
    if image.shape[:2] == tuple(size):
        return image
    resized = resample(image.astype(np.float32), size)
    return np.clip(np.rint(resized), 0, 255).astype(np.uint8)


def resample(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, C) float32 resized to (*size, C) by :func:`resample_weights` along each axis."""
    rows = resample_weights(array.shape[0], size[0])
    columns = resample_weights(array.shape[1], size[1])
    resized = np.tensordot(rows, array, axes=(1, 0))  # (out_h, W, C)
    return np.tensordot(columns, resized, axes=(1, 1)).transpose(1, 0, 2)  # (out_h, out_w, C)


def resample_weights(length: int, out_length: int) -> np.ndarray:
    """(out_length, length) weights of torch's bilinear ``F.interpolate(..., antialias=True)``
    along one axis: a triangle filter as wide as the scale when it shrinks, plain bilinear with
    pixel centres aligned when it grows, normalised over the pixels inside the image."""
    scale = length / out_length
    support = max(scale, 1.0)
    centres = scale * (np.arange(out_length) + 0.5)
    first = np.maximum((centres - support + 0.5).astype(np.int64), 0)
    last = np.minimum((centres + support + 0.5).astype(np.int64), length)
    pixels = np.arange(length)
    distance = (pixels[None, :] - centres[:, None] + 0.5) / support
    weights = np.clip(1.0 - np.abs(distance), 0.0, None)
    inside = (pixels[None, :] >= first[:, None]) & (pixels[None, :] < last[:, None])
    weights = np.where(inside, weights, 0.0)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def resize_map(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of logits (C, H, W) to (C, *size), pixel centres aligned like torch."""
    if maps.shape[1:] == tuple(size):
        return np.ascontiguousarray(maps)
    channels_last = np.ascontiguousarray(maps.transpose(1, 2, 0))
    resized = cv2.resize(channels_last, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return resized.reshape(*size, -1).transpose(2, 0, 1)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the class axis 0 of (C, H, W) logits."""
    exponentials = np.exp(logits - logits.max(axis=0, keepdims=True))
    return exponentials / exponentials.sum(axis=0, keepdims=True)


CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
GPU_PROVIDERS = {"cuda": [CUDA], "tensorrt": [TENSORRT, CUDA]}


def session_providers(device: str, available: Sequence[str]) -> list:
    """The execution providers (with their options) to ask onnxruntime for on ``device``.

    * "cpu": the CPU;
    * "cuda" or "cuda:N": CUDA on GPU N (default 0), then the CPU for what CUDA cannot run;
    * "tensorrt" or "tensorrt:N": TensorRT first, only when asked for: it builds an engine for
      each new input size, minutes for every photo size a folder holds;
    * "auto": every provider onnxruntime offers here but TensorRT, CUDA first.
    """
    if device == "cpu":
        return [CPU]
    if device == "auto":
        others = [p for p in available if p not in (TENSORRT, CUDA, CPU)]
        return ([CUDA] if CUDA in available else []) + others + [CPU]
    kind, colon, index = device.partition(":")
    if kind not in GPU_PROVIDERS or (colon and not index.isdigit()):
        raise ConfigError(
            f"--device {device}: unknown device; use auto, cpu, cuda, cuda:N, tensorrt or "
            "tensorrt:N"
        )
    missing = [p for p in GPU_PROVIDERS[kind] if p not in available]
    if missing:
        name = missing[0].removesuffix("ExecutionProvider")
        raise ConfigError(f"--device {device}: onnxruntime has no {name} here; use cpu or auto")
    options = {"device_id": int(index or 0)}
    return [(provider, options) for provider in GPU_PROVIDERS[kind]] + [CPU]


def _open_session(path: Path, device: str):
    import onnxruntime  # loaded on first use: a model that is never run needs no runtime

    if not path.is_file():
        raise CheckpointError(f"{path}: ONNX model not found; write one with `cityseg export`")
    providers = session_providers(device, onnxruntime.get_available_providers())
    try:
        session = onnxruntime.InferenceSession(str(path), providers=providers)
    except Exception as error:  # onnxruntime raises several unrelated types for a bad file
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error)
        raise CheckpointError(
            f"{path}: not a loadable ONNX model ({reason}); re-export it with `cityseg export`"
        ) from None
    wanted = providers[0] if isinstance(providers[0], str) else providers[0][0]
    active = session.get_providers()
    if wanted not in active:  # onnxruntime falls back on its own, saying little
        print(
            f"warning: {path}: onnxruntime could not start {wanted} (a missing library?); "
            f"running on {active[0] if active else CPU}",
            file=sys.stderr,
            flush=True,
        )
    return session


def read_metadata(session, path: Path) -> dict[str, Any]:
    """The cityseg metadata of an open session, parsed from JSON.

    Raises:
        CheckpointError: the model was not written by ``cityseg export``.
    """
    props = session.get_modelmeta().custom_metadata_map
    inputs = [(node.name, node.type) for node in session.get_inputs()]
    if props.get("cityseg_format") != ONNX_FORMAT or inputs != [(INPUT_NAME, "tensor(uint8)")]:
        raise CheckpointError(
            f"{path}: not an ONNX model written by `cityseg export` (format {ONNX_FORMAT}, "
            f"uint8 input {INPUT_NAME!r}); export the checkpoint with `cityseg export`"
        )
    metadata = {key: json.loads(value) for key, value in props.items() if key != "cityseg_format"}
    metadata.setdefault("class_names", list(labels.CLASS_NAMES))
    metadata.setdefault("palette", labels.PALETTE.tolist())
    metadata.setdefault("input_size", None)
    return metadata
