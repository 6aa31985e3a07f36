"""`cityseg data generate OUT`: write the built-in generated street scenes as a data set."""

from __future__ import annotations

import argparse
from pathlib import Path

from cityseg.cli._arguments import fraction, size_type

MIN_SIDE = 32
frame_size = size_type(minimum=MIN_SIDE, maximum=None)
"""``--size`` of generated frames: at least 32x32."""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="write generated street scenes in the official Cityscapes layout",
        description="Generate street scenes with exact ground truth (labelIds, instanceIds, "
        "polygons) in the official Cityscapes layout: OUT/leftImg8bit/<split>/<city>/ and "
        "OUT/gtFine/<split>/<city>/. The same seed always gives the same data.",
    )
    parser.add_argument("out", type=Path, metavar="OUT", help="folder to write the data set to")
    parser.add_argument("--train", type=_count, default=40, metavar="N", help="train frames (40)")
    parser.add_argument("--val", type=_count, default=10, metavar="N", help="val frames (10)")
    parser.add_argument("--test", type=_count, default=5, metavar="N", help="test frames (5)")
    parser.add_argument(
        "--size", type=frame_size, default=(256, 512), metavar="HxW", help="image size (256x512)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument(
        "--variation",
        type=fraction,
        default=1.0,
        metavar="V",
        help="lighting and texture variation, 0 (calm) to 1 (full, the default); never the labels",
    )
    parser.add_argument(
        "--pairs",
        action="store_true",
        help="also write the Kaggle pairs format (OUT/pairs/<split>/<n>.jpg, 256x512)",
    )
    parser.add_argument(
        "--no-color",
        dest="color",
        action="store_false",
        help="skip the *_gtFine_color.png label pictures",
    )
    parser.set_defaults(run=run)


def run(args) -> int:
    import time

    from cityseg.errors import DataError
    from cityseg.scenes import generate_dataset

    if args.out.exists() and not args.out.is_dir():
        raise DataError(
            f"{args.out}: is a file, not a folder; choose a folder to write the data to"
        )
    splits = {"train": args.train, "val": args.val, "test": args.test}
    height, width = args.size
    start = time.perf_counter()
    try:
        generate_dataset(
            args.out,
            splits,
            height,
            width,
            seed=args.seed,
            pairs=args.pairs,
            variation=args.variation,
            color=args.color,
            progress=True,
        )
    except OSError as error:
        raise DataError(
            f"{args.out}: cannot write the data set ({error}); choose a writable folder"
        ) from error
    seconds = time.perf_counter() - start
    counts = ", ".join(f"{split} {count}" for split, count in splits.items())
    extra = " and pairs" if args.pairs else ""
    print(
        f"wrote {sum(splits.values())} frames ({counts}) of {height}x{width}{extra} "
        f"to {args.out} in {seconds:.1f} s"
    )
    return 0


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of frames (0 or more), got {text!r}")
    return value
