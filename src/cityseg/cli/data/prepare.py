"""`cityseg data prepare ROOT --out CACHE`: decode and resize a dataset once into memory maps."""

from __future__ import annotations

import argparse

from cityseg.cli._arguments import size_type


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help="decode and resize a dataset once into a memory-mapped cache",
        description=(
            "Decode every image and label of the chosen splits once, resize them, and store them "
            "as memory-mapped uint8 arrays (CACHE/<split>/images.npy, labels.npy, index.json) that "
            "training and evaluation read instead of the PNG/JPEG files (data.cache=CACHE). The "
            "cache records its source, size and a fingerprint of the source files, and refuses to "
            "be used with another. A split already up to date is kept; an interrupted prepare "
            "leaves no half-written split."
        ),
    )
    parser.add_argument("root", metavar="ROOT", help="dataset folder (Cityscapes layout or pairs)")
    parser.add_argument("--out", required=True, metavar="CACHE", help="cache folder to write")
    parser.add_argument(
        "--size",
        type=size_type(maximum=None),
        metavar="HxW",
        help="resize every image to height x width, e.g. 256x512 (default: native size)",
    )
    parser.add_argument(
        "--split",
        action="append",
        dest="splits",
        metavar="S",
        help="split to cache; repeat for several (default: every labelled split)",
    )
    parser.add_argument(
        "--format", choices=("auto", "cityscapes", "pairs"), default="auto", help="dataset format"
    )
    parser.add_argument(
        "--workers", type=_positive, metavar="N", help="decoding processes (default: all cores)"
    )
    parser.add_argument(
        "--max-images", type=_positive, metavar="N", help="cache only the first N of each split"
    )
    parser.add_argument("--force", action="store_true", help="rebuild splits that are up to date")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cityseg.data.prepare import prepare_cache
    from cityseg.outputs import check_output_folder

    check_output_folder(args.out)
    results = prepare_cache(
        args.root,
        args.out,
        splits=args.splits,
        size=args.size,
        format=args.format,
        workers=args.workers,
        max_images=args.max_images,
        force=args.force,
        progress=True,
    )
    for result in results:
        height, width = result.size
        what = f"{result.split}: {result.count} images at {height}x{width} in {result.folder}"
        if result.up_to_date:
            print(f"{what} (up to date, kept; --force rebuilds it)")
        else:
            rate = result.count / max(result.seconds, 1e-9)
            print(
                f"{what} ({result.bytes / 2**20:.1f} MiB, {result.seconds:.1f} s, "
                f"{rate:.1f} images/s)"
            )
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got '{text}'")
    return value
