"""The official Cityscapes numbers, checked against cityscapesscripts on real ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cityseg.labels import CLASS_NAMES, label_ids_to_train_ids
from cityseg.metrics.confusion import confusion_matrix_np
from cityseg.metrics.official import (
    AVERAGE_INSTANCE_SIZE,
    LabelIdError,
    OfficialCounts,
    format_official,
)
from cityseg.metrics.summary import summarize
from tests.helpers.official import (
    as_train_id_prediction,
    downscaled,
    perturb,
    read,
    run_official,
    write_frame,
)

TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def real_frames(cityscapes_root: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(frame id, labelIds, instanceIds) of 4 aachen frames and the frankfurt one."""
    label_files = sorted((cityscapes_root / "gtFine").glob("*/*/*_gtFine_labelIds.png"))
    chosen = [f for f in label_files if "aachen" in f.name][:4]
    chosen += [f for f in label_files if "frankfurt" in f.name]
    return [
        (
            f.name[: -len("_gtFine_labelIds.png")],
            read(f),
            read(f.with_name(f.name.replace("labelIds", "instanceIds"))),
        )
        for f in chosen
    ]


def evaluate_both(tmp_path, frames, make_prediction, instances=True, seed=0):
    """Score the same predictions with the official script and with OfficialCounts."""
    rng = np.random.default_rng(seed)
    counts = OfficialCounts()
    gt_paths, pred_paths = [], []
    for frame_id, label_ids, instance_ids in frames:
        gt_paths.append(write_frame(tmp_path, "val", frame_id, label_ids, instance_ids))
        pred = make_prediction(label_ids, rng)
        pred_paths.append(tmp_path / "pred" / f"{frame_id}_pred.png")
        pred_paths[-1].parent.mkdir(exist_ok=True)
        assert __import__("cv2").imwrite(str(pred_paths[-1]), pred)
        counts.add_frame(pred, label_ids, instance_ids if instances else None)
    return run_official(pred_paths, gt_paths, instances=instances), counts


def assert_same_scores(official: dict, block: dict, iiou: bool = True) -> None:
    def same(expected: float, ours: float | None) -> bool:
        if np.isnan(expected):
            return ours is None
        return ours is not None and abs(expected - ours) < TOLERANCE

    for name, scores in block["per_class"].items():
        assert same(official["classScores"][name], scores["iou"]), name
        if iiou:
            assert same(official["classInstScores"][name], scores["iiou"]), name
    for name, scores in block["per_category"].items():
        assert same(official["categoryScores"][name], scores["iou"]), name
        if iiou:
            assert same(official["categoryInstScores"][name], scores["iiou"]), name
    assert same(official["averageScoreClasses"], block["classes_iou"])
    assert same(official["averageScoreCategories"], block["categories_iou"])
    if iiou:
        assert same(official["averageScoreInstClasses"], block["classes_iiou"])
        assert same(official["averageScoreInstCategories"], block["categories_iiou"])
        assert block["note"] is None


def small(frames, factor=4):
    return [(i, downscaled(labels, factor), downscaled(inst, factor)) for i, labels, inst in frames]


def test_perturbed_labelids_match_the_official_script(tmp_path, real_frames):
    official, counts = evaluate_both(tmp_path, small(real_frames), perturb)
    np.testing.assert_array_equal(np.array(official["confMatrix"]), counts.label_confusion)
    assert_same_scores(official, counts.scores())


def test_full_resolution_frame_matches_the_official_script(tmp_path, real_frames):
    frame_id, label_ids, instance_ids = real_frames[1]
    assert label_ids.shape == (1024, 2048)
    official, counts = evaluate_both(tmp_path, [real_frames[1]], perturb, seed=3)
    assert_same_scores(official, counts.scores())


def synthetic_frame(seed: int) -> tuple[str, np.ndarray, np.ndarray]:
    """A 96x128 frame with instances of every kind, caravans, trailers and groups included."""
    rng = np.random.default_rng(seed)
    label_ids = rng.choice([0, 4, 7, 8, 11, 21, 23], size=(96, 128)).astype(np.uint8)
    instance_ids = label_ids.astype(np.uint16)
    for index, label in enumerate([24, 24, 25, 26, 26, 26, 27, 28, 29, 30, 31, 32, 33, 26, 24]):
        h, w = int(rng.integers(4, 30)), int(rng.integers(4, 40))
        y, x = int(rng.integers(0, 96 - h)), int(rng.integers(0, 128 - w))
        label_ids[y : y + h, x : x + w] = label
        group = index >= 13  # the last two are a car group and a person group: no instance id
        instance_ids[y : y + h, x : x + w] = label if group else label * 1000 + index
    return f"bremen_{seed:06d}_000019", label_ids, instance_ids


