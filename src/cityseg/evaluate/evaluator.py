"""Score a checkpoint on a labelled split: trainId confusion on the device, every metric, the
official Cityscapes IoU/iIoU where labelIds and instanceIds exist, charts and an HTML report.

Example:
    >>> from cityseg.evaluate.evaluator import evaluate_checkpoint
    >>> from cityseg.inference.options import InferenceOptions
    >>> metrics = evaluate_checkpoint("runs/demo/checkpoint_best.pt", "data/cityscapes", "val",
    ...     out_dir="runs/demo/eval", options=InferenceOptions(mode="slide"))  # doctest: +SKIP
    >>> metrics["mean_iou"], metrics["cityscapes"]["classes_iiou"]  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from cityseg import faults, labels, limits
from cityseg.data.cityscapes import rasterise_polygons
from cityseg.data.datasets import open_dataset
from cityseg.data.io import read_label_png, read_unchanged
from cityseg.data.loader import worker_options
from cityseg.data.sample import Sample
from cityseg.data.unreadable import BadSample, read_or_report
from cityseg.errors import CheckpointError, DataError
from cityseg.inference.options import InferenceOptions
from cityseg.inference.predictor import Predictor
from cityseg.metrics import scores as metric_functions
from cityseg.metrics.confusion import ConfusionMatrix
from cityseg.metrics.official import LabelIdError, OfficialCounts
from cityseg.metrics.summary import summarize
from cityseg.outputs import check_replaceable, prepare_output_folder, write_text_atomically
from cityseg.runtime.device import resolve_device
from cityseg.visualize.plots import evaluation_charts, plot_comparison_grid
from cityseg.visualize.report import write_report

REPORT_IMAGES = 3
"""Best images shown in the report (and worst ones, unless told otherwise)."""
MISSED_SHOWN = 3
"""Images listed per class in the report's "where each class is missed most" table."""
MIN_CLASS_PIXELS = 64
"""Pixels of a class an image must hold for its miss rate there to be ranked."""


@dataclass
class ImageScore:
    """One image's scores, from its own confusion matrix (mean IoU None if nothing is labelled).

    ``confusion`` is the image's (K, K) matrix: its per-class IoU, pixel accuracy and the
    pixels of each class it missed all come from it."""

    index: int
    frame_id: str
    mean_iou: float | None
    confusion: np.ndarray | None = None
    file: str = ""

    @property
    def pixel_accuracy(self) -> float | None:
        value = metric_functions.pixel_accuracy(self.confusion)
        return None if np.isnan(value) else value

    def missed_share(self) -> np.ndarray:
        """Per class: the share of its ground-truth pixels predicted as something else (NaN
        where the image holds fewer than MIN_CLASS_PIXELS of it)."""
        truth = self.confusion.sum(axis=1).astype(np.float64)
        missed = truth - np.diag(self.confusion)
        return np.where(truth >= MIN_CLASS_PIXELS, missed / np.maximum(truth, 1), np.nan)


@dataclass
class Evaluation:
    """What one pass over a dataset accumulates."""

    confusion: np.ndarray
    images: list[ImageScore] = field(default_factory=list)
    official: OfficialCounts | None = None  # when labelIds and instanceIds exist
    seconds: float = 0.0
    label_sizes: dict[str, int] = field(default_factory=dict)  # "HxW" -> images scored at it

    def ranked(self) -> list[ImageScore]:
        """Images with a score, best first."""
        scored = [image for image in self.images if image.mean_iou is not None]
        return sorted(scored, key=lambda image: image.mean_iou, reverse=True)


class _Frames:
    """Dataset items with their index and, for official scoring, gt labelIds and instanceIds."""

    def __init__(self, dataset, count: int, official: bool) -> None:
        self.dataset, self.count, self.official = dataset, count, official

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int):
        return read_or_report(self._read, index)

    def _read(self, index: int):
        image, target = self.dataset[index]
        truth = official_ground_truth(self.dataset.samples[index]) if self.official else None
        return index, image, target, truth


def official_label_ids_path(sample: Sample) -> Path | None:
    """The ``*_gtFine_labelIds.png`` of an official-layout sample, if it exists."""
    if sample.label_path is None or sample.label_kind not in ("trainIds", "labelIds"):
        return None
    path = sample.label_path.with_name(f"{sample.frame_id}_gtFine_labelIds.png")
    return path if path.is_file() else None


