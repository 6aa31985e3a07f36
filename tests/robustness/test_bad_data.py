"""Bad data, everywhere: random bytes, truncated and damaged PNG and JPEG files, 16-bit, palette,
grey and RGBA images, empty files, odd sizes, symbolic link loops, folders where files should be,
unreadable files. Every reader and command either handles the file correctly or stops with exit
status 2 and one line naming it: no traceback, no hang, no sample silently left out."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cityseg.cli import main
from cityseg.data import open_dataset, read_label_png, read_rgb
from cityseg.data.io import read_header
from cityseg.errors import DataError
from tests.helpers import in_process, train_args, write_pairs, write_scenes

FAST = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def encode(kind: str, height: int, width: int, seed: int) -> bytes:
    """A valid image file of ``kind`` with random pixels."""
    rng = np.random.default_rng(seed)
    if kind == "palette":
        image = Image.fromarray(rng.integers(0, 19, (height, width), dtype=np.uint8), mode="P")
        image.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
        path = Path(f"/tmp/cityseg-palette-{os.getpid()}.png")
        image.save(path)
        data = path.read_bytes()
        path.unlink()
        return data
    shapes = {"grey": (), "rgb": (3,), "rgba": (4,), "grey16": (), "rgb16": (3,)}
    dtype = np.uint16 if kind.endswith("16") else np.uint8
    channels = shapes[kind.removesuffix("-jpeg")]
    pixels = rng.integers(0, np.iinfo(dtype).max, (height, width, *channels), dtype=dtype)
    suffix = ".jpg" if kind.endswith("-jpeg") else ".png"
    ok, encoded = cv2.imencode(suffix, pixels)
    assert ok
    return encoded.tobytes()


KINDS = ("grey", "rgb", "rgba", "grey16", "rgb16", "palette", "grey-jpeg", "rgb-jpeg")


@st.composite
def image_files(draw) -> bytes:
    """Valid images of every kind and odd sizes, then maybe truncated, damaged or replaced."""
    kind = draw(st.sampled_from(KINDS))
    height, width = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    data = encode(kind, height, width, draw(st.integers(0, 1000)))
    damage = draw(st.sampled_from(["none", "truncate", "flip", "random", "empty", "head-only"]))
    if damage == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif damage == "flip":
        damaged = bytearray(data)
        for position in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=8)):
            damaged[position] ^= draw(st.integers(1, 255))
        data = bytes(damaged)
    elif damage == "random":
        data = data[:8] + draw(st.binary(min_size=0, max_size=300)) + data[-12:]
    elif damage == "empty":
        data = b""
    elif damage == "head-only":
        data = data[:30]
    return data


def assert_one_line_naming(error: DataError, path: Path) -> None:
    assert error.problems and all("\n" not in p for p in error.problems)
    assert any(path.name in problem for problem in error.problems), error.problems


@FAST
@given(data=image_files())
def test_readers_decode_or_name_the_file(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("reader") / "image.png"
    path.write_bytes(data)
    for read in (read_rgb, read_label_png, read_header):
        try:
            result = read(path)
        except DataError as error:
            assert_one_line_naming(error, path)
            continue
        if read is read_rgb:
            assert result.dtype == np.uint8 and result.ndim == 3 and result.shape[2] == 3
            assert min(result.shape[:2]) >= 1
        elif read is read_label_png:
            assert result.dtype == np.uint8 and result.ndim == 2 and min(result.shape) >= 1


def test_converted_photos_and_palette_labels(tmp_path):
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., :3] = (10, 20, 30)  # BGR
    rgba[..., 3] = 0  # fully transparent: the colour still counts
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    assert (read_rgb(tmp_path / "rgba.png") == (30, 20, 10)).all()
    cv2.imwrite(str(tmp_path / "grey.png"), np.full((4, 5), 77, np.uint8))
    assert (read_rgb(tmp_path / "grey.png") == 77).all()
    indices = np.arange(20, dtype=np.uint8).reshape(4, 5) % 19
    image = Image.fromarray(indices, mode="P")
    image.putpalette([v for i in range(256) for v in (255 - i, i, 0)])
    image.save(tmp_path / "palette.png")
    np.testing.assert_array_equal(read_label_png(tmp_path / "palette.png"), indices)


def cityscapes_copy(source: Path, destination: Path) -> Path:
    if destination.exists():
        shutil.rmtree(destination)
    return Path(shutil.copytree(source, destination))


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return write_scenes(tmp_path_factory.mktemp("scenes"), {"train": 3, "val": 1}, 32, 64)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return write_pairs(tmp_path_factory.mktemp("pairs"), 3, 32)


def check_and_read(root: Path, bad: Path, capsys, expected: int) -> None:
    """`cityseg data check` exits 0 or 2 (one line per problem, naming ``bad``); when it accepts
    the dataset, every sample reads; when reading fails, check did fail, naming the file."""
    status = main(["data", "check", str(root)])
    err = capsys.readouterr().err
    assert status in (0, 2) and "Traceback" not in err
    if status == 2:
        lines = err.strip().splitlines()
        assert all(line.startswith("cityseg data check: error: ") for line in lines), err
        assert any(bad.name in line for line in lines), err  # (a size mismatch: its partner's)
    read_failed = False
    try:
        dataset = open_dataset(root, "train")
        assert len(dataset) == expected  # nothing silently left out
        for index in range(len(dataset)):
            dataset[index]
    except DataError as error:
        assert_one_line_naming(error, bad)
        read_failed = True
    assert not (read_failed and status == 0), "data check accepted a file that cannot be read"


@FAST
@given(data=image_files(), which=st.sampled_from(["image", "label"]))
def test_cityscapes_bad_files(data, which, scenes, tmp_path_factory, capsys):
    root = cityscapes_copy(scenes, tmp_path_factory.mktemp("cs") / "root")
    pattern = "leftImg8bit/train/*/*.png" if which == "image" else "gtFine/train/*/*_labelIds.png"
    bad = sorted(root.glob(pattern))[1]
    bad.write_bytes(data)
    check_and_read(root, bad, capsys, 3)


@FAST
@given(data=image_files())
def test_pairs_bad_files(data, pairs, tmp_path_factory, capsys):
    root = cityscapes_copy(pairs, tmp_path_factory.mktemp("pairs") / "root")
    shutil.rmtree(root / "scenes")
    bad = root / "train" / "2.jpg"
    bad.write_bytes(data)
    check_and_read(root, bad, capsys, 3)


@pytest.mark.parametrize("layout", ["cityscapes", "pairs"])
@pytest.mark.parametrize("trouble", ["loop", "dangling", "folder", "unreadable"])
def test_links_folders_and_unreadable_files_are_named(
    layout, trouble, scenes, pairs, tmp_path, monkeypatch, capsys
):
    root = cityscapes_copy(scenes if layout == "cityscapes" else pairs, tmp_path / "root")
    if layout == "pairs":
        shutil.rmtree(root / "scenes")
    bad = sorted(root.glob("leftImg8bit/train/*/*.png" if layout == "cityscapes" else "train/*"))[1]
    bad.unlink()
    if trouble == "loop":
        bad.symlink_to(bad)
    elif trouble == "dangling":
        bad.symlink_to(tmp_path / "nowhere.png")
    elif trouble == "folder":
        bad.mkdir()
    else:
        shutil.copy(sorted(bad.parent.iterdir())[0], bad)
        if os.geteuid() != 0:
            bad.chmod(0)
        else:  # root reads anything: make the kernel's refusal happen in open() instead
            real_open = open

            def refusing_open(file, *args, **kwargs):
                if Path(file) == bad:
                    raise PermissionError(13, "Permission denied", str(file))
                return real_open(file, *args, **kwargs)

            monkeypatch.setattr("builtins.open", refusing_open)
    assert main(["data", "check", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert str(bad) in err and "Traceback" not in err
    expected = {
        "loop": "symbolic link that loops",
        "dangling": "file not found",
        "folder": "is a folder",
        "unreadable": "check its permissions",
    }[trouble]
    assert expected in err, err


def labelled_frames(root: Path) -> list[str]:
    """The frames of the scenes' val split (their labelIds are what `cityseg score` needs)."""
    suffix = "_gtFine_labelIds.png"
    return [path.name.removesuffix(suffix) for path in sorted(root.glob(f"gtFine/val/*/*{suffix}"))]


