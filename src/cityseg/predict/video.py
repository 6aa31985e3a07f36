"""Videos and frame sequences in, segmented videos out: the video side of ``cityseg predict``.

A source is a video file OpenCV can decode (mp4, avi, mov, mkv) or a folder of frames (PNG or
JPEG, taken in name order, each turned upright by its EXIF orientation tag as a photo is).
:func:`predict_video` segments its frames in batches, optionally smooths the class probabilities
over time (an exponential moving average, ``smooth``: the weight of the current frame, 1 = none;
kept on the segmenter's device by the torch segmenter, only each frame's uint8 trainIds copied
back to the host; in numpy by the ONNX one), and writes ``<stem>_overlay.mp4`` at the source's
frame rate, and as asked ``<stem>_color.mp4`` and per-frame
``<stem>_frames/<stem>_NNNNNN_labelIds.png`` / ``_trainIds.png``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from tqdm import tqdm

from cityseg import labels, limits
from cityseg.data.io import read_rgb, write_png
from cityseg.errors import ConfigError, DataError, UserError
from cityseg.visualize.colors import colorize, overlay

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")
VIDEO_OUTPUTS = ("overlay", "color", "labelIds", "trainIds")
"""``overlay`` and ``color`` are videos; ``labelIds`` and ``trainIds`` are per-frame PNGs."""
DEFAULT_SEQUENCE_FPS = 17.0
"""Frame rate given to a folder of frames unless told: that of Cityscapes' video sequences."""


@dataclass
class VideoResult:
    """What :func:`predict_video` did: frames segmented, their rate, the files written."""

    source: Path
    frames: int
    fps: float
    seconds: float
    size: tuple[int, int]
    written: list[Path] = field(default_factory=list)

    @property
    def frames_per_second(self) -> float:
        """Frames segmented (and written) per second of wall time."""
        return self.frames / max(self.seconds, 1e-9)


