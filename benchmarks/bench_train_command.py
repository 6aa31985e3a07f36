"""The whole ``cityseg train`` command, timed from the shell, as a user waits for it.

Each path is one ``cityseg train`` process on the same images, run in turns (``--rounds``):

* ``first``: the default with an empty speed cache (``CITYSEG_CACHE_DIR`` a fresh folder), as the
  first run of a configuration on a machine: it measures step settings where the run is long
  enough to gain from it, within a share of the run;
* ``remembered``: the default with the setting a ``first`` run left in its cache;
* ``fp32``: float32, contiguous (``train.precision=fp32 train.channels_last=false``): eager
  PyTorch as a notebook runs it.

Ratios: ``first`` against ``remembered`` (the cost of a first run; target: at most 5% slower) and
``fp32`` against ``remembered`` (what the default gains a user, fixed costs included; target 2x on
``configs/tiny.yaml``, one epoch of 200 pairs photos).

    python benchmarks/bench_train_command.py                                  # tiny.yaml
    python benchmarks/bench_train_command.py --config configs/pretrained_pairs.yaml \\
        --images 0 --epochs 1 --cache CACHE --paths first,remembered          # the shipped recipe
    python benchmarks/bench_train_command.py --smoke
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    REPO,
    add_common_arguments,
    find_data,
    generate_pairs,
    machine_lines,
    markdown_table,
    median,
    resolve_device,
    use_fast_allocator,
)

PATHS = ("first", "remembered", "fp32")
FP32 = ("train.precision=fp32", "train.channels_last=false")
SMOKE = ("model.base_width=4", "data.size=[32,64]", "train.batch_size=2", "data.workers=0")
TARGETS = {"first": 1.05, "fp32": 2.0}


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--pairs", help="pairs dataset root (default: ../shared/data/pairs)")
    parser.add_argument("--config", default=str(REPO / "configs" / "tiny.yaml"))
    parser.add_argument("--images", type=int, default=200, help="training images (0: all)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--cache", help="a `cityseg data prepare` cache of --pairs (data.cache)")
    parser.add_argument(
        "--paths", default=",".join(PATHS), help="comma-separated: " + ", ".join(PATHS)
    )
    parser.add_argument("--rounds", type=int, default=2, help="runs of every path, in turns")
    return parser.parse_args()


def cityseg_command() -> list[str]:
    """The ``cityseg`` console command beside this Python (it chooses the allocator the way a
    user's shell gets it), else ``python -m cityseg``."""
    script = Path(sys.executable).with_name("cityseg")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "cityseg"]


def train_arguments(args: argparse.Namespace, pairs: Path, out: Path) -> list[str]:
    """``cityseg train`` of ``--config`` on ``pairs`` into ``out``."""
    words = ["train", "--config", args.config, "--out", str(out), f"data.root={pairs}"]
    words += ["data.format=pairs", f"train.epochs={args.epochs}", "train.progress=false"]
    if args.images:
        words.append(f"data.max_images={args.images}")
    if args.cache:
        words.append(f"data.cache={args.cache}")
    return words + list(SMOKE if args.smoke else ())


def run_once(path: str, args, pairs: Path, work: Path, run_index: int) -> float:
    """Seconds of one ``cityseg train`` of ``path``, from process start to exit."""
    cache = work / f"speed_{path}_{run_index}"
    if path == "remembered":
        cache = work / "speed_remembered"
    if path != "remembered" or not cache.is_dir():
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True)
    out = work / f"run_{path}_{run_index}"
    words = train_arguments(args, pairs, out) + (list(FP32) if path == "fp32" else [])
    env = dict(os.environ, CITYSEG_CACHE_DIR=str(cache), PYTHONWARNINGS="ignore")
    start = time.perf_counter()
    done = subprocess.run(cityseg_command() + words, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{path}: cityseg train failed:\n{done.stderr[-2000:]}")
    shutil.rmtree(out, ignore_errors=True)
    return seconds


def main() -> None:
    use_fast_allocator()  # the commands inherit it, as from a user's shell after the first one
    args = parse_arguments()
    paths = [path for path in args.paths.split(",") if path]
    unknown = set(paths) - set(PATHS)
    if unknown:
        sys.exit(f"--paths: unknown {sorted(unknown)}; known: {', '.join(PATHS)}")
    device = resolve_device("cpu", args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench_train_command_"))
    try:
        pairs = None if args.smoke else find_data(args.pairs, "pairs")
        if args.smoke:
            args.rounds = 1
        if pairs is None:
            args.images = 8 if args.smoke else args.images
            pairs = generate_pairs(work / "pairs", max(args.images, 8) + 4)
        if "remembered" in paths:  # its setting, from a first run of its own
            run_once("remembered", args, pairs, work, -1)
        times: dict[str, list[float]] = {path: [] for path in paths}
        for run_index in range(args.rounds):
            for path in paths:
                times[path].append(run_once(path, args, pairs, work, run_index))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(*machine_lines(device), sep="\n")
    print(
        f"- {Path(args.config).name}, {args.images or 'all'} training images of {pairs}, "
        f"{args.epochs} epoch(s), {args.rounds} round(s) in turns"
    )
    rows = [
        [path, ", ".join(f"{t:.1f}" for t in values), f"{median(values):.1f}"]
        for path, values in times.items()
    ]
    print(markdown_table(["path", "whole command, s", "median s"], rows))
    print("\nRatios (same run):")
    if "remembered" in times:
        base = median(times["remembered"])
        if "first" in times:
            ratio = median(times["first"]) / base
            print(f"- first run / remembered: {ratio:.3f} (target <= {TARGETS['first']})")
        if "fp32" in times:
            ratio = median(times["fp32"]) / base
            print(f"- fp32 eager / default: {ratio:.2f}x (target >= {TARGETS['fp32']}x)")


if __name__ == "__main__":
    main()
