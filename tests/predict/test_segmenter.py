"""The prediction API: Segmenter, shipped-checkpoint lookup, input collection and output files."""

from __future__ import annotations

import doctest
from pathlib import Path

import cv2
import numpy as np
import pytest

import cityseg.predict.segmenter as segmenter_module
import cityseg.pretrained as pretrained_module
from cityseg import labels
from cityseg.data.io import read_label_png, read_rgb
from cityseg.errors import CheckpointError, ConfigError, DataError, UserError
from cityseg.inference.options import InferenceOptions
from cityseg.normalization import IMAGENET_NORMALIZATION
from cityseg.predict import (
    OUTPUTS,
    Segmenter,
    available_pretrained,
    collect_inputs,
    predict_files,
    read_photo,
)
from cityseg.predict.files import output_stems
from tests.helpers.contracts import SegmenterContract

OFFICIAL_LABEL_IDS = set(labels.TRAIN_ID_TO_LABEL_ID[: labels.NUM_CLASSES].tolist())
NORMALIZATION = IMAGENET_NORMALIZATION  # the fixture's


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint) -> Path:
    return tiny_checkpoint


@pytest.fixture(scope="module")
def segmenter(checkpoint) -> Segmenter:
    return Segmenter.from_checkpoint(checkpoint, device="cpu")


