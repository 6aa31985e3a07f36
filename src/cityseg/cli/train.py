"""`cityseg train`: train a U-Net from a YAML configuration, or resume a run."""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """\
examples:
  cityseg train --config configs/tiny.yaml --out runs/tiny data.root=DATA data.format=pairs
  cityseg train --config configs/unet_cityscapes.yaml --out runs/unet data.root=CITYSCAPES
  cityseg train --resume runs/tiny train.epochs=20
  torchrun --nproc_per_node 4 -m cityseg train --config configs/cityscapes.yaml --out runs/ddp ...

Any key of the configuration can be overridden as section.key=value (sections: data, model, loss,
train); the value is read as YAML. The resolved configuration is written to RUN_DIR/config.yaml.
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a U-Net (or resume a run)",
        description="Train a U-Net on Cityscapes (official layout or pairs), or resume a run.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", type=Path, help="YAML configuration (default: built-in defaults)"
    )
    parser.add_argument(
        "--out", type=Path, help="run folder to create (checkpoints, metrics, curves)"
    )
    parser.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its last checkpoint",
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="section.key=value", help="configuration overrides"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cityseg.config import load_config
    from cityseg.errors import ConfigError

    if args.resume is not None:
        if args.config is not None or args.out is not None:
            raise ConfigError(
                "--resume RUN_DIR reads RUN_DIR/config.yaml and writes to RUN_DIR; "
                "drop --config/--out and give changes as section.key=value"
            )
        config_path = args.resume / "config.yaml"
        if not config_path.is_file():
            raise ConfigError(
                f"{config_path}: not found; --resume needs a run folder made by cityseg train"
            )
        config, run_dir = load_config(config_path, args.overrides), args.resume
    else:
        if args.out is None:
            raise ConfigError(
                "--out RUN_DIR is required to start a run (or --resume RUN_DIR to continue one)"
            )
        config, run_dir = load_config(args.config, args.overrides), args.out

    from cityseg.train.engine import train

    train(config, run_dir, resume=args.resume is not None)
    return 0
