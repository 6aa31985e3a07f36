"""`cityseg evaluate (CHECKPOINT | --pretrained NAME) --data ROOT`: score a model on a split."""

from __future__ import annotations

import re
from pathlib import Path

from cityseg.cli._arguments import RESIZE_HELP, parse_resize, parse_scales, size
from cityseg.errors import ConfigError
from cityseg.inference.options import InferenceOptions


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a checkpoint on a labelled split (mIoU, official Cityscapes IoU/iIoU)",
        description="Run a checkpoint over a labelled split and write metrics.json, a confusion "
        "matrix and a per-class IoU chart. The network runs at the scale it was trained at "
        "(--resize changes it; the first line says which); scores are computed at the ground "
        "truth's resolution.",
    )
    parser.add_argument(
        "checkpoint",
        type=Path,
        nargs="?",
        help="checkpoint .pt written by cityseg train, or its run folder (unless --pretrained)",
    )
    parser.add_argument(
        "--pretrained",
        metavar="NAME",
        help="a checkpoint shipped with cityseg instead of CHECKPOINT (e.g. pairs), or "
        "hf:USER/NAME[@REVISION], a model on the Hugging Face Hub",
    )
    parser.add_argument("--data", type=Path, required=True, help="dataset folder (either format)")
    parser.add_argument("--split", default="val", help="labelled split to score (default: val)")
    parser.add_argument(
        "--format", default="auto", choices=("auto", "cityscapes", "pairs"), help="dataset format"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="output folder (default: eval_<split> beside the checkpoint; "
        "with --pretrained, ./eval_<name>_<split>)",
    )
    parser.add_argument(
        "--mode",
        default="whole",
        choices=("whole", "slide"),
        help="whole image, or overlapping tiles at full resolution (default: whole)",
    )
    parser.add_argument(
        "--resize",
        type=parse_resize,
        metavar="SIZE",
        help=RESIZE_HELP,
    )
    parser.add_argument(
        "--tile",
        type=size,
        metavar="HxW",
        help="slide mode tile (default: the training crop, else the training size)",
    )
    parser.add_argument(
        "--stride",
        type=size,
        metavar="HxW",
        help="slide mode step (default: 2/3 of the tile)",
    )
    parser.add_argument(
        "--window",
        default="gaussian",
        choices=("gaussian", "uniform"),
        help="tile blending (default: gaussian)",
    )
    parser.add_argument(
        "--tile-batch", type=int, default=4, help="tiles per forward pass (default: 4)"
    )
    parser.add_argument(
        "--tta", action="store_true", help="average over the flipped image and scales 0.75,1,1.25"
    )
    parser.add_argument(
        "--scales", type=parse_scales, metavar="S,S,..", help="average over these scales"
    )
    parser.add_argument("--max-images", type=int, metavar="N", help="evaluate only the first N")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=("fp32", "bf16", "fp16", "auto"),
        help="autocast format (default fp32)",
    )
    parser.add_argument("--channels-last", action="store_true", help="channels-last convolutions")
    parser.add_argument(
        "--workers", type=int, default=2, help="image-decoding processes (default: 2)"
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="also write report.html (best and worst images, where each class is missed most)",
    )
    parser.add_argument(
        "--worst", type=int, default=3, metavar="K", help="worst images in the report (3)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(run=run)


def _inference_options(args) -> InferenceOptions:
    return InferenceOptions.from_flags(
        args.mode,
        resize=args.resize,
        tta=args.tta,
        scales=args.scales,
        tile=args.tile,
        stride=args.stride,
        window=args.window,
        tile_batch=args.tile_batch,
        precision=args.precision,
        channels_last=args.channels_last,
    )


def _checkpoint(args) -> Path:
    """The checkpoint file: CHECKPOINT, or the shipped model --pretrained names (not both)."""
    if (args.checkpoint is None) == (args.pretrained is None):
        raise ConfigError(
            "give either a CHECKPOINT or --pretrained NAME (e.g. `cityseg evaluate "
            "--pretrained pairs --data ROOT --out DIR`), not both and not neither"
        )
    if args.checkpoint is not None:
        return args.checkpoint
    from cityseg.pretrained import pretrained_path

    return pretrained_path(args.pretrained)


def run(args) -> int:
    from cityseg.evaluate.evaluator import evaluate_checkpoint
    from cityseg.metrics.official import format_official
    from cityseg.metrics.summary import format_table
    from cityseg.outputs import check_output_folder

    if args.worst < 0:
        raise ConfigError(f"--worst {args.worst}: give a number of images >= 0")
    if args.max_images is not None and args.max_images < 1:
        raise ConfigError(f"--max-images {args.max_images}: give a positive number of images")
    checkpoint = _checkpoint(args)
    if args.pretrained:  # never write into the installed package
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", args.pretrained)  # hf:USER/NAME: one folder
        default_out = Path(f"eval_{name}_{args.split}")
    else:
        run_dir = checkpoint if checkpoint.is_dir() else checkpoint.parent
        default_out = run_dir / f"eval_{args.split}"
    out_dir = args.out or default_out
    check_output_folder(out_dir)
    metrics = evaluate_checkpoint(
        checkpoint,
        args.data,
        args.split,
        out_dir,
        _inference_options(args),
        max_images=args.max_images,
        device=args.device,
        report=args.report,
        report_images=args.worst,
        data_format=args.format,
        progress=not args.no_progress,
        workers=max(0, args.workers),
        announce=lambda line: print(line, flush=True),
    )
    print(format_table(metrics))
    if metrics.get("cityscapes") and metrics["cityscapes"].get("per_class"):
        print()
        print(format_official(metrics["cityscapes"]), end="")
    miou = "n/a" if metrics["mean_iou"] is None else f"{100 * metrics['mean_iou']:.2f}%"
    print(
        f"\n{metrics['images']} images of {args.data} ({args.split}) in {metrics['seconds']:.1f} s"
        f" ({metrics['mode']} mode on {metrics['device']}); mIoU {miou}"
    )
    written = ["metrics.json", "per_image.csv", "confusion_matrix.png", "class_iou.png"]
    written += ["report.html"] if args.report else []
    print(f"wrote {', '.join(str(out_dir / name) for name in written)}")
    return 0
