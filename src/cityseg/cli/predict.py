"""`cityseg predict (CHECKPOINT | --onnx MODEL | --pretrained NAME) INPUT... --out DIR`."""

from __future__ import annotations

import time
from pathlib import Path

from cityseg.cli._arguments import RESIZE_HELP, parse_resize, parse_scales, size
from cityseg.errors import UserError
from cityseg.inference.options import InferenceOptions

OUTPUTS = ("labelIds", "trainIds", "color", "overlay")  # cityseg.predict.OUTPUTS, kept light here
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")  # cityseg.predict.video.VIDEO_SUFFIXES


def parse_outputs(text: str) -> tuple[str, ...]:
    """ "labelIds,color" -> ("labelIds", "color")."""
    import argparse

    outputs = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [output for output in outputs if output not in OUTPUTS]
    if unknown or not outputs:
        raise argparse.ArgumentTypeError(
            f"{text!r}: choose a comma-separated subset of {','.join(OUTPUTS)}"
        )
    return outputs


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="segment photos into labelIds (submission format), trainIds, colour and overlay PNGs",
        usage="cityseg predict [-h] (CHECKPOINT | --onnx MODEL | --pretrained NAME) INPUT... "
        "--out DIR [options]",
        description="Segment each photo and write <stem>_labelIds.png (the official Cityscapes "
        "submission format), <stem>_trainIds.png, <stem>_color.png (Cityscapes palette) and "
        "<stem>_overlay.png into --out. Inputs are PNG or JPEG files, folders (searched "
        "recursively, except --out) and glob patterns (quote them: 'photos/*.jpg'); they are "
        "sorted and each is segmented once. Videos (mp4, avi, mov, mkv) and, with --sequence, "
        "folders of frames become <stem>_overlay.mp4 at the source frame rate (with --outputs: "
        "also <stem>_color.mp4 and per-frame label PNGs in <stem>_frames/).",
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="the checkpoint (unless --onnx or --pretrained is given), then the photos",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--onnx", type=Path, metavar="MODEL", help="run a `cityseg export` model in onnxruntime"
    )
    source.add_argument(
        "--pretrained",
        metavar="NAME",
        help="a checkpoint shipped with cityseg (e.g. pairs), or hf:USER/NAME[@REVISION] on the "
        "Hugging Face Hub",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--input-format",
        default="image",
        choices=("image", "pairs"),
        help="pairs: Kaggle pairs JPEGs (photo | labels); the left half is segmented",
    )
    parser.add_argument("--mode", default="whole", choices=("whole", "slide"), help="inference")
    parser.add_argument(
        "--resize",
        type=parse_resize,
        metavar="SIZE",
        help=RESIZE_HELP,
    )
    parser.add_argument(
        "--tile", type=size, help="slide mode tile HxW (default: the training crop, else size)"
    )
    parser.add_argument("--tta", action="store_true", help="average with the flipped image")
    parser.add_argument(
        "--scales", type=parse_scales, help="average over scales, e.g. 0.75,1,1.25 (--tta default)"
    )
    parser.add_argument(
        "--outputs",
        type=parse_outputs,
        default=OUTPUTS,
        help=f"files to write per photo (default: {','.join(OUTPUTS)})",
    )
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay opacity of the colours")
    parser.add_argument(
        "--device",
        default="auto",
        help="auto, cpu, cuda, cuda:N (default auto); with --onnx also tensorrt, tensorrt:N",
    )
    parser.add_argument(
        "--precision", default="fp32", choices=("fp32", "bf16", "fp16"), help="autocast dtype"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    video = parser.add_argument_group("videos and frame sequences")
    video.add_argument(
        "--sequence", action="store_true", help="folders are frame sequences: one video each"
    )
    video.add_argument(
        "--smooth", type=_number_in(0, 1, "a weight"), metavar="ALPHA",
        help="average class probabilities over time: weight of the current frame (1 = none)",
    )  # fmt: skip
    video.add_argument("--batch", type=_positive, default=4, help="frames per forward pass (4)")
    video.add_argument(
        "--fps",
        type=_number_in(0, 1000, "a frame rate"),
        help="output frame rate (default: the video's; 17 for frames)",
    )
    parser.set_defaults(run=run)


def _number_in(low: float, high: float, what: str):
    """An argparse type: a number in (low, high], named ``what`` in its error."""

    def parse(text: str) -> float:
        import argparse

        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not low < value <= high:  # (false for NaN)
            raise argparse.ArgumentTypeError(
                f"expected {what} in ({low:g}, {high:g}], got '{text}'"
            )
        return value

    return parse


def _positive(text: str) -> int:
    import argparse

    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got '{text}'")
    return int(text)


def _split_inputs(args) -> tuple[Path | None, list[str]]:
    if args.onnx or args.pretrained:
        return None, args.inputs
    checkpoint, *patterns = args.inputs
    if Path(checkpoint).suffix.lower() in PHOTO_SUFFIXES:
        raise UserError(
            f"{checkpoint}: a photo where the checkpoint was expected; give the checkpoint first, "
            "or --onnx MODEL or --pretrained NAME"
        )
    if not patterns:
        raise UserError(f"no input photos given after the checkpoint {checkpoint}")
    return Path(checkpoint), patterns


def _segmenter(args, checkpoint: Path | None):
    options = InferenceOptions.from_flags(
        args.mode,
        resize=args.resize,
        tta=args.tta,
        scales=args.scales,
        tile=args.tile,
        precision=args.precision,
    )
    if args.onnx:
        from cityseg.predict import OnnxSegmenter

        return OnnxSegmenter(args.onnx, args.device, options), "onnxruntime"
    from cityseg.predict import Segmenter

    if args.pretrained:
        return Segmenter.from_pretrained(args.pretrained, args.device, options), "PyTorch"
    return Segmenter.from_checkpoint(checkpoint, args.device, options), "PyTorch"


def run(args) -> int:
    from cityseg.outputs import check_output_folder
    from cityseg.predict import collect_inputs, predict_files
    from cityseg.predict.plan import check_outputs

    if not 0 <= args.alpha <= 1:
        raise UserError(f"--alpha {args.alpha}: give an opacity between 0 and 1")
    check_output_folder(args.out)
    checkpoint, patterns = _split_inputs(args)
    videos = [p for p in patterns if _is_video(p, args.sequence)]
    photos = [p for p in patterns if p not in videos]
    paths = collect_inputs(photos, exclude=args.out) if photos else []
    video_kinds = ("overlay",) if args.outputs == OUTPUTS else args.outputs
    models = (checkpoint, args.onnx)
    check_outputs(args.out, paths, args.outputs, [Path(v) for v in videos], video_kinds, models)
    segmenter, backend = _segmenter(args, checkpoint)
    print(segmenter.scale_line, flush=True)
    for source in videos:
        result = segmenter.predict_video(
            source, args.out, outputs=video_kinds, batch_size=args.batch, smooth=args.smooth,
            alpha=args.alpha, fps=args.fps, progress=not args.no_progress,
        )  # fmt: skip
        wrote = [str(p) for p in result.written if p.suffix == ".mp4"]
        frames = sum(p.suffix == ".png" for p in result.written)
        wrote += [f"{frames} frame PNGs in {args.out}"] if frames else []
        print(
            f"segmented {result.frames} frames of {source} in {result.seconds:.1f} s "
            f"({result.frames_per_second:.1f} frames/s, {args.mode} mode, {backend}); "
            f"wrote {', '.join(wrote)}"
        )
    if not paths:
        return 0
    start = time.perf_counter()
    written = predict_files(
        segmenter,
        paths,
        args.out,
        input_format=args.input_format,
        outputs=args.outputs,
        alpha=args.alpha,
        progress=not args.no_progress,
    )
    seconds = time.perf_counter() - start
    print(
        f"segmented {len(paths)} images in {seconds:.1f} s ({args.mode} mode, {backend}); "
        f"wrote {len(written)} files to {args.out}"
    )
    return 0


def _is_video(pattern: str, sequence: bool) -> bool:
    path = Path(pattern)
    return path.suffix.lower() in VIDEO_SUFFIXES or (sequence and path.is_dir())
