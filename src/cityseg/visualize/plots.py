"""Charts saved as PNG: training curves, confusion matrix, per-class IoU, comparison grids.

Figures are built with ``matplotlib.figure.Figure`` and rendered by Agg, never through pyplot, so
no display, global state or backend switch is involved and figures are freed with their last
reference.

Example::

    from cityseg.visualize.plots import evaluation_charts, plot_training_curves, read_metrics_jsonl
    charts = evaluation_charts(metrics, "runs/eval")  # {"Per-class IoU": Path, ...}
    plot_training_curves(read_metrics_jsonl("runs/x/metrics.jsonl"), "runs/x/curves.png")
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from cityseg.labels import CLASS_NAMES, PALETTE
from cityseg.visualize.colors import (
    ERROR_COLOR,
    IGNORE_COLOR,
    colorize,
    error_map,
    legend_entries,
)

__all__ = [
    "evaluation_charts",
    "plot_comparison_grid",
    "plot_confusion_matrix",
    "plot_per_class_iou",
    "plot_training_curves",
    "read_metrics_jsonl",
]

DPI = 110
_SERIES_KEYS = {
    "train_loss": ("train_loss", "loss", "train_total_loss"),
    "val_loss": ("val_loss", "eval_loss", "validation_loss"),
    "val_miou": ("val_miou", "val_mean_iou", "val_miou_percent", "miou", "mean_iou"),
    "lr": ("lr", "learning_rate", "train_lr"),
}
_X_KEYS = ("epoch", "iteration", "step", "iter")


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    return path


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_metrics_jsonl(path: str | Path) -> list[dict]:
    """Read a ``metrics.jsonl`` training log: one JSON object per line, blank lines skipped."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _flatten(record: Mapping, prefix: str = "") -> dict[str, object]:
    """``{"val": {"loss": 1}}`` -> ``{"val_loss": 1}``; keys lower-case, ``/.-`` -> ``_``."""
    flat: dict[str, object] = {}
    for key, value in record.items():
        name = prefix + str(key).lower().replace("/", "_").replace(".", "_").replace("-", "_")
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "_"))
        else:
            flat[name] = value
    return flat


def _series(records: list[dict], aliases: Sequence[str], x_key: str | None):
    """(xs, ys) of the first alias found in the records, using the records that hold it."""
    for alias in aliases:
        points = [
            (record[x_key] if x_key else index + 1, record[alias])
            for index, record in enumerate(records)
            if _is_number(record.get(alias)) and (x_key is None or _is_number(record.get(x_key)))
        ]
        if points:
            xs, ys = zip(*points, strict=True)
            return list(xs), list(ys)
    return [], []