@FAST
@given(data=image_files())
def test_score_bad_predictions(data, scenes, tmp_path_factory, capsys):
    root = tmp_path_factory.mktemp("score")
    gt = cityscapes_copy(scenes, root / "gt")
    (frame,) = labelled_frames(gt)
    prediction = root / "pred" / f"{frame}.png"
    prediction.parent.mkdir()
    prediction.write_bytes(data)
    status = main(["score", str(prediction.parent), "--gt", str(gt), "--workers", "1"])
    captured = capsys.readouterr()
    assert status in (0, 2) and "Traceback" not in captured.err
    if status == 2:
        lines = captured.err.strip().splitlines()
        assert all(line.startswith("cityseg score: error: ") for line in lines)
        assert str(prediction) in captured.err
    else:
        assert "1 frames" in captured.out


@FAST
@given(data=image_files())
def test_predict_bad_inputs(data, tiny_checkpoint, tmp_path_factory, capsys):
    folder = tmp_path_factory.mktemp("predict")
    inputs = folder / "inputs"
    inputs.mkdir()
    cv2.imwrite(str(inputs / "good.png"), np.full((33, 47, 3), 128, np.uint8))
    bad = inputs / "bad.png"
    bad.write_bytes(data)
    out = folder / "out"
    status = main(
        ["predict", str(tiny_checkpoint), str(inputs), "--out", str(out), "--no-progress"]
    )
    err = capsys.readouterr().err
    assert status in (0, 2) and "Traceback" not in err
    assert (out / "good_labelIds.png").is_file()  # the readable photo is always done
    if status == 2:
        assert str(bad) in err and "the other 1 of 2 images were written" in err
    else:
        assert cv2.imread(str(out / "bad_labelIds.png")).shape[:2] == read_rgb(bad).shape[:2]


