"""Every size a user gives has a bound, and input at the edge gets one line, not a hang, a
memory blow-up or a traceback: YAML aliases of aliases ("billion laughs"), keys given twice,
image sizes, empty photos, all-void ground truth, a bad ``CITYSEG_MAX_PIXELS``, a video without
frames."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from cityseg.config import MAX_YAML_VALUES, load_config
from cityseg.data.io import read_rgb
from cityseg.errors import ConfigError, DataError
from cityseg.predict.segmenter import Segmenter
from cityseg.predict.video import FrameSource
from cityseg.sizes import MAX_SIDE
from tests.helpers import in_process, save_tiny_checkpoint


def laughs(levels: int = 9) -> str:
    """A YAML flow list of nested aliases: ~460 bytes that stand for 10^9 values."""
    text = "&l0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"
    for level in range(1, levels + 1):
        text = f"&l{level} [{text}" + f", *l{level - 1}" * 9 + "]"
    return text


def one_line(error: ConfigError) -> str:
    (line,) = error.problems
    assert len(line) < 400
    return line


def test_a_billion_laughs_config_file_is_refused_at_once(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(f"data:\n  size: {laughs()}\n")
    assert path.stat().st_size < 600
    started = time.perf_counter()
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert time.perf_counter() - started < 1
    line = one_line(caught.value)
    assert line.startswith(f"{path}: expands to ") and f"{MAX_YAML_VALUES:,}" in line


def test_a_billion_laughs_override_is_refused_at_once():
    started = time.perf_counter()
    with pytest.raises(ConfigError) as caught:
        load_config(None, [f"data.size={laughs()}"])
    assert time.perf_counter() - started < 1
    line = one_line(caught.value)
    assert line.startswith("override 'data.size=&l9 [") and "...': expands to" in line


def test_an_alias_that_contains_itself_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("data:\n  size: &loop [32, *loop]\n")
    with pytest.raises(ConfigError, match="nested more than .* contains itself"):
        load_config(path)


def test_anchors_within_the_bound_still_work(tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text("data:\n  size: &side [64, 128]\n  crop: *side\n")
    assert load_config(path).data.crop == [64, 128]


def test_a_key_given_twice_is_an_error_naming_it_and_the_file(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("train:\n  lr: 0.1\n  epochs: 3\n  lr: 0.2\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert one_line(caught.value) == (
        f"{path}: not valid YAML (the key 'lr' is given twice, on lines 2 and 4); fix the file"
    )
    with pytest.raises(ConfigError, match="'train' is given twice"):
        load_config(None, ["train.lr=0.1", "data.size={train: 1, train: 2}"])


def test_a_merge_key_may_override(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text("data:\n  <<: {hflip: 0.1}\n  hflip: 0.2\n")
    assert load_config(path).data.hflip == 0.2


@pytest.mark.parametrize(
    ("override", "bound"),
    [
        ("data.size=[100000,100000]", f"each side from 32 to {MAX_SIDE}"),
        ("data.crop=[64,100000]", f"each side from 32 to {MAX_SIDE}"),
        ("data.size=[16000,16000]", "more than the 100,000,000 pixel limit"),
        ("data.scale=[1,100]", f"a side above {MAX_SIDE}"),
        ("model.base_width=1024", "more than 8192"),
    ],
)
def test_sizes_in_the_configuration_are_bounded(override, bound):
    with pytest.raises(ConfigError) as caught:
        load_config(None, [override])
    assert bound in caught.value.problems[0]


def test_a_long_value_is_cut_in_the_message():
    with pytest.raises(ConfigError) as caught:
        load_config(None, [f"data.size={list(range(5000))}"])
    line = one_line(caught.value)
    assert line.endswith("...]") and len(line) < 200


def test_train_with_a_huge_size_is_one_line(tmp_path, capsys):
    status = in_process("train", "--out", str(tmp_path / "run"), "data.size=[100000,100000]")
    error = capsys.readouterr().err.strip()
    assert status == 2 and len(error.splitlines()) == 1 and str(MAX_SIDE) in error
    assert not (tmp_path / "run").exists()


def test_score_on_all_void_ground_truth_is_one_line(tmp_path, capsys):
    """Every ground-truth pixel unlabelled: no score exists; one line says why, exit 2."""
    frame = "testcity_000000_000019"
    truth = tmp_path / "gt" / "gtFine" / "val" / "testcity"
    truth.mkdir(parents=True)
    cv2.imwrite(str(truth / f"{frame}_gtFine_labelIds.png"), np.zeros((16, 32), np.uint8))
    predictions = tmp_path / "pred"
    predictions.mkdir()
    cv2.imwrite(str(predictions / f"{frame}_labelIds.png"), np.full((16, 32), 7, np.uint8))
    status = in_process("score", str(predictions), "--gt", str(tmp_path / "gt"), "--workers", "1")
    error = capsys.readouterr().err.strip()
    assert status == 2 and len(error.splitlines()) == 1
    assert "(all void)" in error and "nothing to score" in error


@pytest.fixture(scope="module")
def segmenter_file(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("segmenter")
    return save_tiny_checkpoint(folder / "tiny.pt", (32, 64))


@pytest.fixture(scope="module")
def segmenter(segmenter_file) -> Segmenter:
    return Segmenter.from_checkpoint(segmenter_file, "cpu")


@pytest.mark.parametrize("shape", [(0, 0, 3), (0, 16, 3), (16, 0, 3)])
def test_predict_on_an_empty_photo_is_one_line(segmenter, shape):
    with pytest.raises(ValueError, match=r"^expected .* at least 1x1 pixels, got an empty one"):
        segmenter.predict(np.zeros(shape, np.uint8))
    with pytest.raises(ValueError, match=r"at least 1x1 pixels, got an empty one"):
        segmenter.predict_batch(np.zeros((2, *shape), np.uint8))
    with pytest.raises(ValueError, match=r"at least 1x1 pixels, got an empty one"):
        segmenter.probabilities_batch(np.zeros((0, 16, 16, 3), np.uint8))
    assert segmenter.predict(np.zeros((1, 1, 3), np.uint8)).shape == (1, 1)


def test_a_video_without_frames_says_so(tmp_path):
    """A whole recording of zero frames is not called damaged; a damaged one still is."""
    empty = tmp_path / "empty.avi"
    writer = cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 16))
    assert writer.isOpened()
    writer.release()
    with pytest.raises(DataError) as caught:
        FrameSource(empty)
    assert caught.value.problems == [
        f"{empty}: a video without frames; there is nothing to segment"
    ]
    damaged = tmp_path / "damaged.avi"
    damaged.write_bytes(b"RIFF" + bytes(200))
    with pytest.raises(DataError, match="cannot be decoded as a video"):
        FrameSource(damaged)


@pytest.mark.parametrize("value", ["abc", "0", "-5", "1e8", "1.5", "99999999999999999999999"])
def test_a_bad_max_pixels_variable_is_one_line_naming_it(tmp_path, monkeypatch, value):
    """Never silently the default: reading an image and checking a configuration both say
    which variable is wrong and what it accepts."""
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.zeros((8, 8, 3), np.uint8))
    monkeypatch.setenv("CITYSEG_MAX_PIXELS", value)
    for action in (lambda: read_rgb(photo), lambda: load_config(None, [])):
        with pytest.raises(ConfigError) as caught:
            action()
        line = one_line(caught.value)
        assert line.startswith(f"CITYSEG_MAX_PIXELS={value!r}: ") and "a whole number" in line


def test_the_max_pixels_variable_sets_the_bound(tmp_path, monkeypatch):
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.zeros((8, 8, 3), np.uint8))
    monkeypatch.setenv("CITYSEG_MAX_PIXELS", "")  # empty: unset
    assert read_rgb(photo).shape == (8, 8, 3)
    monkeypatch.setenv("CITYSEG_MAX_PIXELS", "63")
    with pytest.raises(DataError, match="more than the 63 pixel limit"):
        read_rgb(photo)
    with pytest.raises(ConfigError, match="more than the 63 pixel limit"):
        load_config(None, [])


def test_predict_with_a_bad_max_pixels_variable_is_one_line(
    segmenter_file, tmp_path, capsys, monkeypatch
):
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.zeros((32, 64, 3), np.uint8))
    monkeypatch.setenv("CITYSEG_MAX_PIXELS", "lots")
    status = in_process("predict", str(segmenter_file), str(photo), "--out", str(tmp_path / "o"))
    error = capsys.readouterr().err.strip()
    assert status == 2 and len(error.splitlines()) == 1 and "CITYSEG_MAX_PIXELS='lots'" in error