def plot_training_curves(
    history: Sequence[Mapping], path: str | Path, title: str | None = None
) -> Path:
    """Plot train/val loss, validation mIoU and learning rate against epoch.

    Args:
        history: the records of ``metrics.jsonl`` (see :func:`read_metrics_jsonl`). Recognised
            keys, nested dicts flattened with ``_`` (so ``{"val": {"loss": ..}}`` is ``val_loss``):
            x = ``epoch`` | ``iteration`` | ``step``; ``train_loss`` | ``loss``; ``val_loss``;
            ``val_miou`` | ``val_mean_iou`` | ``mean_iou`` (fraction, or percent if above 1);
            ``lr`` | ``learning_rate``. Records without a key are skipped for that curve.
        path: PNG to write.
        title: optional figure title.
    """
    records = [_flatten(record) for record in history]
    x_key = next((k for k in _X_KEYS if any(_is_number(r.get(k)) for r in records)), None)
    curves = {name: _series(records, keys, x_key) for name, keys in _SERIES_KEYS.items()}

    figure = Figure(figsize=(15, 4.2), layout="constrained")
    loss_axes, miou_axes, lr_axes = figure.subplots(1, 3)
    for name, label in (("train_loss", "train"), ("val_loss", "validation")):
        xs, ys = curves[name]
        if xs:
            loss_axes.plot(xs, ys, marker="o" if len(xs) <= 30 else None, ms=3, label=label)
    loss_axes.set_title("Loss")
    if loss_axes.lines:
        loss_axes.legend()

    xs, ys = curves["val_miou"]
    if xs:
        scale = 1 if max(ys) > 1 else 100
        percent = [y * scale for y in ys]
        miou_axes.plot(xs, percent, marker="o" if len(xs) <= 30 else None, ms=3, color="tab:green")
        best = int(np.argmax(percent))
        miou_axes.plot([xs[best]], [percent[best]], "*", ms=12, color="tab:orange")
        miou_axes.annotate(
            f"best {percent[best]:.1f}%",
            (xs[best], percent[best]),
            textcoords="offset points",
            xytext=(0, 8),
            ha="right" if best > len(xs) / 2 else "left",
        )
        miou_axes.set_ylim(0, min(100, max(percent) * 1.15 + 1))
    miou_axes.set_title("Validation mIoU (%)")

    xs, ys = curves["lr"]
    if xs:
        lr_axes.plot(xs, ys, color="tab:purple")
        if min(ys) > 0 and max(ys) / min(ys) > 50:
            lr_axes.set_yscale("log")
    lr_axes.set_title("Learning rate")

    for axes in (loss_axes, miou_axes, lr_axes):
        axes.set_xlabel(x_key or "record")
        axes.grid(alpha=0.3)
        if not axes.lines:
            axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def plot_confusion_matrix(
    confusion: np.ndarray | Sequence[Sequence[int]],
    path: str | Path,
    class_names: Sequence[str] = CLASS_NAMES,
    title: str | None = "Confusion matrix (each row normalised, %)",
) -> Path:
    """Plot a row-normalised confusion matrix (rows = ground truth, columns = prediction).

    Cells show the percentage of a ground-truth class predicted as each class (blank below 0.5%);
    rows of classes absent from the ground truth are greyed and marked "absent".
    """
    matrix = np.asarray(confusion, dtype=np.float64)
    size = len(class_names)
    if matrix.shape != (size, size):
        raise ValueError(f"confusion must be {size}x{size} for {size} classes, got {matrix.shape}")
    totals = matrix.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = np.where(totals > 0, matrix / totals, np.nan)

    side = max(6.0, 0.42 * size + 2.5)
    figure = Figure(figsize=(side + 1.2, side), layout="constrained")
    axes = figure.add_subplot()
    cmap = colormaps["Blues"].with_extremes(bad="#eeeeee")
    image = axes.imshow(normalised * 100, cmap=cmap, vmin=0, vmax=100, interpolation="nearest")
    figure.colorbar(image, ax=axes, fraction=0.04, pad=0.02, label="% of the ground-truth row")
    font = 7 if size > 12 else 9
    for row in range(size):
        if np.isnan(normalised[row, 0]):
            axes.text(size / 2 - 0.5, row, "absent", ha="center", va="center", fontsize=font)
            continue
        for column in range(size):
            value = normalised[row, column] * 100
            if value >= 0.5:
                color = "white" if value > 55 else "black"
                axes.text(
                    column,
                    row,
                    f"{value:.0f}",
                    ha="center",
                    va="center",
                    fontsize=font,
                    color=color,
                )
    axes.set_xticks(range(size), class_names, rotation=60, ha="right", rotation_mode="anchor")
    axes.set_yticks(range(size), class_names)
    axes.set_xlabel("prediction")
    axes.set_ylabel("ground truth")
    if title:
        axes.set_title(title)
    return _save(figure, path)


def _finite_or_none(value: object) -> float | None:
    return float(value) if _is_number(value) else None


def plot_per_class_iou(
    class_iou: Mapping[str, float | None],
    path: str | Path,
    sort: bool = False,
    title: str | None = "Per-class IoU",
) -> Path:
    """Horizontal bars of each class's IoU (fractions shown as %), coloured by class.

    Args:
        class_iou: class name -> IoU in [0, 1], ``None`` (or NaN) for classes absent from the
            ground truth, which are listed as "absent" and left out of the mean line.
        path: PNG to write.
        sort: order by IoU, best first (absent last); otherwise keep the mapping's order.
        title: optional axes title.
    """
    entries = [(name, _finite_or_none(value)) for name, value in class_iou.items()]
    if sort:
        entries.sort(key=lambda entry: -1 if entry[1] is None else entry[1], reverse=True)
    colors = {name: PALETTE[i] / 255 for i, name in enumerate(CLASS_NAMES)}
    figure = Figure(figsize=(8, 0.32 * len(entries) + 1.3), layout="constrained")
    axes = figure.add_subplot()
    positions = np.arange(len(entries))
    values = [0.0 if value is None else value * 100 for _, value in entries]
    bar_colors = [colors.get(name, (0.3, 0.5, 0.7)) for name, _ in entries]
    axes.barh(positions, values, color=bar_colors, edgecolor="0.25", linewidth=0.6)
    for position, (_, value) in zip(positions, entries, strict=True):
        label = "absent" if value is None else f"{value * 100:.1f}"
        axes.text(
            (value or 0) * 100 + 1,
            position,
            label,
            va="center",
            fontsize=8,
            color="0.45" if value is None else "black",
        )
    present = [value for _, value in entries if value is not None]
    if present:
        mean = 100 * sum(present) / len(present)
        axes.axvline(mean, color="0.2", linestyle="--", linewidth=1, label=f"mean {mean:.1f}%")
        axes.legend(loc="lower right", fontsize=8)
    axes.set_yticks(positions, [name for name, _ in entries])
    axes.invert_yaxis()
    axes.set_xlim(0, 109)
    axes.set_xlabel("IoU (%)")
    axes.grid(axis="x", alpha=0.3)
    if title:
        axes.set_title(title)
    return _save(figure, path)