def random_photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_photo(path: Path, photo: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    return path


def test_the_segmenter_docstring_example_runs():
    result = doctest.testmod(segmenter_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 4 and result.failed == 0


def test_from_checkpoint_carries_the_checkpoint_description(segmenter):
    assert segmenter.input_size == (64, 128)
    assert segmenter.class_names == list(labels.CLASS_NAMES)
    assert segmenter.normalization == NORMALIZATION
    assert segmenter.palette.shape == (19, 3) and str(segmenter.device) == "cpu"


@pytest.mark.parametrize("size", [(64, 128), (37, 101), (20, 50)])
def test_predict_gives_train_ids_at_the_photo_size(segmenter, size):
    train_ids = segmenter.predict(random_photo(*size))
    assert train_ids.shape == size and train_ids.dtype == np.uint8
    assert train_ids.max() < labels.NUM_CLASSES


def test_predict_batch_agrees_with_predict_for_arrays_and_lists(segmenter):
    photos = np.stack([random_photo(40, 72, seed) for seed in range(3)])
    singles = [segmenter.predict(photo) for photo in photos]
    batch = segmenter.predict_batch(photos)
    assert isinstance(batch, np.ndarray) and batch.shape == (3, 40, 72)
    np.testing.assert_array_equal(batch, np.stack(singles))
    mixed = segmenter.predict_batch([photos[0], random_photo(33, 45)])
    assert [m.shape for m in mixed] == [(40, 72), (33, 45)]
    np.testing.assert_array_equal(mixed[0], singles[0])


def test_predict_rejects_what_is_not_an_rgb_uint8_photo(segmenter):
    with pytest.raises(ValueError, match="RGB uint8"):
        segmenter.predict(np.zeros((40, 40, 3), np.float32))
    with pytest.raises(ValueError, match="RGB uint8"):
        segmenter.predict(np.zeros((40, 40), np.uint8))


def test_slide_mode_with_one_tile_equals_whole_mode(checkpoint):
    photo = random_photo(45, 77, seed=3)
    whole = Segmenter.from_checkpoint(checkpoint, "cpu", InferenceOptions(resize=None))
    slide = Segmenter.from_checkpoint(
        checkpoint, "cpu", InferenceOptions("slide", resize=None, tile=(64, 128))
    )
    np.testing.assert_array_equal(slide.predict(photo), whole.predict(photo))
    tiled = Segmenter.from_checkpoint(checkpoint, "cpu", InferenceOptions("slide", tile=(32, 32)))
    assert tiled.predict(photo).shape == (45, 77)


def test_tta_and_resize_options_reach_the_inference(checkpoint):
    tta = Segmenter.from_checkpoint(checkpoint, "cpu", InferenceOptions.from_flags(tta=True))
    assert tta.options.flip and tta.options.scales == (0.75, 1.0, 1.25)
    assert tta.predict(random_photo(40, 60)).shape == (40, 60)
    flip_only = Segmenter.from_checkpoint(
        checkpoint, "cpu", InferenceOptions.from_flags(tta=True, scales=[1.0])
    )
    assert flip_only.options.scales == (1.0,)
    resized = Segmenter.from_checkpoint(checkpoint, "cpu", InferenceOptions(resize="train"))
    assert resized.options.resize == (64, 128)
    assert resized.predict(random_photo(90, 70)).shape == (90, 70)
    assert (
        Segmenter.from_checkpoint(
            checkpoint, "cpu", InferenceOptions.from_flags(resize=0.5)
        ).options.scale
        == 0.5
    )
    with pytest.raises(ConfigError, match="mode"):
        Segmenter.from_checkpoint(checkpoint, "cpu", InferenceOptions(mode="tiles"))


def test_from_checkpoint_names_a_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="missing.pt: checkpoint not found"):
        Segmenter.from_checkpoint(tmp_path / "missing.pt", "cpu")


def test_a_missing_pretrained_name_lists_the_available_ones(tmp_path, monkeypatch, checkpoint):
    assert "no-such-model" not in available_pretrained()
    with pytest.raises(CheckpointError, match="model 'no-such-model' not found.*available"):
        Segmenter.from_pretrained("no-such-model")
    (tmp_path / "city.pt").write_bytes(checkpoint.read_bytes())
    (tmp_path / "demo.pt").write_bytes(b"")
    monkeypatch.setattr(pretrained_module, "pretrained_folder", lambda: tmp_path)
    assert available_pretrained() == ["city", "demo"]
    with pytest.raises(CheckpointError, match="available: city, demo"):
        Segmenter.from_pretrained("pairs")
    assert Segmenter.from_pretrained("city", "cpu").input_size == (64, 128)


def test_predict_file_and_pairs_take_the_left_half(segmenter, tmp_path):
    photo, label_colors = random_photo(64, 64, 1), random_photo(64, 64, 2)
    pair = write_photo(tmp_path / "7.png", np.concatenate([photo, label_colors], axis=1))
    np.testing.assert_array_equal(read_photo(pair, "pairs"), photo)
    np.testing.assert_array_equal(segmenter.predict_file(pair, "pairs"), segmenter.predict(photo))
    assert segmenter.predict_file(pair).shape == (64, 128)
    with pytest.raises(DataError, match="not a pairs image"):
        read_photo(write_photo(tmp_path / "wide.png", random_photo(64, 100)), "pairs")
    with pytest.raises(ConfigError, match="input format"):
        read_photo(pair, "pair")


def test_collect_inputs_takes_files_folders_and_globs_sorted_once(tmp_path):
    b = write_photo(tmp_path / "photos" / "b.png", random_photo(8, 8))
    a = write_photo(tmp_path / "photos" / "a.JPG", random_photo(8, 8))
    deep = write_photo(tmp_path / "photos" / "city" / "c.jpeg", random_photo(8, 8))
    (tmp_path / "photos" / "notes.txt").write_text("not a photo")
    out = tmp_path / "photos" / "out"
    write_photo(out / "a_color.png", random_photo(8, 8))  # an earlier run's output
    patterns = [tmp_path / "photos", str(tmp_path / "photos" / "*.png"), b]
    assert collect_inputs(patterns, exclude=out) == sorted([a, b, deep])
    assert collect_inputs([str(tmp_path / "**" / "*.jpeg")]) == [deep]


def test_collect_inputs_reports_every_pattern_that_matches_nothing(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    patterns = [tmp_path / "missing.png", tmp_path / "notes.txt", str(tmp_path / "*.jpg")]
    with pytest.raises(UserError) as error:
        collect_inputs([*patterns, tmp_path / "empty"])
    assert len(error.value.problems) == 4
    assert "missing.png: no such file" in error.value.problems[0]
    assert "notes.txt: not a PNG or JPEG" in error.value.problems[1]
    with pytest.raises(UserError, match="no input images"):
        collect_inputs([])


def test_two_inputs_with_one_name_would_overwrite_each_other():
    with pytest.raises(UserError, match="b/x.jpg: same name as a/x.png"):
        output_stems([Path("a/x.png"), Path("b/x.jpg")])


def test_predict_files_writes_the_four_pictures(segmenter, tmp_path):
    photos = [random_photo(40, 70, 1), random_photo(33, 50, 2)]
    paths = [write_photo(tmp_path / f"in/{n}.png", p) for n, p in zip("pq", photos, strict=True)]
    written = predict_files(segmenter, paths, tmp_path / "out", progress=False)
    assert len(written) == 2 * len(OUTPUTS)
    for path, photo in zip(paths, photos, strict=True):
        train_ids = read_label_png(tmp_path / "out" / f"{path.stem}_trainIds.png")
        np.testing.assert_array_equal(train_ids, segmenter.predict(photo))
        label_ids = read_label_png(tmp_path / "out" / f"{path.stem}_labelIds.png")
        np.testing.assert_array_equal(label_ids, labels.TRAIN_ID_TO_LABEL_ID[train_ids])
        assert set(np.unique(label_ids).tolist()) <= OFFICIAL_LABEL_IDS
        color = read_rgb(tmp_path / "out" / f"{path.stem}_color.png")
        np.testing.assert_array_equal(color, labels.PALETTE[train_ids])
        assert read_rgb(tmp_path / "out" / f"{path.stem}_overlay.png").shape == photo.shape


def test_an_unreadable_photo_is_named_and_the_others_are_written(segmenter, tmp_path):
    good = write_photo(tmp_path / "good.png", random_photo(40, 40))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(good.read_bytes()[:100])
    with pytest.raises(DataError) as error:
        predict_files(segmenter, [broken, good], tmp_path / "out", outputs=["color"])
    assert str(broken) in error.value.problems[0]
    assert "other 1 of 2 images were written" in error.value.problems[-1]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["good_color.png"]


class TestSegmenterContract(SegmenterContract):
    @pytest.fixture
    def make(self, tiny_checkpoint):
        return lambda options=None: Segmenter.from_checkpoint(tiny_checkpoint, "cpu", options)
