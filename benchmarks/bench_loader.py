"""The data loader alone (images/s), from the image files and from the memory-mapped cache, against
the rate at which the model consumes images in training, measured in the same run.

For each format (pairs JPEGs, official Cityscapes PNGs at 2048x1024):

* read: ``dataset[i]`` resized to the training size in this process, no augmentation (files:
  decode + resize; cache: a copy out of the memory map; native cache, made without ``--size``:
  a copy + resize): how fast one core turns storage into pixels of the training size;
* loader: the training DataLoader of ``cityseg.data.loader.build_loaders`` (augmentation, uint8
  batches) with one worker per spare core, timed after its first batch.

The consumption rate is the training step of the same configuration (default configs/tiny.yaml:
width 16 at 128x256, batch 8, the precision and layout the trainer takes), the fastest model the
project ships and so the hardest to feed. Target: loader >= 3x consumption.

    python benchmarks/bench_loader.py [--pairs DIR] [--cityscapes DIR] [--config FILE]
    python benchmarks/bench_loader.py --smoke
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    REPO,
    add_common_arguments,
    find_data,
    format_rate,
    generate_pairs,
    machine_lines,
    markdown_table,
    median,
    resolve_device,
    time_calls,
    use_fast_allocator,
)

TARGET = 3.0
ORIGINS = ("files", "cache")


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--pairs", help="pairs dataset root (default: ../shared/data/pairs)")
    parser.add_argument("--cityscapes", help="Cityscapes root (default: ../shared/data/cityscapes)")
    parser.add_argument("--config", default=str(REPO / "configs" / "tiny.yaml"))
    parser.add_argument("--images", type=int, default=400, help="pairs images to read")
    parser.add_argument("--frames", type=int, default=64, help="Cityscapes frames (cycled)")
    parser.add_argument("--workers", help="loader workers (default: data.workers of the config)")
    return parser.parse_args()


def main() -> None:
    use_fast_allocator()
    args = parse_arguments()
    import cv2

    cv2.setNumThreads(1)  # per-process rates; and forked workers must not inherit OpenCV threads
    from cityseg.config import load_config

    device = resolve_device(args.device, args.threads, args.smoke)
    config = load_config(args.config, [])
    if args.smoke:
        config.data.size, config.model.base_width, config.train.batch_size = [64, 128], 4, 2
        args.images, args.frames = 12, 4
    if args.workers is not None:
        config.data.workers = args.workers
    scratch = Path(tempfile.mkdtemp(prefix="cityseg_bench_loader_"))
    try:
        run(args, config, device, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(args, config, device, scratch: Path) -> None:
    from _steps import build_step

    from cityseg.data.loader import training_workers

    print("# Data loader throughput\n")
    print("\n".join(machine_lines(device)))
    workers = training_workers(config.data.workers)
    size = tuple(config.data.size)
    model_rate = consumption_rate(config, device, build_step, 1 if args.smoke else 5)
    print(
        f"- configuration {Path(args.config).name}: width {config.model.base_width}, "
        f"{size[0]}x{size[1]}, batch {config.train.batch_size}, {workers} loader worker(s); "
        f"model consumption {format_rate(model_rate)} img/s"
    )
    rates, notes = {}, []
    for data_format, root, count in sources(args, scratch, notes):
        origins = ("files", "cache", "native cache") if data_format == "cityscapes" else ORIGINS
        for origin in origins:
            dataset, seconds = open_source(data_format, root, origin, size, count, scratch, args)
            if seconds is not None:
                height, width = dataset.size
                notes.append(
                    f"{origin} of {data_format} ({len(dataset)} images at {height}x{width}) "
                    f"prepared in {seconds:.1f} s ({len(dataset) / seconds:.1f} img/s)"
                )
            dataset = cycled(dataset, count)
            rates[data_format, origin] = (
                read_rate(dataset, size),
                loader_rate(dataset, config, device),
            )
            print(f"  {data_format} {origin}: {rates[data_format, origin]}", file=sys.stderr)
    print("\n".join(f"- {note}" for note in notes) + "\n")
    headers = [
        "format", "source", "read img/s (1 process, no aug.)",
        f"loader img/s ({workers} worker, aug.)", "loader / model", f">= {TARGET:g}x",
    ]  # fmt: skip
    rows = [
        [
            data_format, origin, format_rate(read), format_rate(loader),
            f"{loader / model_rate:.1f}x", "yes" if loader >= TARGET * model_rate else "no",
        ]
        for (data_format, origin), (read, loader) in rates.items()
    ]  # fmt: skip
    print(markdown_table(headers, rows))
    print("\nRatios (same run):")
    for (data_format, origin), (read, loader) in rates.items():
        if origin != "files":
            files_read, files_loader = rates[data_format, "files"]
            print(
                f"- {data_format} {origin}: reads {read / files_read:.0f}x faster than decoding "
                f"the files; the loader runs {loader / files_loader:.1f}x faster on it"
            )


def consumption_rate(config, device, build_step, iterations: int) -> float:
    """Training images/s of the configuration's model at its size and batch, in the precision and
    layout the trainer takes for it."""
    from cityseg.train.step_setting import choose_step_setting

    batch = config.train.batch_size
    setting, _ = choose_step_setting(config, device, batch)
    size = tuple(config.data.training_size)
    step = build_step(
        device, config.model, size, batch, setting.precision, setting.channels_last, False
    )
    times = time_calls(step, device, warmup=1, iterations=iterations, max_seconds=8)
    return config.train.batch_size / median(times)


def sources(args, scratch: Path, notes: list[str]):
    """(format, root, images) of each dataset to read; generated pairs when none is found."""
    pairs = find_data(args.pairs, "pairs")
    if pairs is None:
        pairs = generate_pairs(scratch / "generated_pairs", args.images)
        notes.append(f"pairs: real data not found; {args.images} generated random JPEGs")
    yield "pairs", pairs, args.images
    cityscapes = find_data(args.cityscapes, "cityscapes")
    if cityscapes is None:
        notes.append("cityscapes: real data not found; left out")
        return
    yield "cityscapes", cityscapes, args.frames


def open_source(data_format, root, origin, size, count, scratch, args):
    """The dataset from its files, or from a cache prepared now at the training size (or at the
    images' own size for the native cache), and how long preparing it took."""
    from cityseg.data import open_dataset
    from cityseg.data.cache import CachedDataset
    from cityseg.data.prepare import prepare_cache

    max_images = count if data_format == "pairs" else None
    if origin == "files":
        return open_dataset(root, "train", data_format, max_images=max_images), None
    cache_size = None if origin == "native cache" else size
    cache = scratch / f"cache_{data_format}_{origin.replace(' ', '_')}"
    workers = 1 if args.smoke else None
    started = time.perf_counter()
    prepare_cache(root, cache, ["train"], cache_size, data_format, workers, max_images=max_images)
    seconds = time.perf_counter() - started
    return CachedDataset(cache, "train", root, cache_size, data_format), seconds


def cycled(dataset, count: int):
    """``count`` items, going round the dataset as often as needed."""
    from cityseg.data.loader import SubsetDataset

    return SubsetDataset(dataset, [i % len(dataset) for i in range(count)])


def read_rate(dataset, size) -> float:
    """Items/s of ``dataset[i]`` resized to ``size`` (a no-op for a cache made at that size)."""
    from cityseg.data.transforms import resize_pair

    resize_pair(*dataset[0], size)  # first-call costs (the pairs colour table, page cache)
    started = time.perf_counter()
    for index in range(len(dataset)):
        resize_pair(*dataset[index], size)
    return len(dataset) / (time.perf_counter() - started)


def loader_rate(dataset, config, device) -> float:
    """Images/s of the training loader after its first batch (workers started), with pinned
    batches on CUDA as the trainer has them."""
    from cityseg.data.loader import Splits, build_loaders

    splits = Splits(dataset, None, "bench", "")
    pin_memory = device.type == "cuda"
    loader, _ = build_loaders(
        splits, config.data, config.train.batch_size, seed=0, pin_memory=pin_memory
    )
    iterator = iter(loader)
    next(iterator)
    started, images = time.perf_counter(), 0
    for images_batch, _ in iterator:
        images += images_batch.shape[0]
    return images / (time.perf_counter() - started)


if __name__ == "__main__":
    main()