def test_predict_names_links_that_loop(tiny_checkpoint, tmp_path, capsys):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    cv2.imwrite(str(inputs / "good.png"), np.full((32, 32, 3), 128, np.uint8))
    (inputs / "loop.png").symlink_to(inputs / "loop.png")
    args = ["predict", str(tiny_checkpoint), str(inputs), "--out", str(tmp_path / "o")]
    assert main([*args, "--no-progress"]) == 2
    assert f"{inputs / 'loop.png'}: a symbolic link that loops" in capsys.readouterr().err


@pytest.mark.parametrize("workers", [0, 1])
def test_training_stops_on_a_bad_sample_or_skips_it(workers, tmp_path, capsys):
    scenes = write_scenes(tmp_path / "scenes", {"train": 8, "val": 2}, 32, 64)
    bad = sorted(scenes.glob("leftImg8bit/train/*/*.png"))[3]
    bad.write_bytes(bad.read_bytes()[:100])
    overrides = (f"data.workers={workers}", "train.epochs=1")
    assert in_process(*train_args(scenes, tmp_path / "run", *overrides)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        f"cityseg train: error: {bad}: truncated file (no end marker); re-download or "
        "re-extract it, or remove it from the dataset",
        "cityseg train: error: (or set data.skip_bad_samples=true to skip unreadable samples)",
    ]
    skip = (*overrides, "data.skip_bad_samples=true")
    assert in_process(*train_args(scenes, tmp_path / "skipping", *skip)) == 0
    captured = capsys.readouterr()
    assert f"warning: skipped: {bad}: truncated file" in captured.err
    assert "| skipped 1 unreadable samples" in captured.out


@pytest.mark.parametrize("workers", ["0", "1"])
def test_evaluate_names_a_bad_frame_from_any_worker(
    workers, scenes, tiny_checkpoint, tmp_path, capsys
):
    root = cityscapes_copy(scenes, tmp_path / "root")
    (bad,) = root.glob("leftImg8bit/val/*/*.png")
    bad.write_bytes(bad.read_bytes()[:-20])
    args = ["evaluate", str(tiny_checkpoint), "--data", str(root), "--out", str(tmp_path / "e")]
    assert main([*args, "--workers", workers, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"cityseg evaluate: error: {bad}: truncated file (no end marker); re-download or "
        "re-extract it, or remove it from the dataset"
    )
