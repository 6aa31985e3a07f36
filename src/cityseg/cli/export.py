"""`cityseg export CHECKPOINT --out model.onnx`: an ONNX model that takes uint8 RGB photos."""

from __future__ import annotations

from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX (uint8 RGB photos in, logits and trainIds out)",
        description="Write an ONNX model with dynamic batch, height and width. Input 'image': "
        "uint8 RGB (N, H, W, 3), normalised inside the graph; outputs 'logits' float32 "
        "(N, C, H, W) and 'labels' uint8 trainIds (N, H, W). Class names, palette, normalisation "
        "and training size are stored in its metadata. Run it with `cityseg predict --onnx`.",
    )
    parser.add_argument("checkpoint", type=Path, help="checkpoint .pt written by cityseg train")
    parser.add_argument(
        "--out", type=Path, help="the .onnx file (default: the checkpoint's name with .onnx)"
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset version (default 17)")
    parser.add_argument(
        "--dynamo",
        action="store_true",
        help="use the torch.export-based exporter (slower; needs the onnxscript package)",
    )
    parser.add_argument(
        "--no-verify", action="store_true", help="skip the onnxruntime-vs-PyTorch comparison"
    )
    _add_quantize_arguments(parser)
    parser.set_defaults(run=run)


def _add_quantize_arguments(parser) -> None:
    from cityseg.cli._arguments import fraction

    group = parser.add_argument_group(
        "int8 quantisation",
        "static int8 (QDQ) for the CPU, calibrated on --calibration photos and measured against "
        "the float model there (and on --data); the figures go into <out stem>.int8.json",
    )
    group.add_argument("--quantize", choices=("int8",), help="write an int8 model")
    group.add_argument(
        "--calibration", type=Path, metavar="DIR",
        help="photos like those the model will see, a few dozen (needed with --quantize)",
    )  # fmt: skip
    group.add_argument(
        "--calibration-format", default="image", choices=("image", "pairs"),
        help="pairs: Kaggle pairs JPEGs, whose left half is the photo",
    )  # fmt: skip
    group.add_argument("--data", type=Path, metavar="ROOT", help="labelled data: mIoU of both")
    group.add_argument("--format", default="auto", choices=("auto", "cityscapes", "pairs"))
    group.add_argument("--split", default="val", help="the labelled split of --data (val)")
    group.add_argument("--max-images", type=int, help="score only the first N images of --data")
    group.add_argument(
        "--max-drop", type=fraction, default=0.02,
        help="refuse a drop of pixel agreement or labelled mIoU above this (default 0.02)",
    )  # fmt: skip
    group.add_argument("--allow-drop", action="store_true", help="write it whatever the drop")
    group.add_argument(
        "--per-tensor", action="store_true",
        help="one weight scale per tensor instead of per output channel (less accurate)",
    )  # fmt: skip


def run(args) -> int:
    from cityseg.export import export_checkpoint
    from cityseg.outputs import check_output_file

    checkpoint = args.checkpoint
    out = args.out or (checkpoint / "model.onnx" if checkpoint.is_dir() else None)
    out = out or checkpoint.with_suffix(".onnx")
    check_output_file(out)
    if args.quantize:
        return _quantize(args, out)
    result = export_checkpoint(checkpoint, out, args.opset, args.dynamo, not args.no_verify)
    megabytes = result.path.stat().st_size / 1e6
    print(
        f"wrote {result.path} ({megabytes:.1f} MB, opset {result.opset}, {result.exporter} "
        f"exporter, {result.seconds:.1f} s)"
    )
    if result.max_abs_logit_diff is not None:
        height, width = result.check_size
        print(
            f"onnxruntime vs PyTorch on a random {height}x{width} photo: max |logit difference| "
            f"{result.max_abs_logit_diff:.2e}, argmax agreement {100 * result.label_agreement:.3f}%"
        )
    return 0


def _quantize(args, out: Path) -> int:
    from cityseg.errors import ConfigError
    from cityseg.quantize import quantize_checkpoint, report_path

    if args.calibration is None:
        raise ConfigError("--quantize int8 needs --calibration DIR, a folder of a few dozen photos")
    if args.dynamo:
        raise ConfigError("--quantize int8 uses the default exporter; drop --dynamo")
    report = quantize_checkpoint(
        args.checkpoint, out, args.calibration, data=args.data, data_format=args.format,
        split=args.split, max_images=args.max_images, calibration_format=args.calibration_format,
        max_drop=args.max_drop, allow_drop=args.allow_drop, per_channel=not args.per_tensor,
        opset=args.opset,
    )  # fmt: skip
    sizes, speed = report["size_bytes"], report["speed"]
    height, width = report["run_size"]
    print(
        f"wrote {out} (int8, {sizes['int8'] / 1e6:.1f} MB; float {sizes['float'] / 1e6:.1f} MB) "
        f"and {report_path(out)}"
    )
    print(
        f"int8 vs float on {report['calibration']['photos']} calibration photos: pixel agreement "
        f"{100 * report['agreement']:.2f}%, mIoU of int8 against float "
        f"{100 * report['miou_vs_float']:.2f}%"
    )
    if "labelled" in report:
        labelled = report["labelled"]
        print(
            f"mIoU on {labelled['images']} labelled images of {labelled['data']}: float "
            f"{100 * labelled['miou_float']:.2f}%, int8 {100 * labelled['miou_int8']:.2f}%"
        )
    print(
        f"speed at {height}x{width} on {speed['cpu']}: float {speed['float_ms']:.1f} ms, int8 "
        f"{speed['int8_ms']:.1f} ms a photo ({speed['speedup']:.2f}x)"
        + ("" if report["accepted"] else "; accepted with --allow-drop")
    )
    return 0
