"""`cityseg data check ROOT`: detect the format, verify every file, summarise splits and classes."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "check",
        help="verify a dataset folder and summarise its splits and classes",
        description=(
            "Detect the dataset format (official Cityscapes layout or pairs), verify that every "
            "image has its label, that files are complete and sizes match, decode a sample of "
            "images per split and print the share of pixels per class. Exit status 2 and one line "
            "per problem on stderr when the dataset is not usable."
        ),
    )
    parser.add_argument("root", metavar="ROOT", help="dataset folder")
    parser.add_argument("--split", help="check only this split (default: all)")
    parser.add_argument(
        "--sample",
        type=_non_negative,
        default=20,
        metavar="N",
        help="images per split to decode in full (default: 20; 0: headers only)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cityseg.data.check import check_dataset, format_report

    report = check_dataset(args.root, split=args.split, sample=args.sample, progress=True)
    print(format_report(report))
    return 0


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got '{text}'")
    return value
