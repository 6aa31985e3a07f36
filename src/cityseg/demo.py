"""`cityseg demo`: the whole product on generated street scenes, offline, in a few minutes.

Generates a small data set in the official Cityscapes layout, fine-tunes the shipped pairs model
on it with the demo configuration, evaluates the best checkpoint on the validation split (with the
HTML report), predicts a few validation images, and says where everything is and what it measured.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from cityseg.config import load_config


@dataclass(frozen=True)
class DemoSettings:
    """How big the demo is. Training is progressive: ``half_size_epochs`` at half the frame size
    (a quarter of the pixels), then ``epochs`` at full size starting from those weights; timings
    in docs/demo.md."""

    out: Path = Path("demo_out")
    train_images: int = 400
    val_images: int = 40
    half_size_epochs: int = 3
    half_size_batch: int = 8
    """Images per step at half size (demo.yaml's batch for the full size)."""
    epochs: int = 7
    height: int = 128
    width: int = 256
    variation: float = 0.2
    """How much the photos vary beyond their layout (lighting, haze, shadows, textures), in
    [0, 1]: ``cityseg data generate`` uses 1; the demo's calmer pictures train faster."""
    seed: int = 0
    predictions: int = 4
    init_from: str | None = "pairs"
    """Weights the first stage starts from: the shipped ``pairs`` model (trained on real
    Cityscapes photos) by default, a checkpoint, or None for the ImageNet encoder alone."""


PRESETS: dict[str, dict[str, int | float]] = {
    "quick": {"train_images": 64, "val_images": 8, "half_size_epochs": 1, "epochs": 1},
    "default": {},
    "long": {"train_images": 1200, "val_images": 100, "half_size_epochs": 5, "epochs": 10},
}


def packaged_config(name: str) -> Path:
    """Path of a configuration shipped inside the package (``configs/<name>.yaml``)."""
    return Path(str(resources.files("cityseg") / "configs" / f"{name}.yaml"))


def run_demo(settings: DemoSettings, overrides: list[str] = ()) -> dict[str, Any]:
    """Run every step of the demo and return what it measured."""
    from cityseg.evaluate.evaluator import evaluate_checkpoint
    from cityseg.predict import Segmenter
    from cityseg.predict.files import predict_files
    from cityseg.scenes import generate_dataset

    out = Path(settings.out)
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def step(name: str, message: str) -> None:
        timings[name] = time.perf_counter()
        print(f"\n== {message}", flush=True)

    step(
        "generate",
        f"generating {settings.train_images} + {settings.val_images} street scenes of "
        f"{settings.height}x{settings.width} (variation {settings.variation:g}) "
        f"into {out / 'data'}",
    )
    data_root = generate_dataset(
        out / "data",
        {"train": settings.train_images, "val": settings.val_images, "test": 0},
        height=settings.height,
        width=settings.width,
        seed=settings.seed,
        progress=True,
        variation=settings.variation,
    )

    run_dir = _train_progressively(settings, data_root, out, list(overrides), step)
    checkpoint = run_dir / "checkpoint_best.pt"

    step("evaluate", "evaluating the best checkpoint on the validation split")
    evaluation_dir = out / "evaluation"
    metrics = evaluate_checkpoint(checkpoint, data_root, "val", evaluation_dir, report=True)

    step("predict", f"predicting {settings.predictions} validation images")
    segmenter = Segmenter.from_checkpoint(checkpoint)
    prediction_dir = out / "predictions"
    images = sorted((data_root / "leftImg8bit" / "val").glob("*/*_leftImg8bit.png"))
    predict_files(segmenter, images[: settings.predictions], prediction_dir)

    total = time.perf_counter() - started
    summary = {
        "data": str(data_root),
        "run": str(run_dir),
        "checkpoint": str(checkpoint),
        "report": str(evaluation_dir / "report.html"),
        "predictions": str(prediction_dir),
        "mean_iou": metrics["mean_iou"],
        "pixel_accuracy": metrics["pixel_accuracy"],
        "absent_classes": metrics["absent_classes"],
        "seconds": total,
        "step_seconds": _durations(timings, started + total),
    }
    _print_summary(summary)
    return summary


def _train_progressively(
    settings: DemoSettings,
    data_root: Path,
    out: Path,
    overrides: list[str],
    step: Callable[[str, str], None],
) -> Path:
    """Train at half size (unless ``half_size_epochs`` is 0), then at full size from those
    weights; return the final run folder."""
    common = [
        f"data.root={data_root}",
        "data.format=cityscapes",
        f"train.seed={settings.seed}",
        *overrides,
    ]
    if settings.half_size_epochs > 0:
        half = (settings.height // 2, settings.width // 2)
        step(
            "train_half_size",
            f"training the U-Net (configuration: demo) at half size, {half[0]}x{half[1]}, "
            f"for {settings.half_size_epochs} epochs"
            + (f", starting from {settings.init_from}" if settings.init_from else ""),
        )
        half_run = out / "run_half_size"
        _train_stage(
            half_run,
            [
                *common,
                f"data.size=[{half[0]}, {half[1]}]",
                f"train.epochs={settings.half_size_epochs}",
                f"train.batch_size={settings.half_size_batch}",
                f"train.val_every={settings.half_size_epochs}",
                *([f"train.init_from={settings.init_from}"] if settings.init_from else []),
            ],
        )
        start_from = half_run / "checkpoint_last.pt"
    else:
        start_from = settings.init_from
    run_dir = out / "run"
    step(
        "train",
        f"training at full size, {settings.height}x{settings.width}, for {settings.epochs} "
        "epochs" + (f", from {start_from}" if start_from else ""),
    )
    _train_stage(
        run_dir,
        [
            *common,
            f"data.size=[{settings.height}, {settings.width}]",
            f"train.epochs={settings.epochs}",
            *(
                [f"train.init_from={start_from}", "train.warmup_iterations=20"]
                if start_from
                else []
            ),
        ],
    )
    return run_dir


def _train_stage(run_dir: Path, overrides: list[str]) -> None:
    """One training run of the demo configuration; a finished or stopped run is continued (one
    stopped before its first checkpoint starts again from the beginning)."""
    from cityseg.train.engine import train

    config = load_config(packaged_config("demo"), overrides)
    train(config, run_dir, resume=run_dir.joinpath("config.yaml").is_file())


def _durations(starts: dict[str, float], end: float) -> dict[str, float]:
    names = list(starts)
    ends = [starts[name] for name in names[1:]] + [end]
    return {name: round(stop - starts[name], 1) for name, stop in zip(names, ends, strict=True)}


def _print_summary(summary: dict[str, Any]) -> None:
    durations = summary["step_seconds"].items()
    steps = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in durations)
    present = 19 - len(summary["absent_classes"])
    print(
        "\n== demo finished in {:.0f} s ({})\n"
        "validation mIoU {:.1%} over the {} classes present, pixel accuracy {:.1%}\n"
        "data         {}\n"
        "checkpoint   {}\n"
        "report       {}\n"
        "predictions  {}".format(
            summary["seconds"],
            steps,
            summary["mean_iou"],
            present,
            summary["pixel_accuracy"],
            summary["data"],
            summary["checkpoint"],
            summary["report"],
            summary["predictions"],
        )
    )
