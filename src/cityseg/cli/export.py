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
    parser.set_defaults(run=run)


def run(args) -> int:
    from cityseg.export import export_checkpoint
    from cityseg.outputs import check_output_file

    checkpoint = args.checkpoint
    out = args.out or (checkpoint / "model.onnx" if checkpoint.is_dir() else None)
    out = out or checkpoint.with_suffix(".onnx")
    check_output_file(out)
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
