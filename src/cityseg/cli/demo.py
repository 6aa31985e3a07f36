"""`cityseg demo`: generate street scenes, train, evaluate, predict and report, offline."""

from __future__ import annotations

import argparse
from pathlib import Path

from cityseg.cli._arguments import fraction
from cityseg.cli.data.generate import frame_size


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the whole product on generated street scenes, in a few minutes",
        description=(
            "Generate a small street-scene data set, fine-tune the shipped pairs model on it, "
            "evaluate it (with an HTML report) and predict a few images. Runs offline on any "
            "machine."
        ),
    )
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder")
    parser.add_argument(
        "--preset",
        choices=["quick", "default", "long"],
        default="default",
        help="quick: under a minute, smoke test; default: a few minutes; long: better model",
    )
    parser.add_argument("--train-images", type=int, help="generated training frames")
    parser.add_argument("--val-images", type=int, help="generated validation frames")
    parser.add_argument(
        "--half-size-epochs",
        type=int,
        help="epochs at half the frame size before the full-size ones (0: none)",
    )
    parser.add_argument("--epochs", type=int, help="epochs at full size")
    parser.add_argument("--size", type=frame_size, metavar="HxW", help="frame size (128x256)")
    parser.add_argument(
        "--variation",
        type=fraction,
        help="how much the photos vary in lighting and texture, 0..1 (demo 0.2; data generate 1)",
    )
    parser.add_argument(
        "--from-scratch",
        action="store_true",
        help="start from the ImageNet encoder alone instead of the shipped pairs model",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for data and training")
    parser.add_argument(
        "overrides", nargs="*", metavar="section.key=value", help="training config overrides"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cityseg.demo import PRESETS, DemoSettings, run_demo
    from cityseg.errors import ConfigError
    from cityseg.outputs import check_output_folder

    check_output_folder(args.out)

    chosen = dict(PRESETS[args.preset])
    for name in ("train_images", "val_images", "half_size_epochs", "epochs", "variation"):
        if getattr(args, name) is not None:
            chosen[name] = getattr(args, name)
    if args.size is not None:
        chosen["height"], chosen["width"] = args.size
    lowest = {"train_images": 8, "val_images": 1, "half_size_epochs": 0, "epochs": 1}
    values = {name: chosen.get(name, getattr(DemoSettings, name)) for name in lowest}
    problems = [
        f"--{name.replace('_', '-')} {values[name]}: must be at least {low}"
        for name, low in lowest.items()
        if values[name] < low
    ]
    if args.seed < 0:
        problems.append(f"--seed {args.seed}: must be at least 0")
    if problems:
        raise ConfigError(*problems)
    if args.from_scratch:
        chosen["init_from"] = None
    run_demo(DemoSettings(out=args.out, seed=args.seed, **chosen), args.overrides)
    return 0