def test_synthetic_instances_match_the_official_script(tmp_path):
    frames = [synthetic_frame(seed) for seed in range(3)]
    official, counts = evaluate_both(tmp_path, frames, lambda x, rng: perturb(x, rng, 30))
    assert_same_scores(official, counts.scores())


def test_perfect_prediction_scores_one(tmp_path, real_frames):
    official, counts = evaluate_both(tmp_path, small(real_frames[:2]), lambda x, _: x.copy())
    block = counts.scores()
    assert_same_scores(official, block)
    assert block["classes_iou"] == 1.0 and block["categories_iiou"] == 1.0


def test_train_id_predictions_give_our_mean_iou(tmp_path, real_frames):
    """For a model's predictions the official class IoU is the trainId matrix's mean IoU."""
    frames = small(real_frames)
    official, counts = evaluate_both(
        tmp_path, frames, lambda x, rng: as_train_id_prediction(perturb(x, rng)), seed=5
    )
    assert_same_scores(official, counts.scores())
    confusion = np.zeros((19, 19), dtype=np.int64)
    for pred_path, (_, label_ids, _) in zip(
        sorted((tmp_path / "pred").glob("*.png")), sorted(frames), strict=True
    ):
        pred_train_ids = label_ids_to_train_ids(read(pred_path))
        confusion += confusion_matrix_np(pred_train_ids, label_ids_to_train_ids(label_ids))
    summary = summarize(confusion, CLASS_NAMES)
    assert summary["mean_iou"] == pytest.approx(official["averageScoreClasses"], abs=TOLERANCE)
    assert_same_scores(official, summary["cityscapes"], iiou=False)


def test_void_predictions_are_misses_in_the_train_id_view(tmp_path, real_frames):
    official, counts = evaluate_both(tmp_path, small(real_frames), perturb, seed=7)
    train_confusion = counts.train_confusion()
    assert train_confusion.shape == (19, 20) and train_confusion[:, 19].sum() > 0
    summary = summarize(train_confusion, CLASS_NAMES)
    assert summary["mean_iou"] == pytest.approx(official["averageScoreClasses"], abs=TOLERANCE)
    roundtrip = OfficialCounts.from_train_confusion(train_confusion).scores()
    assert_same_scores(official, roundtrip, iiou=False)


def test_without_instances_iiou_is_none_with_a_note(tmp_path, real_frames):
    official, counts = evaluate_both(tmp_path, small(real_frames[:2]), perturb, instances=False)
    block = counts.scores()
    assert_same_scores(official, block, iiou=False)
    assert block["classes_iiou"] is None and block["per_class"]["car"]["iiou"] is None
    assert "0 of 2 frames" in block["note"] and "instanceIds" in format_official(block)


def test_average_sizes_are_the_official_ones():
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as script

    assert AVERAGE_INSTANCE_SIZE == script.args.avgClassSize


def test_unknown_ids_are_errors():
    gt = np.full((4, 4), 7, dtype=np.uint8)
    counts = OfficialCounts()
    with pytest.raises(LabelIdError, match="prediction holds values 34, 200"):
        counts.add_frame(np.array([[34, 200]] * 8, dtype=np.uint8).reshape(4, 4), gt)
    with pytest.raises(LabelIdError, match="ground truth holds values 40"):
        counts.add_frame(gt, np.full((4, 4), 40, dtype=np.uint8))
    with pytest.raises(LabelIdError, match="instanceIds holds values 40"):
        counts.add_frame(gt, gt, np.full((4, 4), 40001, dtype=np.uint16))
    with pytest.raises(LabelIdError, match="prediction holds values 300"):
        counts.add_frame(np.full((4, 4), 300, dtype=np.uint16), gt)
    assert counts.frames == 0


def test_format_official_looks_like_the_script():
    block = OfficialCounts.from_train_confusion(np.eye(19, dtype=np.int64)).scores()
    text = format_official(block)
    assert "classes          IoU      nIoU" in text
    assert "road          : 1.000      nan" in text
    assert "Score Average : 1.000      nan" in text
