"""`cityseg predict` and `cityseg export` end to end: generated and real photos, the ONNX path,
and the one-line errors (exit status 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from cityseg import labels
from cityseg.cli import main
from cityseg.cli.predict import OUTPUTS as CLI_OUTPUTS
from cityseg.predict import OUTPUTS

OFFICIAL_LABEL_IDS = set(labels.TRAIN_ID_TO_LABEL_ID[: labels.NUM_CLASSES].tolist())


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint) -> Path:
    return tiny_checkpoint


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[Path, tuple[int, int]]:
    """Random PNG and JPEG photos of several sizes, one in a sub-folder: path -> (height, width)."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    sizes = {"a.png": (48, 80), "b.jpg": (61, 97), "street/c.jpeg": (40, 40)}
    for name, size in sizes.items():
        (root / name).parent.mkdir(exist_ok=True)
        assert cv2.imwrite(str(root / name), rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    return {root / name: size for name, size in sizes.items()}


def read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image


def check_outputs(out: Path, stem: str, size: tuple[int, int]) -> np.ndarray:
    """Every output of one photo exists at its size; returns its trainIds."""
    label_ids, train_ids = read(out / f"{stem}_labelIds.png"), read(out / f"{stem}_trainIds.png")
    assert label_ids.shape == train_ids.shape == size and label_ids.dtype == np.uint8
    assert set(np.unique(label_ids).tolist()) <= OFFICIAL_LABEL_IDS
    assert train_ids.max() < labels.NUM_CLASSES
    np.testing.assert_array_equal(label_ids, labels.TRAIN_ID_TO_LABEL_ID[train_ids])
    for kind in ("color", "overlay"):
        assert read(out / f"{stem}_{kind}.png").shape == (*size, 3)
    color = cv2.cvtColor(read(out / f"{stem}_color.png"), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(color, labels.PALETTE[train_ids])
    return train_ids


def test_predict_writes_four_pictures_per_photo(checkpoint, photos, tmp_path, capsys):
    folder = next(iter(photos)).parent
    out = tmp_path / "out"
    duplicate = str(folder / "*.png")
    assert main(["predict", str(checkpoint), str(folder), duplicate, "--out", str(out)]) == 0
    assert "segmented 3 images" in capsys.readouterr().out
    assert len(list(out.iterdir())) == 4 * len(photos)
    for path, size in photos.items():
        check_outputs(out, path.stem, size)


def test_predict_on_real_photos_and_pairs(checkpoint, cityscapes_root, pairs_root, tmp_path):
    frankfurt = cityscapes_root / "leftImg8bit/val/frankfurt"
    out = tmp_path / "out"
    assert main(["predict", str(checkpoint), str(frankfurt), "--out", str(out)]) == 0
    check_outputs(out, "frankfurt_000000_000294_leftImg8bit", (128, 256))
    pairs = [str(pairs_root / "train" / name) for name in ("1.jpg", "2.jpg")]
    args = ["predict", str(checkpoint), *pairs, "--out", str(out), "--input-format", "pairs"]
    assert main([*args, "--mode", "slide", "--tile", "128x128", "--no-progress"]) == 0
    for stem in ("1", "2"):
        check_outputs(out, stem, (256, 256))


def test_the_onnx_path_gives_the_checkpoints_predictions(checkpoint, photos, tmp_path, capsys):
    model = tmp_path / "tiny.onnx"
    assert main(["export", str(checkpoint), "--out", str(model)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {model}" in printed and "argmax agreement 100.000%" in printed
    folder = next(iter(photos)).parent
    # at the training scale (the default) the ONNX path rounds the resized photo to uint8
    for resize, agreement in ((), 0.99), (("--resize", "native"), 0.9999):
        torch_out, onnx_out = tmp_path / f"torch{resize}", tmp_path / f"onnx{resize}"
        assert (
            main(["predict", str(checkpoint), str(folder), "--out", str(torch_out), *resize]) == 0
        )
        assert (
            main(["predict", "--onnx", str(model), str(folder), "--out", str(onnx_out), *resize])
            == 0
        )
        assert "onnxruntime" in capsys.readouterr().out
        for path, size in photos.items():
            expected = check_outputs(torch_out, path.stem, size)
            assert np.mean(check_outputs(onnx_out, path.stem, size) == expected) >= agreement


def test_the_onnx_path_does_not_import_torch(checkpoint, photos, tmp_path):
    model = tmp_path / "tiny.onnx"
    assert main(["export", str(checkpoint), "--out", str(model), "--no-verify"]) == 0
    script = (
        "import sys; from cityseg.cli import main; "
        f"code = main(['predict', '--onnx', {str(model)!r}, {str(next(iter(photos)))!r}, "
        f"'--out', {str(tmp_path / 'out')!r}, '--tta']); "
        "assert code == 0 and 'torch' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)


def test_export_defaults_to_the_checkpoint_name(checkpoint, tmp_path):
    local = tmp_path / "model.pt"
    local.write_bytes(checkpoint.read_bytes())
    assert main(["export", str(local), "--no-verify", "--opset", "18"]) == 0
    assert (tmp_path / "model.onnx").is_file()


def errors_of(argv: list[str], capsys) -> list[str]:
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and all(line.startswith(f"cityseg {argv[0]}: error: ") for line in lines)
    return lines


def test_one_line_errors_exit_with_status_two(checkpoint, photos, tmp_path, capsys):
    out = ["--out", str(tmp_path / "out")]
    photo = str(next(iter(photos)))
    missing = errors_of(["predict", str(tmp_path / "none.pt"), photo, *out], capsys)
    assert "none.pt: checkpoint not found" in missing[0]
    nothing = errors_of(["predict", str(checkpoint), str(tmp_path / "*.png"), *out], capsys)
    assert "*.png: no PNG or JPEG image found" in nothing[0]
    assert "a photo where the checkpoint" in errors_of(["predict", photo, *out], capsys)[0]
    assert "no input photos" in errors_of(["predict", str(checkpoint), *out], capsys)[0]
    pretrained = errors_of(["predict", "--pretrained", "no-such-model", photo, *out], capsys)
    assert "pretrained model 'no-such-model' not found" in pretrained[0]
    onnx_slide = ["predict", "--onnx", str(checkpoint), photo, "--mode", "slide", *out]
    assert "whole mode only" in errors_of(onnx_slide, capsys)[0]
    assert (
        "none.pt: checkpoint not found"
        in errors_of(["export", str(tmp_path / "none.pt")], capsys)[0]
    )


def test_an_unreadable_photo_is_named(checkpoint, photos, tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(next(iter(photos)).read_bytes()[:50])
    good = str(next(iter(photos)))
    argv = ["predict", str(checkpoint), str(broken), good, "--out", str(tmp_path), "--no-progress"]
    lines = errors_of(argv, capsys)
    assert str(broken) in lines[0] and "other 1 of 2 images were written" in lines[-1]


def test_the_cli_lists_the_same_outputs_as_the_api():
    assert CLI_OUTPUTS == OUTPUTS
