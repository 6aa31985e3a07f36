"""`cityseg score`: submission PNGs on disk, checked against the official script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from cityseg.cli import main
from cityseg.evaluate.submissions import score_predictions
from tests.helpers.official import downscaled, perturb, read, run_official, write_frame

FRAMES = 3


@pytest.fixture(scope="module")
def submission(cityscapes_root: Path, tmp_path_factory) -> tuple[Path, Path]:
    """A gtFine/val tree of 3 downscaled aachen frames and the frankfurt one, with predictions
    in nested folders; returns (ground-truth root, prediction folder)."""
    root = tmp_path_factory.mktemp("score")
    pred_dir = root / "results"
    rng = np.random.default_rng(11)
    label_files = sorted((cityscapes_root / "gtFine").glob("*/*/*_gtFine_labelIds.png"))
    chosen = [f for f in label_files if "aachen" in f.name][:FRAMES]
    chosen += [f for f in label_files if "frankfurt" in f.name]
    for label_file in chosen:
        frame_id = label_file.name[: -len("_gtFine_labelIds.png")]
        label_ids = read(label_file)
        instance_ids = read(
            label_file.with_name(label_file.name.replace("labelIds", "instanceIds"))
        )
        if label_ids.shape[0] > 512:
            label_ids, instance_ids = downscaled(label_ids, 4), downscaled(instance_ids, 4)
        write_frame(root, "val", frame_id, label_ids, instance_ids)
        folder = pred_dir / frame_id.split("_")[0]
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{frame_id}_leftImg8bit.png"), perturb(label_ids, rng))
    return root, pred_dir


def copy_submission(submission, tmp_path) -> tuple[Path, Path]:
    root, pred_dir = submission
    shutil.copytree(root, tmp_path / "data")
    return tmp_path / "data", tmp_path / "data" / pred_dir.name


def pairs(root: Path, pred_dir: Path) -> tuple[list[Path], list[Path]]:
    gts = sorted((root / "gtFine" / "val").glob("*/*_gtFine_labelIds.png"))
    preds = [next(pred_dir.rglob(g.name[:20] + "*.png")) for g in gts]
    return preds, gts


def test_score_matches_the_official_script(submission):
    root, pred_dir = submission
    official = run_official(*pairs(root, pred_dir))
    for workers in (1, 2):
        result = score_predictions(pred_dir, root, "val", workers=workers)
        block = result["cityscapes"]
        assert result["frames"] == FRAMES + 1
        assert block["classes_iou"] == pytest.approx(official["averageScoreClasses"], abs=1e-6)
        assert block["classes_iiou"] == pytest.approx(official["averageScoreInstClasses"], abs=1e-6)
        assert block["categories_iou"] == pytest.approx(
            official["averageScoreCategories"], abs=1e-6
        )
        assert block["categories_iiou"] == pytest.approx(
            official["averageScoreInstCategories"], abs=1e-6
        )
        for name, scores in block["per_class"].items():
            expected = official["classInstScores"][name]
            assert scores["iiou"] == (None if np.isnan(expected) else pytest.approx(expected))
        assert result["mean_iou"] == pytest.approx(official["averageScoreClasses"], abs=1e-6)


def test_cli_prints_the_table_and_writes_json(submission, tmp_path, capsys):
    root, pred_dir = submission
    out = tmp_path / "scores" / "metrics.json"
    assert main(["score", str(pred_dir), "--gt", str(root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "classes          IoU      nIoU" in printed and "Score Average" in printed
    assert "mean IoU" in printed
    saved = json.loads(out.read_text())
    for key in ("pixel_accuracy", "mean_iou", "classes", "absent_classes", "cityscapes"):
        assert key in saved
    assert saved["cityscapes"]["classes_iiou"] is not None


def test_official_zip_layout_is_found(submission, tmp_path):
    root, pred_dir = copy_submission(submission, tmp_path)
    (root / "gtFine_trainvaltest").mkdir()
    (root / "gtFine").rename(root / "gtFine_trainvaltest" / "gtFine")
    assert score_predictions(pred_dir, root, workers=1)["frames"] == FRAMES + 1


def test_without_instance_ids_iiou_is_none(submission, tmp_path, capsys):
    root, pred_dir = copy_submission(submission, tmp_path)
    for path in root.rglob("*_instanceIds.png"):
        path.unlink()
    assert main(["score", str(pred_dir), "--gt", str(root), "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "iIoU not computed" in printed and "0 of 4 frames" in printed
    result = score_predictions(pred_dir, root, workers=1)
    assert result["cityscapes"]["classes_iiou"] is None and result["mean_iou"] is not None


def problems_of(pred_dir: Path, root: Path, capsys) -> list[str]:
    assert main(["score", str(pred_dir), "--gt", str(root), "--workers", "2"]) == 2
    return capsys.readouterr().err.strip().splitlines()


def test_missing_extra_and_duplicate_predictions_are_named(submission, tmp_path, capsys):
    root, pred_dir = copy_submission(submission, tmp_path)
    missing = next(pred_dir.rglob("aachen_000000_*.png"))
    missing.unlink()
    (pred_dir / "bremen_000001_000019_pred.png").write_bytes(b"")
    (pred_dir / "notes.png").write_bytes(b"")
    duplicate = next(pred_dir.rglob("aachen_000001_*.png"))
    shutil.copy(duplicate, pred_dir / "aachen_000001_000019_color.png")
    lines = problems_of(pred_dir, root, capsys)
    assert len(lines) == 4
    assert any("no prediction for frame aachen_000000_000019" in line for line in lines)
    assert any("bremen_000001_000019_pred.png: no ground truth" in line for line in lines)
    assert any("notes.png: name holds no" in line for line in lines)
    assert any("second prediction for aachen_000001_000019" in line for line in lines)
    assert all(line.startswith("cityseg score: error: ") for line in lines)


def test_palette_predictions_are_read_as_indices(submission, tmp_path):
    """Palette PNGs of labelIds, as some repositories save them, score by their indices."""
    from PIL import Image

    root, pred_dir = copy_submission(submission, tmp_path)
    palette = np.random.default_rng(0).integers(0, 256, 768).astype(np.uint8).tolist()
    for path in pred_dir.rglob("*.png"):
        image = Image.fromarray(read(path))
        image.putpalette(palette)
        image.save(path)
    official = run_official(*pairs(root, pred_dir))
    result = score_predictions(pred_dir, root, workers=1)
    assert result["mean_iou"] == pytest.approx(official["averageScoreClasses"], abs=1e-6)


def test_wrong_size_unknown_ids_and_colour_are_named(submission, tmp_path, capsys):
    root, pred_dir = copy_submission(submission, tmp_path)
    preds = sorted(pred_dir.rglob("*.png"))
    small = read(preds[0])[::2, ::2]
    cv2.imwrite(str(preds[0]), small)
    train_ids = np.full(read(preds[1]).shape, 255, dtype=np.uint8)
    cv2.imwrite(str(preds[1]), train_ids)
    colour = np.zeros((*read(preds[2]).shape, 3), dtype=np.uint8)
    cv2.imwrite(str(preds[2]), colour)
    lines = problems_of(pred_dir, root, capsys)
    assert len(lines) == 3
    assert f"{preds[0]}: size" in lines[0] and "differs from the ground truth" in lines[0]
    assert f"{preds[1]}: prediction holds values 255" in lines[1]
    assert f"{preds[2]}: has 3 channels" in lines[2]


def test_missing_ground_truth_is_one_line(tmp_path, capsys):
    (tmp_path / "pred").mkdir()
    lines = problems_of(tmp_path / "pred", tmp_path, capsys)
    assert len(lines) == 1 and "no gtFine/val folder" in lines[0]


def test_ground_truth_from_the_environment(submission, tmp_path, monkeypatch, capsys):
    root, pred_dir = submission
    monkeypatch.setenv("CITYSCAPES_DATASET", str(root))
    assert main(["score", str(pred_dir)]) == 0
    assert "Score Average" in capsys.readouterr().out
    monkeypatch.setenv("CITYSCAPES_DATASET", str(tmp_path))  # no gtFine there
    assert main(["score", str(pred_dir)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [
        f"cityseg score: error: CITYSCAPES_DATASET={tmp_path}: no gtFine/val folder there; "
        "set it to the folder that holds gtFine/, or pass --gt"
    ]
    assert main(["score", str(pred_dir), "--gt", str(root)]) == 0  # --gt wins over the variable
    monkeypatch.delenv("CITYSCAPES_DATASET")
    assert main(["score", str(pred_dir)]) == 2
    assert "--gt: missing" in capsys.readouterr().err


def test_train_id_predictions_get_a_note(submission, tmp_path):
    root, pred_dir = copy_submission(submission, tmp_path)
    for path in pred_dir.rglob("*.png"):
        cv2.imwrite(str(path), np.minimum(read(path), 18))
    notes = score_predictions(pred_dir, root, workers=1)["notes"]
    assert any("trainIds" in note for note in notes)


def test_score_never_imports_torch(submission, tmp_path):
    root, pred_dir = submission
    code = (
        "import sys; from cityseg.cli import main; "
        f"code = main(['score', {str(pred_dir)!r}, '--gt', {str(root)!r}]); "
        "assert code == 0, code; "
        "loaded = [m for m in ('torch', 'torchvision') if m in sys.modules]; "
        "assert not loaded, loaded"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