class FrameSegmenter(Protocol):
    """What :func:`predict_video` needs of a segmenter. One that also has
    ``smoothed_labels(smooth)`` (a callable like :class:`ProbabilityAverage`) smooths with its
    own: the torch segmenter keeps the average on its device."""

    def predict_batch(self, images: np.ndarray) -> np.ndarray:
        """TrainIds (N, H, W) uint8 of RGB uint8 frames (N, H, W, 3)."""

    def probabilities_batch(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (N, C, H, W) float32 of RGB uint8 frames (N, H, W, 3)."""


class ProbabilityAverage:
    """The trainIds of consecutive frames whose class probabilities are averaged over time, in
    numpy: the average of frame t is ``smooth * p_t + (1 - smooth) * average_(t-1)``, that of the
    first frame its own probabilities, and each frame's trainIds are its average's argmax.

    Args:
        probabilities_batch: class probabilities (N, C, H, W) float32 of frames (N, H, W, 3).
        smooth: the weight of the current frame, in (0, 1] (1: no smoothing).
    """

    def __init__(
        self, probabilities_batch: Callable[[np.ndarray], np.ndarray], smooth: float
    ) -> None:
        self.probabilities_batch, self.smooth = probabilities_batch, smooth
        self.average: np.ndarray | None = None

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """TrainIds (N, H, W) uint8 of the next frames (N, H, W, 3) of the sequence, in order."""
        labels = []
        for probabilities in self.probabilities_batch(images):
            if self.average is None:
                self.average = probabilities
            else:
                self.average = self.smooth * probabilities + (1 - self.smooth) * self.average
            labels.append(self.average.argmax(axis=0).astype(np.uint8))
        return np.stack(labels)


def smoothed_labels(segmenter: FrameSegmenter, smooth: float) -> Callable[[np.ndarray], np.ndarray]:
    """The segmenter's own smoothing (``smoothed_labels``) where it has one, else
    :class:`ProbabilityAverage` of its probabilities."""
    own = getattr(segmenter, "smoothed_labels", None)
    if own is not None:
        return own(smooth)
    return ProbabilityAverage(segmenter.probabilities_batch, smooth)


class FrameSource:
    """The RGB uint8 frames of a video file or of a folder of images, with their frame rate."""

    def __init__(self, source: str | Path, fps: float | None = None) -> None:
        self.path = Path(source)
        self._capture = None
        self._files: list[Path] = []
        if self.path.is_dir():
            self._files = sorted(
                p for p in self.path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES
            )
            if not self._files:
                raise DataError(f"{self.path}: no PNG or JPEG frames in this folder")
            self.first = read_rgb(self._files[0], upright=True)
            self.fps = float(fps or DEFAULT_SEQUENCE_FPS)
            self.count = len(self._files)
        else:
            self.first, self.fps, self.count = self._open_video(fps)
        height, width = self.first.shape[:2]
        problem = limits.pixels_problem(width, height)
        if problem is not None:
            raise DataError(f"{self.path}: frames of {problem}")
        self.size = (height, width)

    def _open_video(self, fps: float | None) -> tuple[np.ndarray, float, int]:
        problem = limits.regular_file_problem(self.path, 2**62)
        if problem is not None:
            raise DataError(f"{self.path}: {problem}")
        if not self.path.is_file():
            raise DataError(f"{self.path}: no such video file or frame folder; check the path")
        capture = cv2.VideoCapture(str(self.path))
        ok, frame = capture.read() if capture.isOpened() else (False, None)
        if (not ok or frame is None) and capture.get(cv2.CAP_PROP_FRAME_COUNT) == 0:
            capture.release()  # opened, read, and it says so: a whole video of no frames
            raise DataError(f"{self.path}: a video without frames; there is nothing to segment")
        if not ok or frame is None:
            capture.release()
            raise DataError(
                f"{self.path}: cannot be decoded as a video (damaged, or a codec this OpenCV "
                f"build lacks); convert it, e.g. `ffmpeg -i {self.path} -c:v mpeg4 "
                f"{self.path.stem}_converted.mp4`, or extract its frames into a folder"
            )
        self._capture = capture
        rate = capture.get(cv2.CAP_PROP_FPS)
        rate = float(fps or (rate if np.isfinite(rate) and rate > 0 else 25.0))
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), rate, count

    def frames(self) -> Iterator[np.ndarray]:
        """Every frame in order (the first one included), each (H, W, 3) RGB uint8."""
        yield self.first
        if self._capture is not None:
            while True:
                ok, frame = self._capture.read()
                if not ok:
                    break
                yield self._checked(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), self.path)
            self._capture.release()
            return
        for path in self._files[1:]:
            yield self._checked(read_rgb(path, upright=True), path)

    def _checked(self, frame: np.ndarray, where: Path) -> np.ndarray:
        if frame.shape[:2] != self.size:
            raise DataError(
                f"{where}: a frame of {frame.shape[1]}x{frame.shape[0]} in a sequence of "
                f"{self.size[1]}x{self.size[0]}; all frames of a video must have one size"
            )
        return frame


def is_video_source(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def video_outputs(
    source: str | Path, out_dir: str | Path, outputs: Sequence[str] = ("overlay",)
) -> list[Path]:
    """Where :func:`predict_video` writes each of ``outputs`` for ``source``: the videos
    ``<stem>_overlay.mp4`` and ``<stem>_color.mp4``, and for the per-frame label PNGs the folder
    ``<stem>_frames`` (one for both kinds)."""
    stem = Path(source).stem
    folder = Path(out_dir) / f"{stem}_frames"
    return [
        folder if kind in ("labelIds", "trainIds") else Path(out_dir) / f"{stem}_{kind}.mp4"
        for kind in outputs
    ]


def open_writer(path: Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    """An MPEG-4 video writer for RGB frames of ``size`` (H, W), or a UserError saying why not."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size[::-1])
    if not writer.isOpened():
        raise UserError(
            f"{path}: OpenCV cannot write an MPEG-4 video here; check the folder, or write "
            "per-frame PNGs with --outputs labelIds"
        )
    return writer


def predict_video(
    segmenter: FrameSegmenter,
    source: str | Path,
    out_dir: str | Path,
    *,
    outputs: Sequence[str] = ("overlay",),
    batch_size: int = 4,
    smooth: float | None = None,
    alpha: float = 0.5,
    fps: float | None = None,
    progress: bool = True,
) -> VideoResult:
    """Segment every frame of ``source`` and write the videos and frames ``outputs`` names.

    Args:
        segmenter: a :class:`Segmenter` or :class:`OnnxSegmenter`.
        source: a video file or a folder of frames (name order).
        out_dir: the output folder (created).
        outputs: a subset of :data:`VIDEO_OUTPUTS`.
        batch_size: frames per forward pass.
        smooth: weight of the current frame in an exponential moving average of the class
            probabilities over time (0 < smooth <= 1; 1 = no smoothing); None: none.
        alpha: opacity of the colours in the overlay.
        fps: frame rate of the output (default: the video's own; 17 for a folder of frames).
        progress: show a progress bar.

    Raises:
        DataError: the source cannot be opened or decoded (one line naming it and what to do).
        ConfigError: an invalid option.
    """
    unknown = sorted(set(outputs) - set(VIDEO_OUTPUTS))
    if unknown or not outputs:
        raise ConfigError(f"video outputs {unknown or '[]'}: choose among {list(VIDEO_OUTPUTS)}")
    if smooth is not None and not 0 < smooth <= 1:
        raise ConfigError(f"smooth {smooth}: the weight of the current frame, in (0, 1]")
    if batch_size < 1:
        raise ConfigError(f"batch size {batch_size}: must be at least 1")
    if fps is not None and not 0 < fps <= 1000:
        raise ConfigError(f"fps {fps}: give a frame rate in (0, 1000]")
    frames = FrameSource(source, fps)
    out_dir, stem = Path(out_dir), frames.path.stem
    planned = dict(zip(VIDEO_OUTPUTS, video_outputs(source, out_dir, VIDEO_OUTPUTS), strict=True))
    writers = {
        kind: open_writer(planned[kind], frames.fps, frames.size)
        for kind in ("overlay", "color")
        if kind in outputs
    }
    written = [planned[kind] for kind in writers]
    frame_dir = planned["labelIds"]
    if smooth is None:
        label_frames = segmenter.predict_batch
    else:
        label_frames = smoothed_labels(segmenter, smooth)
    count, started = 0, time.perf_counter()
    bar = tqdm(total=frames.count or None, desc=stem, unit="frame", disable=not progress)
    try:
        for batch in _batches(frames.frames(), batch_size):
            predicted = list(np.asarray(label_frames(np.stack(batch))))
            for frame, train_ids in zip(batch, predicted, strict=True):
                if "overlay" in writers:
                    picture = overlay(frame, train_ids, alpha)
                    writers["overlay"].write(cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
                if "color" in writers:
                    writers["color"].write(cv2.cvtColor(colorize(train_ids), cv2.COLOR_RGB2BGR))
                for kind in ("labelIds", "trainIds"):
                    if kind in outputs:
                        ids = train_ids if kind == "trainIds" else None
                        ids = labels.train_ids_to_label_ids(train_ids) if ids is None else ids
                        path = frame_dir / f"{stem}_{count:06d}_{kind}.png"
                        write_png(path, ids)
                        written.append(path)
                count += 1
            bar.update(len(batch))
    finally:
        bar.close()
        for writer in writers.values():
            writer.release()
    seconds = time.perf_counter() - started
    return VideoResult(frames.path, count, frames.fps, seconds, frames.size, written)


def _batches(frames: Iterator[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    batch: list[np.ndarray] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
