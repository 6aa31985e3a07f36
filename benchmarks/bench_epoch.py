"""One training epoch plus validation, end to end: cityseg against a notebook-style baseline.

Same model (UNet), same images (the first N + M pairs JPEGs: N to train, M to validate), same
batch size, size and augmentation (horizontal flip), each in a fresh process:

* baseline, written as the seed notebooks are: PIL decode in ``__getitem__``, a nearest-colour loop
  over the 34 label colours in NumPy per sample, float32 tensors made in the dataset, a DataLoader
  with default settings (no workers), float32 eager in contiguous layout, and per-class Python
  loops for IoU (``for c in range(19): ((pred == c) & (gt == c)).sum() ...``); glibc malloc;
* fp32: cityseg's data path and metrics with its speed-ups for the network switched off (float32,
  contiguous layout): what the speed-ups themselves are worth;
* cityseg: the memory-mapped cache (its one-off preparation is timed apart), the training loader
  (uint8 batches, one worker per spare core), normalisation on the device, channels_last and
  bf16 autocast where the hardware has bf16 (else the automatic precision), the bincount
  confusion matrix, the allocator ``cityseg train`` uses by default;
* cityseg+jemalloc, cityseg+tcmalloc: the same with that allocator preloaded (when installed), to
  check that no switch beats the default.

Presets: ``tiny`` is configs/tiny.yaml's network and batch (width 16, depth 4, 128x256, batch 8);
``peer`` is milesial/Pytorch-UNet's defaults (width 64, depth 4, transposed convolutions, batch 1)
at 128x128.

    python benchmarks/bench_epoch.py [--preset tiny|peer] [--pairs DIR] [--train-images 32]
    python benchmarks/bench_epoch.py --smoke
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    add_common_arguments,
    find_data,
    generate_pairs,
    machine_lines,
    markdown_table,
    parse_size,
    resolve_device,
    use_fast_allocator,
)
from _epoch_paths import run_path

TARGET = 4.0
PATHS = ("baseline", "fp32", "cityseg", "cityseg+jemalloc", "cityseg+tcmalloc")
PRESETS = {
    "tiny": {"width": 16, "depth": 4, "upsampling": "bilinear", "size": "128x256",
             "batch_size": 8, "train_images": 270, "val_images": 30},
    "peer": {"width": 64, "depth": 4, "upsampling": "transpose", "size": "128x128",
             "batch_size": 1, "train_images": 270, "val_images": 30},
}  # fmt: skip


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--pairs", help="pairs dataset root (default: ../shared/data/pairs)")
    parser.add_argument("--train-images", type=int, default=32)
    parser.add_argument("--val-images", type=int, default=16)
    parser.add_argument("--preset", choices=sorted(PRESETS), help="network, size and batch")
    parser.add_argument("--width", type=int, default=16, help="U-Net base width")
    parser.add_argument("--depth", type=int, default=4, help="U-Net levels")
    parser.add_argument("--upsampling", choices=("bilinear", "transpose"), default="bilinear")
    parser.add_argument(
        "--paths",
        default="baseline,fp32,cityseg,cityseg+jemalloc",
        help="comma-separated paths to run (baseline, fp32, cityseg, cityseg+jemalloc, "
        "cityseg+tcmalloc)",
    )
    parser.add_argument("--size", default="256x512", metavar="HxW")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--precision", help="cityseg path: fp32, bf16, fp16 (default: see above)")
    parser.add_argument("--path", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_arguments()
    for name, value in PRESETS.get(args.preset, {}).items():
        setattr(args, name, value)
    if args.smoke:
        args.train_images, args.val_images, args.width, args.size = 4, 2, 4, "64x128"
        args.batch_size, args.paths = 2, "baseline,fp32,cityseg"
    if args.path and args.path.startswith("cityseg"):
        use_fast_allocator()
    if args.path:
        result = run_path(args)
        Path(args.result).write_text(json.dumps(result))
        return
    with tempfile.TemporaryDirectory(prefix="cityseg_bench_epoch_") as scratch:
        compare(args, Path(scratch))


def compare(args, scratch: Path) -> None:
    from cityseg.data.prepare import prepare_cache
    from cityseg.runtime.allocator import find_allocator

    device = resolve_device(args.device, args.threads, args.smoke)
    height, width = parse_size(args.size)
    count = args.train_images + args.val_images
    print("# One epoch, end to end\n")
    print("\n".join(machine_lines(device)))
    root = find_data(args.pairs, "pairs")
    if root is None:
        root = generate_pairs(scratch / "generated_pairs", count)
        print(f"- pairs: real data not found; {count} generated random JPEGs")
    started = time.perf_counter()
    prepare_cache(
        root, scratch / "cache", ["train"], (height, width), "pairs", max_images=count,
        workers=1 if args.smoke else None,
    )  # fmt: skip
    prepare_seconds = time.perf_counter() - started
    print(
        f"- {args.train_images} training + {args.val_images} validation images of {root}, "
        f"{height}x{width}, UNet width {args.width} depth {args.depth} ({args.upsampling} "
        f"upsampling), batch {args.batch_size}, device {device}"
    )
    paths = [path.strip() for path in args.paths.split(",") if path.strip()]
    unknown = sorted(set(paths) - set(PATHS))
    if unknown or "cityseg" not in paths:
        raise SystemExit(f"--paths: give cityseg and any of {', '.join(PATHS)}; got {args.paths}")
    results = {}
    for path in paths:
        allocator = path.partition("+")[2]
        if allocator and find_allocator(allocator) is None:
            print(f"- {path}: lib{allocator} is not installed; left out")
            continue
        if args.smoke:  # in this process: seconds matter more than allocators here
            results[path] = run_path(argparse.Namespace(**{
                **vars(args), "path": path, "root": str(root), "cache": str(scratch / "cache"),
            }))  # fmt: skip
        else:
            results[path] = run_in_subprocess(args, path, root, scratch)
        print(f"  {path}: {results[path]}", file=sys.stderr, flush=True)
    print("- baseline: float32, contiguous, DataLoader(num_workers=0), allocator glibc")
    for path, result in results.items():
        if "setup" in result:
            print(f"- {path}: {result['setup']}")
    print(f"- cache prepared once in {prepare_seconds:.1f} s ({count / prepare_seconds:.0f} img/s)")
    print()
    rows = []
    for path, result in results.items():
        train_rate = args.train_images / result["train_seconds"]
        rows.append(
            [
                path, f"{result['train_seconds']:.1f}", f"{result['data_wait_seconds']:.1f}",
                f"{result['val_seconds']:.1f}", f"{result['metric_seconds']:.3f}",
                f"{result['epoch_seconds']:.1f}", f"{train_rate:.2f}", f"{result['mean_iou']:.4f}",
            ]
        )  # fmt: skip
    headers = [
        "path", "train s", "of which data wait s", "validation s", "of which metrics s",
        "epoch s", "train img/s", "val mIoU",
    ]  # fmt: skip
    print(markdown_table(headers, rows))
    print("\nRatios (same run):")
    for line in ratio_lines(results, prepare_seconds):
        print(f"- {line}")


def ratio_lines(results: dict, prepare_seconds: float) -> list[str]:
    """The epoch time of every other path over cityseg's default, and the metric speed-up."""
    default = results["cityseg"]["epoch_seconds"]
    lines = []
    if "baseline" in results:
        baseline = results["baseline"]
        lines += [
            f"epoch: cityseg {baseline['epoch_seconds'] / default:.2f}x faster than the "
            f"notebook-style baseline (target >= {TARGET:g}x at the default size, >= 1.3x at the "
            "peer's settings)",
            "epoch including the one-off cache preparation: "
            f"{baseline['epoch_seconds'] / (default + prepare_seconds):.2f}x",
            "metrics (per-class loops vs bincount confusion): "
            f"{baseline['metric_seconds'] / max(results['cityseg']['metric_seconds'], 1e-9):.0f}x",
        ]
    if "fp32" in results:
        lines.append(
            f"epoch: cityseg {results['fp32']['epoch_seconds'] / default:.2f}x faster than its "
            "own data path in float32, contiguous (target >= 2x at the tiny preset)"
        )
    for path, result in results.items():
        if path.startswith("cityseg+"):
            gain = default / result["epoch_seconds"]
            verdict = "beats the default by more than 5%" if gain > 1.05 else "no faster (ok)"
            lines.append(f"epoch: {path} {gain:.2f}x the default's speed: {verdict}")
    return lines


def run_in_subprocess(args, path: str, root: Path, scratch: Path) -> dict:
    """Run one path in a fresh Python (its own allocator, no warm state from the other)."""
    result = scratch / f"{path}.json"
    command = [
        sys.executable, str(Path(__file__).resolve()), "--path", path, "--root", str(root),
        "--cache", str(scratch / "cache"), "--result", str(result),
        "--train-images", str(args.train_images), "--val-images", str(args.val_images),
        "--width", str(args.width), "--depth", str(args.depth), "--upsampling", args.upsampling,
        "--size", args.size, "--batch-size", str(args.batch_size), "--device", args.device,
    ]  # fmt: skip
    if args.threads or args.smoke:
        command += ["--threads", str(args.threads or 1)]
    if args.precision:
        command += ["--precision", args.precision]
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env["CITYSEG_ALLOCATOR"] = path.partition("+")[2] or "system"
    if path == "cityseg":
        env.pop("CITYSEG_ALLOCATOR")  # the default, whatever it is
    subprocess.run(command, check=True, env=env)
    return json.loads(result.read_text())


if __name__ == "__main__":
    main()
