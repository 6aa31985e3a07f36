"""Videos in, videos out: a clip made of generated scenes is segmented frame by frame into an
overlay video with the source's frame count, size and rate, whose frames match per-frame
predictions (up to codec loss); smoothing with ALPHA=1 is no smoothing; a damaged video is one
line; a folder of frames works like a video; the CLI and the ONNX model do it too."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cityseg.cli import main
from cityseg.data.io import read_label_png, read_rgb
from cityseg.errors import DataError
from cityseg.predict import OnnxSegmenter, Segmenter
from cityseg.predict.video import ProbabilityAverage, predict_video
from cityseg.visualize.colors import overlay

FPS = 12.0
FRAMES = 7


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> list[np.ndarray]:
    root = tmp_path_factory.mktemp("scenes")
    assert main(["data", "generate", str(root), "--train", str(FRAMES), "--val", "0",
                 "--test", "0", "--size", "64x128"]) == 0  # fmt: skip
    return [read_rgb(p) for p in sorted(root.glob("leftImg8bit/train/*/*.png"))]


@pytest.fixture(scope="module")
def clip(scenes, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (128, 64))
    for frame in scenes:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture(scope="module")
def segmenter(tiny_checkpoint) -> Segmenter:
    return Segmenter.from_checkpoint(tiny_checkpoint, device="cpu")


def read_video(path: Path) -> tuple[list[np.ndarray], float]:
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), path
    fps, frames = capture.get(cv2.CAP_PROP_FPS), []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    return frames, fps


def test_the_overlay_video_matches_per_frame_predictions(segmenter, clip, tmp_path):
    result = segmenter.predict_video(clip, tmp_path, batch_size=3, progress=False)
    assert result.frames == FRAMES and result.fps == pytest.approx(FPS)
    assert result.frames_per_second > 0
    frames, fps = read_video(tmp_path / "clip_overlay.mp4")
    assert len(frames) == FRAMES and fps == pytest.approx(FPS)
    assert frames[0].shape == (64, 128, 3)
    sources, _ = read_video(clip)  # the decoded source frames (themselves codec-lossy)
    for written, source in zip(frames, sources, strict=True):
        expected = overlay(source, segmenter.predict(source))
        assert np.abs(written.astype(int) - expected).mean() < 15  # codec loss, not another frame


def test_smoothing_with_alpha_one_is_no_smoothing(segmenter, clip, tmp_path):
    plain = segmenter.predict_video(clip, tmp_path / "plain", outputs=["trainIds"],
                                    progress=False)  # fmt: skip
    smoothed = segmenter.predict_video(clip, tmp_path / "one", outputs=["trainIds"], smooth=1.0,
                                       progress=False)  # fmt: skip
    assert len(plain.written) == len(smoothed.written) == FRAMES
    for a, b in zip(plain.written, smoothed.written, strict=True):
        assert np.array_equal(read_label_png(a), read_label_png(b))
    heavy = segmenter.predict_video(clip, tmp_path / "heavy", outputs=["trainIds"], smooth=0.2,
                                    progress=False)  # fmt: skip
    assert read_label_png(heavy.written[0]).shape == (64, 128)


class HostSmoothing:
    """A segmenter that smooths in numpy: it has only the probabilities of the torch one."""

    def __init__(self, segmenter: Segmenter) -> None:
        self.predict_batch = segmenter.predict_batch
        self.probabilities_batch = segmenter.probabilities_batch


def test_smoothing_on_the_device_gives_the_host_average_and_copies_back_only_labels(
    segmenter, clip, tmp_path, monkeypatch
):
    host = predict_video(HostSmoothing(segmenter), clip, tmp_path / "host", outputs=["trainIds"],
                         smooth=0.3, batch_size=3, progress=False)  # fmt: skip
    copied = []
    to_numpy = torch.Tensor.numpy

    def counted(tensor, *args, **kwargs):
        copied.append(tensor.dtype)
        return to_numpy(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "numpy", counted)
    device = segmenter.predict_video(clip, tmp_path / "device", outputs=["trainIds"], smooth=0.3,
                                     batch_size=3, progress=False)  # fmt: skip
    assert copied == [torch.uint8] * 3  # one copy of labels per batch of 3, 3, 1 frames
    assert len(host.written) == len(device.written) == FRAMES
    for a, b in zip(host.written, device.written, strict=True):
        assert np.array_equal(read_label_png(a), read_label_png(b))
    plain = segmenter.predict_video(clip, tmp_path / "plain", outputs=["trainIds"],
                                    progress=False)  # fmt: skip
    smoothed = [read_label_png(path) for path in device.written]
    assert any(not np.array_equal(read_label_png(a), b)
               for a, b in zip(plain.written, smoothed, strict=True))  # fmt: skip


def test_the_host_average_weighs_the_current_frame_by_smooth():
    frames = [np.array([[[0.6]], [[0.4]]], np.float32), np.array([[[0.2]], [[0.8]]], np.float32)]
    average = ProbabilityAverage(lambda images: np.stack([frames[int(i)] for i in images]), 0.2)
    assert average(np.array([0])).tolist() == [[[0]]]
    assert average(np.array([1])).tolist() == [[[0]]]  # 0.2 * (0.2, 0.8) + 0.8 * (0.6, 0.4)
    assert average.average.ravel() == pytest.approx([0.52, 0.48])
    assert average(np.array([1, 1])).tolist() == [[[1]], [[1]]]  # (0.456, 0.544), then more


def test_a_folder_of_frames_is_a_sequence(segmenter, scenes, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, frame in enumerate(scenes):
        cv2.imwrite(str(folder / f"f{index:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    result = segmenter.predict_video(folder, tmp_path / "out", outputs=["overlay", "color"],
                                     fps=5, progress=False)  # fmt: skip
    frames, fps = read_video(tmp_path / "out" / "frames_color.mp4")
    assert len(frames) == FRAMES and fps == pytest.approx(5)
    assert result.size == (64, 128)


def test_a_damaged_video_is_one_line(segmenter, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(DataError) as error:
        segmenter.predict_video(broken, tmp_path / "out", progress=False)
    assert len(error.value.problems) == 1
    assert "broken.mp4: cannot be decoded as a video" in error.value.problems[0]
    assert "ffmpeg" in error.value.problems[0]


def test_the_cli_segments_a_clip_with_a_checkpoint_and_onnx(tiny_checkpoint, clip, tmp_path,
                                                            capsys):  # fmt: skip
    out = tmp_path / "out"
    assert main(["predict", str(tiny_checkpoint), str(clip), "--out", str(out),
                 "--no-progress", "--smooth", "0.5"]) == 0  # fmt: skip
    assert f"segmented {FRAMES} frames of {clip}" in capsys.readouterr().out
    assert len(read_video(out / "clip_overlay.mp4")[0]) == FRAMES
    onnx = tmp_path / "model.onnx"
    assert main(["export", str(tiny_checkpoint), "--out", str(onnx)]) == 0
    onnx_out = tmp_path / "onnx"
    result = OnnxSegmenter(onnx).predict_video(clip, onnx_out, outputs=["labelIds"],
                                               smooth=0.7, progress=False)  # fmt: skip
    assert result.frames == FRAMES and len(result.written) == FRAMES
    assert main(["predict", str(tiny_checkpoint), str(tmp_path / "missing.mp4"), "--out",
                 str(out), "--no-progress"]) == 2  # fmt: skip
