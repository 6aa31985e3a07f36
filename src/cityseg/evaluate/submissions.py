"""Score submission PNGs on disk against gtFine: a faster drop-in for the official script.

Predictions are in the official submission format: one single-channel labelId PNG per frame,
anywhere under the prediction folder, whose name contains ``<city>_<seq>_<frame>``. Frames are
decoded with OpenCV and counted with :mod:`cityseg.metrics.official` in a pool of processes, each
returning the partial counts of its share of the frames. No torch is imported on this path.
"""

from __future__ import annotations

import multiprocessing
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cityseg import processes
from cityseg.data.io import read_unchanged
from cityseg.errors import DataError
from cityseg.labels import CLASS_NAMES
from cityseg.metrics.official import LabelIdError, OfficialCounts
from cityseg.metrics.summary import summarize
from cityseg.runtime.allocator import tune_glibc

LABEL_SUFFIX = "_gtFine_labelIds.png"
INSTANCE_SUFFIX = "_gtFine_instanceIds.png"
FRAME_ID = re.compile(r"[A-Za-z-]+_\d{6}_\d{6}")
MAX_PROBLEMS_SHOWN = 20


@dataclass(frozen=True)
class ScoreFrame:
    """One frame to score: its prediction and its ground-truth files."""

    frame_id: str
    prediction: Path
    label_ids: Path
    instance_ids: Path | None


def find_gt_folder(root: Path, split: str) -> Path:
    """``<root>/gtFine/<split>``, also under the official zip's ``gtFine_trainvaltest/``."""
    root = Path(root)
    candidates = [root / "gtFine", root / "gtFine_trainvaltest" / "gtFine"]
    if root.name == "gtFine":
        candidates.insert(0, root)
    for gt_fine in candidates:
        if (gt_fine / split).is_dir():
            return gt_fine / split
    looked = ", ".join(str(c / split) for c in candidates)
    raise DataError(
        f"{root}: no gtFine/{split} folder (looked for {looked}); "
        "pass --gt the folder that holds gtFine/ and check --split"
    )


def find_ground_truth(root: Path, split: str) -> dict[str, tuple[Path, Path | None]]:
    """Frame id -> (labelIds file, instanceIds file or None) for every frame of the split."""
    folder = find_gt_folder(root, split)
    frames = {}
    for label_path in sorted(folder.glob(f"*/*{LABEL_SUFFIX}")):
        frame_id = label_path.name[: -len(LABEL_SUFFIX)]
        instance_path = label_path.with_name(frame_id + INSTANCE_SUFFIX)
        frames[frame_id] = (label_path, instance_path if instance_path.is_file() else None)
    if not frames:
        raise DataError(
            f"{folder}: no */*{LABEL_SUFFIX} files; the labelIds ground truth is needed for scoring"
        )
    return frames


