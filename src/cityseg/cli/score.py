"""`cityseg score PRED_DIR --gt ROOT`: score submission PNGs like the official Cityscapes script."""

from __future__ import annotations

import os
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "score",
        help="score labelId PNGs on disk against gtFine (official Cityscapes numbers, faster)",
        description=(
            "Evaluate predictions in the official submission format (one labelId PNG per frame, "
            "named <city>_<seq>_<frame>*.png) against gtFine, giving the numbers of "
            "cityscapesscripts' evalPixelLevelSemanticLabeling: class and category IoU and iIoU."
        ),
    )
    parser.add_argument("pred_dir", metavar="PRED_DIR", help="folder of prediction PNGs")
    parser.add_argument(
        "--gt",
        metavar="ROOT",
        help="folder holding gtFine/ (or gtFine_trainvaltest/gtFine); default $CITYSCAPES_DATASET",
    )
    parser.add_argument("--split", default="val", help="gtFine split to score (default: val)")
    parser.add_argument("--out", metavar="FILE", help="write every metric to FILE as JSON")
    parser.add_argument(
        "--workers", type=int, metavar="N", help="decoding processes (default: all usable CPUs)"
    )
    parser.add_argument(
        "--details", action="store_true", help="also print precision, recall, F1 for each class"
    )
    parser.set_defaults(run=run)


def run(args) -> int:
    import json
    import time

    from cityseg.errors import UserError
    from cityseg.evaluate.submissions import score_predictions
    from cityseg.metrics.official import format_official
    from cityseg.metrics.summary import format_table
    from cityseg.outputs import check_output_file, write_text_atomically

    gt = Path(args.gt) if args.gt else _ground_truth_from_environment(args.split)
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers {args.workers}: must be at least 1")
    if args.out:
        check_output_file(Path(args.out))
        _check_replaceable(Path(args.out))
    start = time.perf_counter()
    result = score_predictions(Path(args.pred_dir), gt, args.split, args.workers)
    seconds = time.perf_counter() - start
    print(format_official(result["cityscapes"]))
    if args.details:
        print(format_table(result) + "\n")
    print(
        f"{result['frames']} frames in {seconds:.1f} s: pixel accuracy "
        f"{result['pixel_accuracy']:.4f}, mean IoU {result['mean_iou']:.4f}"
    )
    for note in result["notes"]:
        if note != result["cityscapes"]["note"]:
            print(f"note: {note}")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(out, json.dumps(result, indent=2) + "\n")  # replaced whole
        print(f"wrote {out}")
    return 0


def _ground_truth_from_environment(split: str) -> Path:
    """The ``--gt`` folder ``CITYSCAPES_DATASET`` names, checked here so that a wrong value is
    named as the variable's, not as an option the user never typed."""
    from cityseg.errors import DataError, UserError
    from cityseg.evaluate.submissions import find_gt_folder

    value = os.environ.get("CITYSCAPES_DATASET", "")
    if not value:
        raise UserError(
            "--gt: missing; pass the folder that holds gtFine/ (or set CITYSCAPES_DATASET)"
        )
    try:
        find_gt_folder(Path(value), split)
    except DataError:
        raise UserError(
            f"CITYSCAPES_DATASET={value}: no gtFine/{split} folder there; set it to the folder "
            "that holds gtFine/, or pass --gt"
        ) from None
    return Path(value)


SCORE_KEYS = ("cityscapes", "frames", "mean_iou")
"""Keys of every file ``score --out`` writes: the only existing file it replaces is one of these."""


def _check_replaceable(out) -> None:
    """Refuse an ``--out`` that exists and is not a score file written by this command."""
    import json

    from cityseg.errors import UserError

    if not (out.exists() or out.is_symlink()):
        return
    try:
        if out.is_file() and out.stat().st_size <= 2**24:
            written = json.loads(out.read_text(encoding="utf-8"))
            if isinstance(written, dict) and all(key in written for key in SCORE_KEYS):
                return
    except (OSError, ValueError):
        pass
    raise UserError(
        f"{out}: exists and is not a score file written by `cityseg score`; it is left as it "
        "is: move it away or choose another --out"
    )
