"""Package a trained run as a shipped model: ``src/cityseg/pretrained/<name>.pt``.

Two steps, each a sub-command:

    # the pairs images a run held out for validation, as a pairs folder of symlinks (OUT/val/*.jpg)
    python scripts/make_pretrained.py heldout --config RUN/config.yaml --out /tmp/pairs_val
    cityseg evaluate RUN/checkpoint_best.pt --data /tmp/pairs_val --split val --out RUN/eval_heldout
    # an inference-only, half-precision copy of the checkpoint with those scores in "training"
    python scripts/make_pretrained.py slim RUN/checkpoint_best.pt src/cityseg/pretrained/pairs.pt \
        --metrics RUN/eval_heldout/metrics.json --minutes 30
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from cityseg.checkpoint.io import slim_checkpoint
from cityseg.config import load_config
from cityseg.data.loader import open_splits

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def write_heldout(config_path: Path, out: Path) -> list[Path]:
    """Symlink the validation images the run at ``config_path`` held out into ``out/val/``.

    A link already there (from an earlier call) is replaced; any other file is left alone and
    stops the command, since it is not this script's to overwrite."""
    config = load_config(config_path, ["data.cache=null", "data.max_val_images=null"])
    splits = open_splits(config.data, config.train.seed)
    dataset, indices = splits.val.dataset, splits.val.indices
    (out / "val").mkdir(parents=True, exist_ok=True)
    links = []
    for index in indices:
        source = Path(dataset.samples[index].image_path).resolve()
        link = out / "val" / source.name
        if link.is_symlink():
            link.unlink()
        elif link.exists():
            raise SystemExit(f"{link}: a file that is not a link is in the way; use another --out")
        link.symlink_to(source)
        links.append(link)
    return links


def training_summary(metrics_path: Path, minutes: float | None) -> dict:
    """The validation scores of ``cityseg evaluate``'s metrics.json, for the checkpoint."""
    metrics = json.loads(metrics_path.read_text())
    keep = ("mean_iou", "pixel_accuracy", "mean_accuracy", "images", "data", "split", "inference")
    summary = {key: metrics[key] for key in keep if key in metrics}
    summary["class_iou"] = {name: scores["iou"] for name, scores in metrics["classes"].items()}
    if minutes is not None:
        summary["training_minutes"] = minutes
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    heldout = commands.add_parser("heldout", help="symlink a run's held-out validation images")
    heldout.add_argument("--config", type=Path, required=True, help="RUN/config.yaml")
    heldout.add_argument("--out", type=Path, required=True, help="pairs folder to write")
    slim = commands.add_parser("slim", help="write an inference-only half-precision checkpoint")
    slim.add_argument("source", type=Path)
    slim.add_argument("destination", type=Path)
    slim.add_argument("--dtype", choices=DTYPES, default="fp16")
    slim.add_argument("--metrics", type=Path, help="metrics.json of the held-out evaluation")
    slim.add_argument("--minutes", type=float, help="training wall time, for the summary")
    args = parser.parse_args()
    if args.command == "heldout":
        links = write_heldout(args.config, args.out)
        print(f"{len(links)} held-out images linked in {args.out / 'val'}")
    else:
        summary = training_summary(args.metrics, args.minutes) if args.metrics else {}
        slim_checkpoint(args.source, args.destination, DTYPES[args.dtype], summary)
        size = args.destination.stat().st_size / 2**20
        print(f"wrote {args.destination} ({size:.2f} MiB, {args.dtype})")


if __name__ == "__main__":
    main()
