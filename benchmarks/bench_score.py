"""Time `cityseg score` against the official Cityscapes script, whole process against whole process.

Both score the same prediction PNGs in the same run; the numbers must agree to 1e-6.

    python benchmarks/bench_score.py                  # 150 full-resolution frames
    python benchmarks/bench_score.py --frames 8       # smoke form for CI
    python benchmarks/bench_score.py --gt ROOT --pred DIR [--split val]

Without --gt/--pred it builds, in a temporary folder (never in the repository), a gtFine/val tree
that cycles the 8 real aachen frames of ../shared/data/cityscapes under new frame ids, with
predictions made by shifting the ground truth and pasting blocks of random labelIds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CITYSEG_SHARED_DATA", REPO.parent / "shared" / "data"))

OFFICIAL = r"""
import glob, json, sys
import numpy as np
np.in1d = np.isin  # cityscapesscripts 2.3 calls np.in1d, which NumPy 2.4 removed
from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official
gt_search, pred_dir, out = sys.argv[1:4]
args = official.args
args.JSONOutput = False
args.predictionPath = pred_dir
gts = sorted(glob.glob(gt_search))
preds = [official.getPrediction(args, gt) for gt in gts]
result = official.evaluateImgLists(preds, gts, args)
keys = ("classScores", "classInstScores", "categoryScores", "categoryInstScores",
        "averageScoreClasses", "averageScoreInstClasses", "averageScoreCategories",
        "averageScoreInstCategories")
with open(out, "w") as f:
    json.dump({k: result[k] for k in keys}, f)
"""


def perturb(label_ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    height, width = label_ids.shape
    pred = np.roll(label_ids, (int(rng.integers(-20, 21)), int(rng.integers(-8, 9))), axis=(0, 1))
    for _ in range(12):
        h, w = int(rng.integers(1, height // 4)), int(rng.integers(1, width // 4))
        y, x = int(rng.integers(0, height - h)), int(rng.integers(0, width - w))
        pred[y : y + h, x : x + w] = rng.integers(0, 34)
    return pred


def make_frames(out: Path, frames: int, seed: int = 0) -> tuple[Path, Path]:
    """A gtFine/val tree of ``frames`` frames cycled from the aachen sample, and predictions."""
    source = SHARED / "cityscapes" / "gtFine" / "train" / "aachen"
    label_files = sorted(source.glob("*_gtFine_labelIds.png"))
    if not label_files:
        sys.exit(f"bench_score: no aachen frames in {source}; pass --gt and --pred")
    gt_folder = out / "gtFine" / "val" / "aachen"
    pred_folder = out / "pred"
    gt_folder.mkdir(parents=True)
    pred_folder.mkdir()
    rng = np.random.default_rng(seed)
    for index in range(frames):
        label_file = label_files[index % len(label_files)]
        frame_id = f"aachen_{index:06d}_000019"
        shutil.copyfile(label_file, gt_folder / f"{frame_id}_gtFine_labelIds.png")
        instance_file = label_file.with_name(label_file.name.replace("labelIds", "instanceIds"))
        shutil.copyfile(instance_file, gt_folder / f"{frame_id}_gtFine_instanceIds.png")
        label_ids = cv2.imread(str(label_file), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(pred_folder / f"{frame_id}_pred_labelIds.png"), perturb(label_ids, rng))
    return out, pred_folder


def timed(command: list[str]) -> tuple[float, float]:
    """Wall-clock and CPU seconds (user + system, the process and its children) of a command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if run.returncode != 0:
        sys.exit(f"bench_score: {command[:3]} failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu


def differences(official: dict, ours: dict) -> list[float]:
    """Absolute differences of every class and category IoU / iIoU and of the four averages."""
    block = ours["cityscapes"]
    pairs = [
        (official["averageScoreClasses"], block["classes_iou"]),
        (official["averageScoreInstClasses"], block["classes_iiou"]),
        (official["averageScoreCategories"], block["categories_iou"]),
        (official["averageScoreInstCategories"], block["categories_iiou"]),
    ]
    for ours_key, iou_key, iiou_key in (
        ("per_class", "classScores", "classInstScores"),
        ("per_category", "categoryScores", "categoryInstScores"),
    ):
        for name, scores in block[ours_key].items():
            pairs += [
                (official[iou_key][name], scores["iou"]),
                (official[iiou_key][name], scores["iiou"]),
            ]
    diffs = []
    for expected, got in pairs:
        got = float("nan") if got is None else got
        both_nan = np.isnan(expected) and np.isnan(got)
        diffs.append(0.0 if both_nan else abs(expected - got))
    return diffs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=150, help="frames to make (default 150)")
    parser.add_argument("--gt", type=Path, help="folder holding gtFine/ (skip making frames)")
    parser.add_argument("--pred", type=Path, help="folder of prediction PNGs (with --gt)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--workers", type=int, help="cityseg score --workers (default: all CPUs)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each, best one reported")
    args = parser.parse_args()
    if (args.gt is None) != (args.pred is None):
        parser.error("--gt and --pred go together")

    with tempfile.TemporaryDirectory(prefix="bench_score_") as tmp:
        tmp = Path(tmp)
        if args.gt:
            gt_root, pred_dir = args.gt, args.pred
        else:
            start = time.perf_counter()
            gt_root, pred_dir = make_frames(tmp / "data", args.frames)
            print(f"made {args.frames} frames in {time.perf_counter() - start:.1f} s")
        gt_search = str(gt_root / "gtFine" / args.split / "*" / "*_gtFine_labelIds.png")
        frames = len(list(Path(gt_root, "gtFine", args.split).glob("*/*_gtFine_labelIds.png")))
        official_cmd = [
            sys.executable,
            "-c",
            OFFICIAL,
            gt_search,
            str(pred_dir),
            str(tmp / "o.json"),
        ]
        ours_cmd = [sys.executable, "-m", "cityseg", "score", str(pred_dir), "--gt", str(gt_root)]
        ours_cmd += ["--split", args.split, "--out", str(tmp / "c.json")]
        if args.workers:
            ours_cmd += ["--workers", str(args.workers)]

        load_before = os.getloadavg()[0]
        runs: dict[str, list[tuple[float, float]]] = {"official script": [], "cityseg score": []}
        for _ in range(args.repeat):
            runs["official script"].append(timed(official_cmd))
            runs["cityseg score"].append(timed(ours_cmd))
        load_after = os.getloadavg()[0]
        official = json.loads((tmp / "o.json").read_text())
        diffs = differences(official, json.loads((tmp / "c.json").read_text()))

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"frames {frames}, CPUs {cpus}, load average {load_before:.2f} -> {load_after:.2f}")
    print(f"{'':<16}{'wall s':>8}{'ms/frame':>10}{'CPU s':>8}   all runs (wall)")
    best = {name: min(times) for name, times in runs.items()}
    for name, (wall, cpu) in best.items():
        shown = ", ".join(f"{w:.2f}" for w, _ in runs[name])
        print(f"{name:<16}{wall:>8.2f}{wall / frames * 1000:>10.1f}{cpu:>8.2f}   {shown}")
    (official_wall, official_cpu), (ours_wall, ours_cpu) = best.values()
    medians = [statistics.median(w for w, _ in times) for times in runs.values()]
    print(
        f"speed-up {official_wall / ours_wall:.2f}x wall (best runs), "
        f"{medians[0] / medians[1]:.2f}x (medians), {official_cpu / ours_cpu:.2f}x CPU time"
    )
    print(f"largest difference over {len(diffs)} scores: {max(diffs):.2e}")
    if max(diffs) > 1e-6:
        print("bench_score: the scores disagree", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