def match_predictions(pred_dir: Path, frame_ids: set[str]) -> dict[str, Path]:
    """Frame id -> prediction PNG; every frame needs exactly one and every PNG a frame."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise DataError(f"{pred_dir}: prediction folder not found; pass the folder of labelId PNGs")
    found: dict[str, Path] = {}
    problems = []
    for path in sorted(pred_dir.rglob("*.png")):
        match = FRAME_ID.search(path.name)
        if match is None:
            problems.append(f"{path}: name holds no <city>_<seq>_<frame> id; rename or remove it")
        elif match.group() not in frame_ids:
            problems.append(
                f"{path}: no ground truth for frame {match.group()}; remove it or check --split"
            )
        elif match.group() in found:
            problems.append(
                f"{path}: second prediction for {match.group()} (also {found[match.group()]}); "
                "keep one labelId PNG per frame"
            )
        else:
            found[match.group()] = path
    for frame_id in sorted(frame_ids - found.keys()):
        problems.append(
            f"{pred_dir}: no prediction for frame {frame_id}; "
            f"write a labelId PNG named {frame_id}*.png"
        )
    _raise_problems(problems)
    return found


def _raise_problems(problems: list[str]) -> None:
    if not problems:
        return
    shown = problems[:MAX_PROBLEMS_SHOWN]
    if len(problems) > len(shown):
        shown.append(f"... and {len(problems) - len(shown)} more problems like these")
    raise DataError(*shown)


def _read(path: Path) -> np.ndarray | None:
    """The image as stored, or None when it cannot be read (bounded: see ``data.io``)."""
    try:
        return read_unchanged(path)
    except DataError:
        return None


def read_prediction(path: Path) -> np.ndarray | None:
    """A prediction PNG as the official script sees it: palette PNGs give their indices.

    OpenCV expands a palette to colours, so those (a common way to save coloured labelId maps)
    are read again with Pillow, as the official script reads every file.
    """
    image = _read(path)
    if image is not None and image.ndim == 3:
        with Image.open(path) as palette_image:
            if palette_image.mode == "P":
                return np.asarray(palette_image)
    return image


def count_frame(frame: ScoreFrame, counts: OfficialCounts) -> str | None:
    """Add one frame to ``counts``; return a one-line problem instead when its files are wrong."""
    pred = read_prediction(frame.prediction)
    gt = _read(frame.label_ids)
    if pred is None:
        return f"{frame.prediction}: cannot be read as an image; write a PNG"
    if gt is None:
        return f"{frame.label_ids}: cannot be read as an image; re-extract the ground truth"
    if pred.ndim != 2:
        return (
            f"{frame.prediction}: has {pred.shape[2]} channels; "
            "write single-channel labelIds (not colours)"
        )
    if pred.shape[:2] != gt.shape[:2]:
        return (
            f"{frame.prediction}: size {pred.shape[1]}x{pred.shape[0]} differs from the ground "
            f"truth's {gt.shape[1]}x{gt.shape[0]}; predict at full resolution"
        )
    instances = _read(frame.instance_ids) if frame.instance_ids else None
    for path, truth in ((frame.label_ids, gt), (frame.instance_ids, instances)):
        if truth is not None and truth.shape != pred.shape:
            return f"{path}: size or channels differ from its frame's; re-extract the ground truth"
    if frame.instance_ids and instances is None:
        return f"{frame.instance_ids}: cannot be read as an image; re-extract the ground truth"
    try:
        counts.add_frame(pred, gt, instances)
    except LabelIdError as error:
        path = {"prediction": frame.prediction, "ground truth": frame.label_ids}.get(
            error.source, frame.instance_ids
        )
        hint = "write labelIds (map trainIds with cityseg.labels.train_ids_to_label_ids)"
        if error.source != "prediction":
            hint = "the ground truth looks damaged; re-extract it"
        return f"{path}: {error}; {hint}"
    return None


def count_frames(frames: list[ScoreFrame]) -> tuple[OfficialCounts, list[str]]:
    """The summed counts of some frames, and one line per frame that could not be scored."""
    counts = OfficialCounts()
    problems = [p for p in (count_frame(frame, counts) for frame in frames) if p]
    return counts, problems


def _prepare_worker() -> None:
    """Keep freed frame buffers for the next frame.

    Raising glibc's mmap and trim thresholds lets each decoded frame reuse the previous one's
    memory instead of faulting in fresh pages. Nothing here touches OpenCV's thread pool: a
    forked child that does can hang on the parent's pool.
    """
    processes.die_with_parent()
    tune_glibc()


def _count_in_parallel(frames: list[ScoreFrame], workers: int) -> tuple[OfficialCounts, list[str]]:
    workers = max(1, min(workers, len(frames)))
    if workers == 1:
        return count_frames(frames)
    chunks = [frames[start :: workers * 4] for start in range(workers * 4)]
    method = "fork" if sys.platform.startswith("linux") else None
    processes.remember_parent()
    with multiprocessing.get_context(method).Pool(workers, initializer=_prepare_worker) as pool:
        results = pool.map(count_frames, [chunk for chunk in chunks if chunk])
    counts = OfficialCounts()
    problems: list[str] = []
    for partial, partial_problems in results:
        counts += partial
        problems += partial_problems
    return counts, problems


def score_predictions(
    pred_dir: Path, gt_root: Path, split: str = "val", workers: int | None = None
) -> dict[str, Any]:
    """Score every frame of a split: the metrics.json schema plus the official ``cityscapes`` block.

    Raises:
        DataError: one line per missing, extra, unreadable, wrongly sized or wrongly valued file;
            or one line when no ground-truth pixel is of an evaluated class (all void).
    """
    ground_truth = find_ground_truth(Path(gt_root), split)
    predictions = match_predictions(Path(pred_dir), set(ground_truth))
    frames = [
        ScoreFrame(frame_id, predictions[frame_id], label_path, instance_path)
        for frame_id, (label_path, instance_path) in ground_truth.items()
    ]
    counts, problems = _count_in_parallel(frames, processes.worker_count(workers or None))
    _raise_problems(sorted(problems))
    confusion = counts.train_confusion()
    if confusion.sum() == 0:
        raise DataError(
            f"{find_gt_folder(Path(gt_root), split)}: no pixel of the {len(frames)} ground-truth "
            "frames belongs to an evaluated class (all void), so there is nothing to score; "
            "check --gt and --split"
        )
    result = summarize(confusion, CLASS_NAMES, cityscapes=counts.scores())
    predicted = counts.label_confusion.sum(axis=0)
    notes = [result["cityscapes"]["note"]] if result["cityscapes"]["note"] else []
    if predicted[19:].sum() == 0 and predicted.sum() > 0:
        notes.append(
            "predictions hold only labelIds 0..18: if they are trainIds, map them to labelIds "
            "(cityseg.labels.train_ids_to_label_ids) and score again"
        )
    return result | {
        "frames": len(frames),
        "split": split,
        "predictions": str(pred_dir),
        "ground_truth": str(find_gt_folder(Path(gt_root), split)),
        "notes": notes,
    }
