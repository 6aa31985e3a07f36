"""`cityseg data download (cityscapes | pairs) --out DIR`: from nothing to a checked dataset."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "download",
        help="download Cityscapes (an account) or the Kaggle pairs set, unpack and check it",
        description=(
            "cityscapes: log in with CITYSCAPES_USERNAME / CITYSCAPES_PASSWORD (or a prompt; "
            "nothing is stored), download the packages with resume and progress, verify their "
            "MD5 sums, unzip them into the official layout and check it. pairs: the Kaggle "
            "'cityscapes-image-pairs' set through kagglehub, or --from-zip an archive you have; "
            "the nested duplicate folder is flattened into OUT/train and OUT/val and checked."
        ),
    )
    parser.add_argument("dataset", choices=("cityscapes", "pairs"), help="which data set")
    parser.add_argument("--out", type=Path, required=True, help="the dataset folder to write")
    parser.add_argument(
        "--packages", nargs="+", metavar="NAME",
        default=["gtFine_trainvaltest", "leftImg8bit_trainvaltest"],
        help="cityscapes packages (default: gtFine_trainvaltest leftImg8bit_trainvaltest)",
    )  # fmt: skip
    parser.add_argument("--keep-zips", action="store_true", help="keep the downloaded archives")
    parser.add_argument("--from-zip", type=Path, metavar="FILE", help="pairs: an archive you have")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cityseg.data.download import download_cityscapes, download_pairs
    from cityseg.errors import ConfigError
    from cityseg.outputs import check_output_folder

    check_output_folder(args.out)
    if args.dataset == "cityscapes":
        if args.from_zip is not None:
            raise ConfigError("--from-zip is for pairs; Cityscapes packages are downloaded")
        result = download_cityscapes(args.out, args.packages, keep_zips=args.keep_zips)
    else:
        if args.from_zip is not None and not args.from_zip.is_file():
            raise ConfigError(f"{args.from_zip}: no such archive; give the downloaded zip file")
        result = download_pairs(args.out, args.from_zip)
    print("\n".join(result.lines))
    config = "cityscapes" if args.dataset == "cityscapes" else "pairs_lite0"
    print(
        f"next: cityseg train --config configs/{config}.yaml --out runs/{args.dataset} "
        f"data.root={result.root}"
    )
    return 0
