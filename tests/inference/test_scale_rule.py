"""The scale rule: a network runs at the scale it was trained at unless told otherwise, in whole
and slide mode, through the Python API, `evaluate`, `predict` and the ONNX path; the first line
and the metrics say which scale."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from cityseg.cli import main
from cityseg.inference.options import InferenceOptions, describe_scale
from cityseg.inference.predictor import Predictor
from cityseg.predict import Segmenter
from tests.helpers import write_scenes

IMAGE = (256, 512)
TRAINED = (64, 128)


class SizeRecorder(nn.Module):
    """A 19-class 'network' that remembers the (height, width) of every input it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 19, 1)
        self.seen: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(x.shape[-2:]))
        return self.head(x)


def sizes_seen(options: InferenceOptions, training_size=TRAINED, crop_size=None) -> set:
    model = SizeRecorder()
    predictor = Predictor(model, (0.5,) * 3, (0.25,) * 3, "cpu", options, training_size, crop_size)
    image = np.zeros((*IMAGE, 3), np.uint8)
    assert predictor.predict(image).shape == IMAGE  # always back at the image's size
    return set(model.seen)


def test_a_network_trained_on_resized_images_sees_images_at_that_size_by_default():
    assert sizes_seen(InferenceOptions()) == {TRAINED}
    assert sizes_seen(InferenceOptions(mode="slide")) == {TRAINED}  # one tile: the whole image


def test_slide_mode_resizes_to_the_training_size_then_tiles_with_the_crop():
    assert sizes_seen(InferenceOptions(mode="slide"), TRAINED, crop_size=(32, 64)) == {(32, 64)}


def test_a_crop_trained_network_runs_at_each_images_own_size():
    assert sizes_seen(InferenceOptions(), None, crop_size=(64, 64)) == {IMAGE}
    assert sizes_seen(InferenceOptions(mode="slide"), None, crop_size=(64, 64)) == {(64, 64)}


@pytest.mark.parametrize(
    ("resize", "seen"),
    [("native", IMAGE), ("train", TRAINED), (0.5, (128, 256)), ((32, 48), (32, 48))],
)
def test_resize_overrides_the_rule(resize, seen):
    assert sizes_seen(InferenceOptions.from_flags(resize=resize)) == {seen}


def test_the_scale_line_says_what_runs_and_how_to_change_it():
    line = describe_scale(InferenceOptions(), TRAINED)
    assert line.startswith("scale: each image resized to 64x128, the size the network was")
    assert "--resize native" in line
    native = describe_scale(InferenceOptions.from_flags(resize="native"), TRAINED)
    assert native == (
        "scale: each image at its own size; the network was trained on images resized to 64x128"
    )


def test_a_tile_larger_than_the_image_at_training_scale_is_said_once(capsys):
    options = InferenceOptions(mode="slide", tile=(128, 256))
    predictor = Predictor(SizeRecorder(), (0.5,) * 3, (0.25,) * 3, "cpu", options, TRAINED)
    for _ in range(2):
        predictor.predict(np.zeros((*IMAGE, 3), np.uint8))
    err = capsys.readouterr().err
    assert err.count("--tile 128x256 is larger than the 64x128 image") == 1


def test_the_python_api_follows_the_rule(tiny_checkpoint):
    segmenter = Segmenter.from_checkpoint(tiny_checkpoint, "cpu")
    assert segmenter.options.resize == TRAINED
    assert segmenter.scale_line.startswith("scale: each image resized to 64x128")


@pytest.fixture(scope="module")
def large_scenes(tmp_path_factory):
    """Scenes four times the tiny checkpoint's training size on each side."""
    return write_scenes(tmp_path_factory.mktemp("large"), {"val": 2}, *IMAGE)


def evaluate(checkpoint, data, out, *flags) -> dict:
    args = ["evaluate", str(checkpoint), "--data", str(data), "--out", str(out), "--no-progress"]
    assert main([*args, "--workers", "0", *flags]) == 0
    return json.loads((out / "metrics.json").read_text())


def test_evaluate_runs_a_checkpoint_at_its_training_scale(
    tiny_checkpoint, large_scenes, tmp_path, capsys
):
    default = evaluate(tiny_checkpoint, large_scenes, tmp_path / "default")
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("scale: each image resized to 64x128, the size the network was")
    train = evaluate(tiny_checkpoint, large_scenes, tmp_path / "train", "--resize", "train")
    native = evaluate(tiny_checkpoint, large_scenes, tmp_path / "native", "--resize", "native")
    assert default["confusion_matrix"] == train["confusion_matrix"]
    assert native["confusion_matrix"] != default["confusion_matrix"]
    assert default["scale"]["network"].startswith("each image resized to 64x128")
    assert default["scale"]["scored_at"] == "each label's own resolution: 256x512 (2 images)"
    assert native["scale"]["network"].startswith("each image at its own size")
    slide = evaluate(tiny_checkpoint, large_scenes, tmp_path / "slide", "--mode", "slide")
    # one tile, the whole resized image: whole mode resizes logits back, slide mode probabilities
    assert abs(slide["pixel_accuracy"] - default["pixel_accuracy"]) < 0.01
    assert slide["inference"]["resize"] == [64, 128]


def test_predict_says_the_scale_first(tiny_checkpoint, large_scenes, tmp_path, capsys):
    photo = next(large_scenes.glob("leftImg8bit/val/*/*.png"))
    assert main(["predict", str(tiny_checkpoint), str(photo), "--out", str(tmp_path / "p")]) == 0
    assert capsys.readouterr().out.startswith("scale: each image resized to 64x128")
