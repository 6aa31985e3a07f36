"""One training epoch plus validation, end to end: cityseg against a notebook-style baseline.

Same network, same images (the first N + M pairs JPEGs: N to train, M to validate), same
batch size, size and augmentation (horizontal flip), each in a fresh process:

* baseline, written as the seed notebooks are: PIL decode in ``__getitem__``, a nearest-colour loop
  over the 34 label colours in NumPy per sample, float32 tensors made in the dataset, a DataLoader
  with default settings (no workers), float32 eager in contiguous layout, and per-class Python
  loops for IoU (``for c in range(19): ((pred == c) & (gt == c)).sum() ...``); glibc malloc;
* fp32: cityseg's data path and metrics with its speed-ups for the network switched off (float32,
  contiguous layout): what the speed-ups themselves are worth;
* cityseg: the memory-mapped cache (its one-off preparation is timed apart), the training loader
  (uint8 batches; on a CPU read in the training process, elsewhere one worker per spare core),
  normalisation on the device, the precision and memory layout ``cityseg train`` takes by
  default (on a CPU the fastest of bf16/float32 x channels_last/contiguous, measured once and
  remembered: the measurement is timed apart), the bincount confusion matrix, the allocator
  ``cityseg train`` uses by default (tcmalloc where installed, else glibc's, tuned);
* train: ``cityseg train`` itself, one epoch with its defaults on the same cache, network, size
  and batch (its own 10% hold-out of the 300 images, chosen by its seed; its learning-rate
  schedule, progress line, metrics and run folder included); the times come from its
  metrics.jsonl, so the data wait and metric time are not known there;
* cityseg+SWITCH: the same as cityseg with one choice of the default changed (another
  allocator, passive OpenMP waiting, no loader worker or one, one thread or all, the other
  layout or precision), to check that no switch beats the default.

Presets (``_presets.py``): ``tiny`` is configs/tiny.yaml's network and batch (width 16, depth 4,
128x256, batch 8); ``unet64`` is a width-64 U-Net (depth 4, transposed convolutions, batch 1)
at 128x128, ``unet64-b8`` the same at batch 8; ``pairs`` the shipped model's
EfficientNet-Lite0 U-Net at 128x256, batch 8, and ``demo-half`` the same at 64x128 (the demo's
first stage). ``--paths all`` adds every switch of ``SWITCHES``: the default with one of its
choices changed (allocator, loader workers, threads, layout, precision).

    python benchmarks/bench_epoch.py --preset tiny --paths all
    python benchmarks/bench_epoch.py [--preset NAME] [--pairs DIR] [--train-images 32]
    python benchmarks/bench_epoch.py --smoke
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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
    stolen_seconds,
    stolen_share,
    use_fast_allocator,
)
from _epoch_paths import run_path
from _presets import PRESETS, describe_model

# What each switch changes in cityseg's default: (environment, description). The step setting
# switches are run for the precision and layout that the default did not choose.
SWITCHES = {
    "glibc": ({"CITYSEG_ALLOCATOR": "glibc"}, "glibc's allocator with its thresholds raised"),
    "glibc-defaults": ({"CITYSEG_ALLOCATOR": "glibc-defaults"}, "glibc's allocator untuned"),
    "jemalloc": ({"CITYSEG_ALLOCATOR": "jemalloc"}, "jemalloc preloaded"),
    "tcmalloc": ({"CITYSEG_ALLOCATOR": "tcmalloc"}, "tcmalloc preloaded"),
    "omp-passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, "OpenMP threads that sleep as they wait"),
    "workers0": ({}, "no loader worker: batches made between steps"),
    "workers1": ({}, "one loader worker (the default on a GPU; on a CPU the cache needs none)"),
    "threads1": ({}, "1 torch thread"),
    "threads-all": ({}, "all of torch's threads (one per core)"),
    "fp32": ({}, "float32, the default's layout"),
    "bf16": ({}, "bf16 autocast, the default's layout"),
    "contiguous": ({}, "contiguous layout, the default's precision"),
    "channels_last": ({}, "channels_last layout, the default's precision"),
}
PATHS = ("baseline", "fp32", "cityseg", "train", *(f"cityseg+{name}" for name in SWITCHES))


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--pairs", help="pairs dataset root (default: ../shared/data/pairs)")
    parser.add_argument("--train-images", type=int, help="default 32; 270 with --preset")
    parser.add_argument("--val-images", type=int, help="default 16; 30 with --preset")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="network, size and batch")
    parser.add_argument("--width", type=int, default=16, help="U-Net base width")
    parser.add_argument("--depth", type=int, default=4, help="U-Net levels")
    parser.add_argument("--upsampling", choices=("bilinear", "transpose"), default="bilinear")
    parser.add_argument(
        "--paths",
        default="baseline,fp32,cityseg",
        help=f"comma-separated paths to run: {', '.join(PATHS)}, or 'all'",
    )
    parser.add_argument("--size", default="256x512", metavar="HxW")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--precision", help="cityseg path: fp32, bf16, fp16 (default: see above)")
    parser.add_argument("--rounds", type=int, default=1, help="run every path this many times")
    parser.add_argument("--path", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)  # ModelConfig fields, JSON
    parser.add_argument("--setting", help=argparse.SUPPRESS)  # the default's, JSON
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_arguments()
    if args.preset:
        args.train_images, args.val_images = args.train_images or 270, args.val_images or 30
        for name, value in PRESETS[args.preset].items():
            setattr(args, name, value)
    if args.smoke:
        args.train_images, args.val_images, args.size, args.batch_size = 4, 2, "64x128", 2
        args.paths, args.model = "baseline,fp32,cityseg,train", {"base_width": 4}
    args.train_images, args.val_images = args.train_images or 32, args.val_images or 16
    if isinstance(args.model, str):
        args.model = json.loads(args.model)
    elif args.model is None:
        args.model = {"base_width": args.width, "depth": args.depth, "upsampling": args.upsampling}
    if isinstance(args.setting, str):
        args.setting = json.loads(args.setting)
    if args.path and args.path.startswith("cityseg"):
        use_fast_allocator()
    if args.path:
        result = run_path(args)
        Path(args.result).write_text(json.dumps(result))
        return
    with tempfile.TemporaryDirectory(prefix="cityseg_bench_epoch_") as scratch:
        compare(args, Path(scratch))


def compare(args, scratch: Path) -> None:
    from cityseg.config import load_config
    from cityseg.data.prepare import prepare_cache
    from cityseg.runtime.allocator import LIBRARIES, default_allocator, find_allocator
    from cityseg.train.step_setting import choose_step_setting

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
        f"{height}x{width}, {describe_model(args.model)}, batch {args.batch_size}, "
        f"device {device}"
    )
    config = bench_config(args, root, scratch)
    started = time.perf_counter()
    setting, note = choose_step_setting(load_config(config), device, args.batch_size)
    args.setting = {
        "precision": setting.precision,
        "channels_last": setting.channels_last,
        "threads": setting.threads,
    }
    print(f"- default step setting: {setting.describe()} ({note or 'the only candidate'}; "
          f"{time.perf_counter() - started:.1f} s)")  # fmt: skip
    paths = [path.strip() for path in args.paths.split(",") if path.strip()]
    if paths == ["all"]:
        chosen = {
            setting.precision,
            "channels_last" if setting.channels_last else "contiguous",
            "threads1" if setting.threads == 1 else "threads-all",
            "workers0" if device.type == "cpu" else "workers1",  # the cache's default
            default_allocator(),
        }
        paths = [path for path in PATHS if path.partition("+")[2] not in chosen]
    unknown = sorted(set(paths) - set(PATHS))
    if unknown or "cityseg" not in paths:
        raise SystemExit(f"--paths: give cityseg and any of {', '.join(PATHS)}; got {args.paths}")
    missing = [p for p in paths if p.partition("+")[2] in LIBRARIES and not find_allocator(p[8:])]
    for path in missing:
        print(f"- {path}: lib{path[8:]} is not installed; left out")
    runs: dict[str, list[dict]] = {}
    for _ in range(args.rounds):  # in turns: a drift of the machine's speed falls on all alike
        for path in [p for p in paths if p not in missing]:
            stolen, started = stolen_seconds(), time.perf_counter()
            if path == "train":
                result = run_train_command(args, config, scratch)
            elif args.smoke:  # in this process: seconds matter more than allocators here
                result = run_path(argparse.Namespace(**{
                    **vars(args), "path": path, "root": str(root),
                    "cache": str(scratch / "cache"),
                }))  # fmt: skip
            else:
                result = run_in_subprocess(args, path, root, scratch)
            result["stolen"] = stolen_share(stolen, stolen_seconds(), time.perf_counter() - started)
            runs.setdefault(path, []).append(result)
            print(f"  {path}: {result}", file=sys.stderr, flush=True)
    results = {path: median_run(found) for path, found in runs.items()}
    print("- baseline: float32, contiguous, DataLoader(num_workers=0), glibc's allocator untuned")
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
                path, f"{result['train_seconds']:.1f}", seconds(result, "data_wait_seconds", 1),
                f"{result['val_seconds']:.1f}", seconds(result, "metric_seconds", 3),
                " / ".join(f"{run['epoch_seconds']:.1f}" for run in runs[path]),
                f"{train_rate:.2f}",
                f"{result.get('system_seconds', 0):.1f}", seconds(result, "peak_rss_mib", 0),
                " / ".join(percent(run.get("stolen")) for run in runs[path]),
                f"{result['mean_iou']:.4f}",
            ]
        )  # fmt: skip
    headers = [
        "path", "train s", "of which data wait s", "validation s", "of which metrics s",
        "epoch s (each round)", "train img/s", "system CPU s", "peak RSS MiB",
        "CPU stolen (each round)", "val mIoU",
    ]  # fmt: skip
    print(markdown_table(headers, rows))
    if args.rounds > 1:
        print(
            f"\n{args.rounds} rounds, the paths in turns; each row is the round with the median "
            "epoch (the faster of two), every round's epoch in its column"
        )
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
            f"epoch: cityseg {speed(baseline['epoch_seconds'] / default)} the "
            "notebook-style baseline",
            "epoch including the one-off cache preparation: "
            f"{baseline['epoch_seconds'] / (default + prepare_seconds):.2f}x",
            "metrics (per-class loops vs bincount confusion): "
            f"{baseline['metric_seconds'] / max(results['cityseg']['metric_seconds'], 1e-9):.0f}x",
        ]
    if "baseline" in results and "train" in results:
        command = results["baseline"]["epoch_seconds"] / results["train"]["epoch_seconds"]
        lines.append(f"epoch: cityseg train itself {speed(command)} the notebook-style baseline")
    if "fp32" in results:
        lines.append(
            f"epoch: cityseg {speed(results['fp32']['epoch_seconds'] / default)} its "
            "own data path in float32, contiguous"
        )
    for path, result in results.items():
        if path.startswith("cityseg+"):
            gain = default / result["epoch_seconds"]
            verdict = "beats the default by more than 5%" if gain > 1.05 else "no faster (ok)"
            lines.append(f"epoch: {path} {gain:.2f}x the default's speed: {verdict}")
    return lines


def median_run(runs: list[dict]) -> dict:
    """The run of the median epoch (the faster of two)."""
    return sorted(runs, key=lambda run: run["epoch_seconds"])[(len(runs) - 1) // 2]


def seconds(result: dict, key: str, digits: int) -> str:
    return "-" if result.get(key) is None else f"{result[key]:.{digits}f}"


def percent(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.0f}%"


def speed(ratio: float) -> str:
    """'2.53x as fast as' or, below one, '0.48x as fast as (slower than)'."""
    return f"{ratio:.2f}x as fast as" + (" (slower than)" if ratio < 1 else "")


def bench_config(args, root: Path, scratch: Path) -> Path:
    """The YAML configuration of a ``cityseg train`` run of this bench: its network, size, batch
    and cache, every other setting the default."""
    import yaml

    count = args.train_images + args.val_images
    height, width = parse_size(args.size)
    config = {
        "data": {
            "format": "pairs", "root": str(root), "cache": str(scratch / "cache"),
            "size": [height, width], "scale": [1.0, 1.0], "hflip": 0.5, "max_images": count,
            "val_fraction": args.val_images / count,
        },
        "model": args.model,
        "train": {"epochs": 1, "batch_size": args.batch_size, "seed": 0, "log_every": 10_000},
    }  # fmt: skip
    if args.precision:
        config["train"]["precision"] = args.precision
    path = scratch / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_train_command(args, config: Path, scratch: Path) -> dict:
    """``cityseg train`` for one epoch with ``config``, the default allocator and speed cache."""
    run = scratch / "train_run"
    shutil.rmtree(run, ignore_errors=True)  # a fresh run each round
    command = [sys.executable, "-m", "cityseg", "train", "--config", str(config), "--out", str(run)]
    env = default_environment()
    if args.threads or args.smoke:
        env["OMP_NUM_THREADS"] = str(args.threads or 1)
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    if status:
        raise SystemExit(f"cityseg train failed ({status}): {' '.join(command)}")
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    train_seconds = args.train_images / record["images_per_s"]
    return {
        "train_seconds": train_seconds,
        "data_wait_seconds": None,
        "val_seconds": record["time"] - train_seconds,
        "metric_seconds": None,
        "epoch_seconds": record["time"],
        "mean_iou": record["mean_iou"] or 0.0,
        "system_seconds": usage.ru_stime,
        "peak_rss_mib": None,  # its maximum counts the parent's memory at the fork
        "setup": "cityseg train --config (the bench's network, size, batch and cache), "
        "every other setting its default",
    }


def default_environment() -> dict[str, str]:
    """This environment without any allocator or OpenMP waiting choice: what a user gets by
    default."""
    from cityseg.runtime.allocator import ENVIRONMENT

    env = dict(os.environ)
    for name in (*ENVIRONMENT, "OMP_WAIT_POLICY"):
        env.pop(name, None)
    return env


def run_in_subprocess(args, path: str, root: Path, scratch: Path) -> dict:
    """Run one path in a fresh Python (its own allocator, no warm state from the other)."""
    result = scratch / f"{path}.json"
    command = [
        sys.executable, str(Path(__file__).resolve()), "--path", path, "--root", str(root),
        "--cache", str(scratch / "cache"), "--result", str(result),
        "--train-images", str(args.train_images), "--val-images", str(args.val_images),
        "--model", json.dumps(args.model), "--setting", json.dumps(args.setting),
        "--size", args.size,
        "--batch-size", str(args.batch_size), "--device", args.device,
    ]  # fmt: skip
    if args.threads or args.smoke:
        command += ["--threads", str(args.threads or 1)]
    env = default_environment()
    env.update(SWITCHES.get(path.partition("+")[2], ({}, ""))[0])
    subprocess.run(command, check=True, env=env)
    return json.loads(result.read_text())


if __name__ == "__main__":
    main()