def can_score_officially(samples: list[Sample]) -> bool:
    """Whether every sample has gt labelIds (file or polygons) and instanceIds."""
    return bool(samples) and all(
        sample.instance_path is not None
        and (sample.label_kind == "polygons" or official_label_ids_path(sample) is not None)
        for sample in samples
    )


def official_ground_truth(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """The gt labelIds (uint8) and instanceIds (uint16/int32) of an official-layout sample."""
    if sample.label_kind == "polygons":
        label_ids = rasterise_polygons(sample.label_path)
    else:
        label_ids = read_label_png(official_label_ids_path(sample))
    instance_ids = read_unchanged(sample.instance_path)
    if instance_ids.ndim != 2 or instance_ids.dtype.kind not in "iu":
        raise DataError(
            f"{sample.instance_path}: not a single-channel instanceIds PNG; re-extract gtFine"
        )
    if instance_ids.shape != label_ids.shape:
        raise DataError(
            f"{sample.instance_path}: size {instance_ids.shape} differs from its labelIds "
            f"{label_ids.shape}; re-extract gtFine"
        )
    return label_ids, instance_ids


def image_mean_iou(confusion: np.ndarray) -> float | None:
    """Mean IoU of one image over the classes in its ground truth or prediction."""
    value = metric_functions.mean(metric_functions.iou(confusion))
    return None if np.isnan(value) else value


def _collate_one(item):
    return item


def evaluate_dataset(
    predictor: Predictor,
    dataset,
    num_classes: int = labels.NUM_CLASSES,
    official: bool = False,
    max_images: int | None = None,
    progress: bool = True,
    workers: int = 0,
) -> Evaluation:
    """Run ``predictor`` over a labelled dataset and accumulate its confusion matrices.

    Predictions are scored at the ground truth's own resolution. The confusion matrix stays on
    the predictor's device; per-image matrices give each image's mean IoU.

    Args:
        predictor: the network and its inference mode.
        dataset: items ``(uint8 image (H, W, 3), uint8 trainIds (H, W))`` and ``samples``.
        num_classes: rows of the confusion matrix.
        official: also accumulate the official Cityscapes counts (needs labelIds and instanceIds
            for every sample, see :func:`can_score_officially`).
        max_images: stop after this many images.
        progress: show a tqdm progress bar.
        workers: DataLoader processes that decode images ahead of the network.
    """
    count = len(dataset) if max_images is None else min(max_images, len(dataset))
    frames = _Frames(dataset, count, official)
    loader = torch.utils.data.DataLoader(
        frames, batch_size=None, collate_fn=_collate_one, **worker_options(workers)
    )
    total = ConfusionMatrix(num_classes, device=predictor.device)
    result = Evaluation(np.zeros((num_classes, num_classes), np.int64))
    result.official = OfficialCounts() if official else None
    start = time.perf_counter()
    for item in tqdm(loader, total=count, desc="evaluate", unit="image", disable=not progress):
        faults.reached("evaluate")
        if isinstance(item, BadSample):
            raise DataError(*item.problems)
        index, image, target, truth = item
        sample = dataset.samples[index]
        if target is None:
            raise DataError(f"{sample.image_path}: no label to score against; use a labelled split")
        prediction = predictor.predict(image, output_size=target.shape)
        label_size = f"{target.shape[0]}x{target.shape[1]}"
        result.label_sizes[label_size] = result.label_sizes.get(label_size, 0) + 1
        target_on_device = torch.from_numpy(target).to(predictor.device)
        frame = ConfusionMatrix(num_classes, device=predictor.device)
        frame.update(prediction, target_on_device)
        total.update(prediction, target_on_device)
        frame_confusion = frame.numpy(reduce=False)
        result.images.append(
            ImageScore(
                index, sample.frame_id, image_mean_iou(frame_confusion), frame_confusion,
                str(sample.image_path),
            )
        )  # fmt: skip
        if truth is not None:
            predicted_label_ids = labels.train_ids_to_label_ids(prediction.cpu().numpy())
            try:
                result.official.add_frame(predicted_label_ids, *truth)
            except LabelIdError as error:
                raise DataError(f"{sample.label_path}: {error}; check the gtFine files") from None
    result.confusion = total.numpy()
    result.seconds = time.perf_counter() - start
    return result


def _check_paths(checkpoint: Path, data_root: Path) -> None:
    if not checkpoint.exists():
        raise CheckpointError(
            f"{checkpoint}: checkpoint not found; pass a .pt file written by `cityseg train` "
            "(e.g. runs/<name>/checkpoint_best.pt) or its run folder"
        )
    if not data_root.is_dir():
        raise DataError(
            f"{data_root}: data folder not found; pass --data the folder holding leftImg8bit/ "
            "and gtFine/ (official layout) or <split>/*.jpg (pairs)"
        )


def evaluate_checkpoint(
    checkpoint: str | Path,
    data_root: str | Path,
    split: str = "val",
    out_dir: str | Path | None = None,
    options: InferenceOptions | None = None,
    *,
    max_images: int | None = None,
    device: str | None = None,
    report: bool = False,
    data_format: str = "auto",
    progress: bool = True,
    workers: int = 0,
    report_images: int = REPORT_IMAGES,
    announce: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Evaluate a checkpoint on a split and return the metrics (written to ``out_dir`` if given).

    The network runs at the scale it was trained at unless ``options`` say otherwise (see
    :mod:`cityseg.inference.options`); its predictions are scored at each label's resolution.

    Args:
        checkpoint: a cityseg checkpoint (``.pt``).
        data_root: the dataset, official Cityscapes layout or pairs (``<split>/*.jpg``).
        split: the labelled split to score.
        out_dir: where to write ``metrics.json``, ``per_image.csv``, ``confusion_matrix.png``,
            ``class_iou.png`` (and ``report.html`` with ``report``); None writes nothing.
        options: the inference mode and its settings (default: the whole image at its own size;
            see :class:`~cityseg.inference.options.InferenceOptions`).
        max_images: evaluate only the first N images.
        device: "cpu", "cuda", "cuda:1", ...; None picks CUDA when available.
        report: also write ``report.html`` with the best and worst images and, for each class,
            the images where it is missed most.
        report_images: how many of the worst images the report shows.
        data_format: "auto", "cityscapes" or "pairs".
        progress: show a progress bar.
        workers: image-decoding processes.
        announce: called with the line that says the scale the network runs at, before the work.

    Returns:
        The ``metrics.summary.summarize`` dict plus ``cityscapes`` (official scores), ``per_image``
        and the run info: ``checkpoint``, ``data``, ``split``, ``format``, ``mode``,
        ``inference``, ``scale`` (the scale the network ran at, and the label resolutions the
        predictions were scored at), ``device``, ``images``, ``seconds``.
    """
    checkpoint, data_root = Path(checkpoint), Path(data_root)
    _check_paths(checkpoint, data_root)
    resolved_device = resolve_device(device)
    predictor = Predictor.from_checkpoint(checkpoint, resolved_device, options)
    if announce is not None:
        announce(predictor.scale_line)
    dataset = open_dataset(data_root, split, format=data_format, max_images=max_images)
    if not getattr(dataset, "has_labels", True):
        raise DataError(f"{data_root}: split '{split}' has no labels; use `cityseg predict` on it")
    if out_dir is not None:  # before the work, not after it
        check_evaluation_folder(Path(out_dir))
        prepare_output_folder(Path(out_dir))
    class_names = list(predictor.meta.get("class_names") or labels.CLASS_NAMES)
    official = tuple(class_names) == labels.CLASS_NAMES and can_score_officially(dataset.samples)
    result = evaluate_dataset(
        predictor, dataset, len(class_names), official, None, progress, workers
    )
    cityscapes = result.official.scores() if result.official is not None else None
    metrics = summarize(result.confusion, class_names, cityscapes)
    metrics["per_image"] = [
        {
            "file": image.file, "frame_id": image.frame_id,
            "pixel_accuracy": image.pixel_accuracy, "mean_iou": image.mean_iou,
        }
        for image in result.images
    ]  # fmt: skip
    metrics |= {
        "checkpoint": str(checkpoint),
        "data": str(data_root),
        "split": split,
        "format": getattr(dataset, "format", data_format),
        "mode": predictor.options.mode,
        "inference": predictor.settings(),
        "scale": {
            "network": predictor.scale_line.removeprefix("scale: "),
            "scored_at": "each label's own resolution: "
            + ", ".join(f"{size} ({count} images)" for size, count in result.label_sizes.items()),
        },
        "device": str(resolved_device),
        "images": len(result.images),
        "seconds": round(result.seconds, 3),
    }
    if out_dir is not None:
        charts = write_outputs(metrics, Path(out_dir))
        write_per_image_csv(result.images, Path(out_dir) / PER_IMAGE_CSV, class_names)
        if report:
            write_evaluation_report(
                metrics, Path(out_dir), charts, predictor, dataset, result, report_images
            )
    return metrics


def write_outputs(metrics: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write ``metrics.json`` and the charts into ``out_dir``; return the charts by caption."""
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(metrics, indent=2, allow_nan=False) + "\n"
    write_text_atomically(out_dir / METRICS_JSON, text)
    return evaluation_charts(metrics, out_dir)


METRICS_JSON = "metrics.json"
PER_IMAGE_CSV = "per_image.csv"
EVALUATION_FILES = (
    METRICS_JSON, PER_IMAGE_CSV, "confusion_matrix.png", "class_iou.png", "report.html", "images",
)  # fmt: skip
"""What an evaluation writes into its folder (``images/``: the report's pictures)."""
MAX_METRICS_BYTES = 64 * 2**20


def is_evaluation_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a ``metrics.json`` written by an evaluation (its marker)."""
    try:
        metrics = limits.read_json(Path(folder) / METRICS_JSON, MAX_METRICS_BYTES)
    except (OSError, ValueError):
        return False
    return isinstance(metrics, dict) and {"checkpoint", "inference", "mean_iou"} <= metrics.keys()


def check_evaluation_folder(folder: Path) -> None:
    """ConfigError unless every file an evaluation would replace in ``folder`` is an earlier
    evaluation's own."""
    check_replaceable(folder, EVALUATION_FILES, is_evaluation_folder(folder), "cityseg evaluate")


def write_per_image_csv(images: list[ImageScore], path: Path, class_names: list[str]) -> Path:
    """One row per image: file, frame id, pixel accuracy, mean IoU over the classes present in
    its ground truth or prediction, and the IoU of each class (empty where undefined)."""
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["file", "frame_id", "pixel_accuracy", "mean_iou",
                         *(f"iou_{name}" for name in class_names)])  # fmt: skip
        for image in images:
            ious = metric_functions.iou(image.confusion)
            writer.writerow(
                [image.file, image.frame_id, _csv_number(image.pixel_accuracy),
                 _csv_number(image.mean_iou), *(_csv_number(v) for v in ious)]
            )  # fmt: skip
    return path


def _csv_number(value: float | None) -> str:
    return "" if value is None or np.isnan(value) else f"{value:.6f}"


def missed_most(images: list[ImageScore], class_names: list[str]) -> dict[str, list]:
    """Per class, the images where the largest share of its pixels was missed:
    ``{class: [(frame_id, missed share, class pixels), ...]}`` (up to MISSED_SHOWN each; classes
    no image holds enough of are left out)."""
    if not images:
        return {}
    shares = np.stack([image.missed_share() for image in images])  # (images, classes)
    table = {}
    for index, name in enumerate(class_names):
        column = shares[:, index]
        order = [i for i in np.argsort(-np.nan_to_num(column, nan=-1)) if not np.isnan(column[i])]
        table[name] = [
            (images[i].frame_id, float(column[i]), int(images[i].confusion[index].sum()))
            for i in order[:MISSED_SHOWN]
        ]
    return {name: rows for name, rows in table.items() if rows}


def write_evaluation_report(
    metrics: dict[str, Any],
    out_dir: Path,
    charts: dict[str, Path],
    predictor: Predictor,
    dataset,
    result: Evaluation,
    report_images: int = REPORT_IMAGES,
) -> Path:
    """Write ``report.html``: the metrics, the charts, comparison grids (photo, ground truth,
    prediction, errors) of the best and the ``report_images`` worst images by their own mean
    IoU, and for each class the images where it is missed most."""
    ranked = result.ranked()
    best = ranked[:REPORT_IMAGES]
    chosen = {"best": best, "worst": ranked[len(best) :][::-1][:report_images]}
    shown: dict[str, list] = {"best": [], "worst": []}
    for kind, scores in chosen.items():
        for rank, score in enumerate(scores, start=1):
            image, target = dataset[score.index]
            prediction = predictor.predict(image, output_size=target.shape).cpu().numpy()
            grid = plot_comparison_grid(
                [image],
                [target],
                [prediction],
                out_dir / "images" / f"{kind}_{rank}_{score.frame_id}.png",
                titles=[f"{score.frame_id} - mIoU {100 * score.mean_iou:.1f}%"],
            )
            shown[kind].append((score.frame_id, score.mean_iou, grid))
    info = {key: metrics[key] for key in RUN_INFO if key in metrics}
    missed = missed_most(result.images, list(metrics["classes"]))
    return write_report(
        out_dir, metrics, charts, shown["best"], shown["worst"], info=info, missed=missed
    )


RUN_INFO = (
    "checkpoint", "data", "split", "format", "scale", "inference", "device", "images", "seconds",
)  # fmt: skip
