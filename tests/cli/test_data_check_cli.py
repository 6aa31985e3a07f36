"""`cityseg data check`: a table on stdout when usable, exit 2 and one line per problem when not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from cityseg.cli import main
from cityseg.data.io import write_png

PREFIX = "cityseg data check: error: "


def _official(root: Path, frame_id: str = "aachen_000000_000019", label=True) -> tuple[Path, Path]:
    city = frame_id.split("_")[0]
    image = root / f"leftImg8bit/train/{city}/{frame_id}_leftImg8bit.png"
    label_path = root / f"gtFine/train/{city}/{frame_id}_gtFine_labelIds.png"
    write_png(image, np.full((16, 32, 3), 50, np.uint8))
    label_path.parent.mkdir(parents=True, exist_ok=True)
    if label:
        write_png(label_path, np.full((16, 32), 7, np.uint8))
    return image, label_path


def _pair(path: Path, size=(8, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.zeros((*size, 3), np.uint8))
    return path


def _wrong_root(root):
    return root, "no such folder", ()  # never created


def _empty_folder(root):
    root.mkdir()
    return root, "not a dataset folder (it is empty)", ()


def _missing_split(root):
    _pair(root / "train" / "1.jpg")
    return root / "val", "split 'val' not found", ("--split", "val")


def _image_without_label(root):
    image, _ = _official(root, label=False)
    return image, "no label", ()


def _label_without_image(root):
    _official(root)
    _, label = _official(root, "aachen_000001_000019")
    (root / "leftImg8bit/train/aachen/aachen_000001_000019_leftImg8bit.png").unlink()
    return label, "label without image", ()


def _unreadable_file(root):
    image, _ = _official(root)
    image.write_bytes(b"garbage, not a PNG")
    return image, "neither a PNG nor a JPEG", ()


def _truncated_file(root):
    _, label = _official(root)
    label.write_bytes(label.read_bytes()[:-20])
    return label, "truncated", ()


def _size_mismatch(root):
    _, label = _official(root)
    write_png(label, np.zeros((16, 30), np.uint8))
    return label, "30x16 pixels but its image", ()


def _unknown_label_values(root):
    _, label = _official(root)
    write_png(label, np.full((16, 32), 200, np.uint8))
    return label, "unknown labelIds values 200", ()


def _pairs_of_wrong_size(root):
    _pair(root / "train" / "1.jpg")
    return _pair(root / "train" / "2.jpg", size=(10, 16)), "16x10 pixels", ()


def _empty_split(root):
    _pair(root / "train" / "1.jpg")
    (root / "val").mkdir()
    return root / "val", "no .jpg images", ()


BAD_INPUTS = [
    _wrong_root,
    _empty_folder,
    _missing_split,
    _image_without_label,
    _label_without_image,
    _unreadable_file,
    _truncated_file,
    _size_mismatch,
    _unknown_label_values,
    _pairs_of_wrong_size,
    _empty_split,
]


@pytest.mark.parametrize("make_problem", BAD_INPUTS, ids=lambda f: f.__name__.strip("_"))
def test_bad_input_exits_2_with_one_line_naming_the_file(tmp_path, capsys, make_problem):
    root = tmp_path / "dataset"
    named_file, message, options = make_problem(root)
    status = main(["data", "check", str(root), *options])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"{PREFIX}{named_file}: ") and message in lines[0]
    assert "; " in lines[0]  # what to do comes after the problem
    assert "Traceback" not in captured.err


def test_several_problems_give_one_line_each(tmp_path, capsys):
    root = tmp_path / "dataset"
    _official(root, "aachen_000000_000019", label=False)
    _official(root, "aachen_000001_000019", label=False)
    assert main(["data", "check", str(root)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all(line.startswith(PREFIX) for line in lines)


def test_real_cityscapes_sample_prints_a_table(cityscapes_root, capsys):
    assert main(["data", "check", str(cityscapes_root), "--sample", "1"]) == 0
    out = capsys.readouterr().out
    assert "format   cityscapes" in out
    assert "train       8" in out and "val         1" in out
    assert "OK: 9 images in 2 split(s)" in out


def test_real_pairs_prints_the_decoding_rules(pairs_root, capsys):
    assert main(["data", "check", str(pairs_root), "--sample", "2"]) == 0
    out = capsys.readouterr().out
    assert "train    2975" in out and "512x256" in out
    for rule in ("exact", "near", "far", "ambiguous"):
        assert f"\n{rule} " in out


def test_negative_sample_is_refused_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "check", str(tmp_path), "--sample", "-3"])
    assert exit_info.value.code == 2
    assert "expected a whole number >= 0" in capsys.readouterr().err


def test_python_dash_m_reports_a_bad_root_without_traceback(tmp_path):
    missing = tmp_path / "nowhere"
    result = subprocess.run(
        [sys.executable, "-m", "cityseg", "data", "check", str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == f"{PREFIX}{missing}: no such folder; check the dataset path"