def _shrink(image: np.ndarray, max_width: int, nearest: bool) -> np.ndarray:
    height, width = image.shape[:2]
    if width <= max_width:
        return image
    size = (max_width, max(1, round(height * max_width / width)))
    return cv2.resize(image, size, interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)


def plot_comparison_grid(
    images: Sequence[np.ndarray],
    targets: Sequence[np.ndarray | None],
    predictions: Sequence[np.ndarray],
    path: str | Path,
    titles: Sequence[str] | None = None,
    max_width: int = 512,
) -> Path:
    """One row per image: photo | ground truth | prediction | errors, with a class legend below.

    Errors are red, ignore pixels grey and correct pixels the dimmed photo (see
    :func:`cityseg.visualize.colors.error_map`). A ``None`` target leaves those panels empty.

    Args:
        images: RGB uint8 photos (H, W, 3).
        targets: ground-truth trainIds (H, W) or ``None``.
        predictions: predicted trainIds (H, W).
        path: PNG to write.
        titles: optional title per row, e.g. ``"frankfurt_000000_000294 - mIoU 61.3%"``.
        max_width: panels wider than this are downscaled (area for photos, nearest for masks).
    """
    if not len(images) == len(targets) == len(predictions) > 0:
        raise ValueError("images, targets and predictions must be non-empty and of equal length")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"{len(titles)} titles given for {len(images)} rows")
    height, width = images[0].shape[:2]
    panel_width = 3.6
    row_height = panel_width * height / width + 0.6
    figure = Figure(figsize=(4 * panel_width, row_height * len(images) + 0.9), layout="constrained")
    rows = figure.subfigures(len(images), 1, squeeze=False)[:, 0]
    masks_shown: list[np.ndarray] = []
    headers = ("photo", "ground truth", "prediction", "errors")
    for index, (row, image, target, prediction) in enumerate(
        zip(rows, images, targets, predictions, strict=True)
    ):
        image = _shrink(np.asarray(image), max_width, nearest=False)
        prediction = _shrink(np.asarray(prediction), max_width, nearest=True)
        panels: list[np.ndarray | None] = [image, None, colorize(prediction), None]
        masks_shown.append(prediction)
        if target is not None:
            target = _shrink(np.asarray(target), max_width, nearest=True)
            panels[1] = colorize(target)
            panels[3] = error_map(prediction, target, image)
            masks_shown.append(target)
        for column, (axes, panel) in enumerate(zip(row.subplots(1, 4), panels, strict=True)):
            axes.set_axis_off()
            if panel is not None:
                axes.imshow(panel, interpolation="nearest")
            else:
                axes.text(0.5, 0.5, "no ground truth", ha="center", va="center", color="0.4")
            axes.set_title(headers[column], fontsize=9, color="0.3")
        if titles is not None:
            row.suptitle(titles[index], x=0.01, ha="left", fontsize=10, fontweight="bold")
    class_handles = [
        Patch(facecolor=np.array(rgb) / 255, edgecolor="0.3", label=name)
        for _, name, rgb in legend_entries(*masks_shown)
    ]
    figure.legend(
        handles=class_handles,
        loc="outside lower left",
        ncols=min(8, max(1, len(class_handles))),
        fontsize=8,
        frameon=False,
        title="classes",
        title_fontsize=8,
    )
    error_handles = [
        Patch(facecolor=np.array(color) / 255, edgecolor="0.3", label=label)
        for color, label in (
            (ERROR_COLOR, "wrong"),
            (IGNORE_COLOR, "ignore"),
            ((60,) * 3, "correct"),
        )
    ]
    figure.legend(
        handles=error_handles,
        loc="outside lower right",
        ncols=1,
        fontsize=8,
        frameon=False,
        title="errors",
        title_fontsize=8,
    )
    return _save(figure, path)


CHARTS = {"Per-class IoU": "class_iou.png", "Confusion matrix": "confusion_matrix.png"}
"""The charts of an evaluation: caption -> file name in its output folder."""


def evaluation_charts(metrics: Mapping, out_dir: str | Path) -> dict[str, Path]:
    """Write the per-class IoU bars and the confusion matrix of an evaluation's metrics dict
    (:data:`CHARTS`; a chart whose numbers the metrics lack is left out).

    Returns:
        Caption -> PNG path, ready for :func:`cityseg.visualize.report.write_report`.
    """
    out_dir = Path(out_dir)
    charts: dict[str, Path] = {}
    classes = metrics.get("classes") or {}
    if classes:
        class_iou = {name: values.get("iou") for name, values in classes.items()}
        charts["Per-class IoU"] = plot_per_class_iou(class_iou, out_dir / CHARTS["Per-class IoU"])
    if metrics.get("confusion_matrix") is not None:
        names = list(classes) if classes else CLASS_NAMES
        charts["Confusion matrix"] = plot_confusion_matrix(
            metrics["confusion_matrix"], out_dir / CHARTS["Confusion matrix"], names
        )
    return charts
