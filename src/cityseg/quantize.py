"""int8 ONNX for the CPU, with its accuracy measured: ``cityseg export CHECKPOINT --out m.onnx
--quantize int8 --calibration PHOTOS [--data ROOT]``.

The checkpoint is exported to float ONNX (:mod:`cityseg.export`), then quantised statically with
onnxruntime: QDQ format, int8 weights per output channel, uint8 activations whose ranges come from
running the float model on the user's photos (a few dozen; each at the size the model runs at).
Both models then segment those photos (and, given a labelled split, that split) and are compared:

* ``agreement``: the fraction of pixels where the int8 model gives the float model's class;
* ``miou_vs_float``: the mIoU of the int8 predictions taking the float ones as ground truth;
* ``labelled``: the mIoU of each against the labels, and the drop;
* ``speed``: milliseconds per photo of each at the size the model runs at, on this CPU.

A drop of ``agreement`` or of the labelled mIoU larger than ``max_drop`` is refused
(:class:`~cityseg.errors.ConfigError`), and nothing is left behind, unless ``allow_drop``. On
success the int8 model is written to ``out`` and the figures beside it, ``<out stem>.int8.json``.
The int8 graph keeps the float one's input, outputs and metadata, so ``cityseg predict --onnx``
and :class:`~cityseg.predict.OnnxSegmenter` run it as they run any export.

Example:
    >>> from cityseg.quantize import quantize_checkpoint
    >>> report = quantize_checkpoint("best.pt", "model.onnx", "photos/")  # doctest: +SKIP
    >>> report["agreement"], report["speed"]["int8_ms"]  # doctest: +SKIP
    (0.991, 41.2)
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cityseg import processes
from cityseg.errors import ConfigError, DataError
from cityseg.export import DEFAULT_OPSET, export_checkpoint
from cityseg.metrics.confusion import confusion_matrix_np
from cityseg.metrics.scores import iou, macro_mean
from cityseg.predict.files import collect_inputs, read_photo
from cityseg.predict.onnx_segmenter import INPUT_NAME, OnnxSegmenter, resize_photo

DEFAULT_MAX_DROP = 0.02
MAX_CALIBRATION_PHOTOS = 500
SPEED_RUNS = 50


def report_path(out: str | Path) -> Path:
    """The JSON written beside the int8 model ``out``: ``model.onnx`` -> ``model.int8.json``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.int8.json")


def calibration_photos(folder: str | Path, input_format: str = "image") -> list[np.ndarray]:
    """The photos of ``folder`` (PNG, JPEG, searched recursively), decoded; at most
    ``MAX_CALIBRATION_PHOTOS``.

    Raises:
        DataError: no photo there, an unreadable one, or too many.
    """
    paths = collect_inputs([folder])  # (DataError when there are none)
    if len(paths) > MAX_CALIBRATION_PHOTOS:
        raise DataError(
            f"{folder}: {len(paths)} photos; calibrate on a few dozen (at most "
            f"{MAX_CALIBRATION_PHOTOS}): give a folder with a sample of them"
        )
    return [read_photo(path, input_format) for path in paths]


def run_size(segmenter: OnnxSegmenter, image: np.ndarray) -> tuple[int, int]:
    """The (height, width) ``segmenter`` runs ``image`` at: its resize option or the photo's own
    size, at least the graph's smallest size."""
    height, width = segmenter.options.resize or image.shape[:2]
    return max(int(height), segmenter.min_size), max(int(width), segmenter.min_size)


class _Photos:
    """onnxruntime's CalibrationDataReader: one photo at a time, as the model runs it."""

    def __init__(self, photos: Sequence[np.ndarray], segmenter: OnnxSegmenter) -> None:
        self._batches: Iterator[dict[str, np.ndarray]] = (
            {INPUT_NAME: resize_photo(photo, run_size(segmenter, photo))[None]} for photo in photos
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def quantize_onnx(
    float_model: Path, out: Path, photos: Sequence[np.ndarray], per_channel: bool = True
) -> None:
    """Write the static int8 (QDQ) quantisation of ``float_model`` to ``out``, calibrated on
    ``photos``, keeping the float model's metadata."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    segmenter = OnnxSegmenter(float_model, "cpu")
    reader = type("PhotoReader", (_Photos, CalibrationDataReader), {})(photos, segmenter)
    prepared = out.with_name(f"{out.stem}.prepared.onnx")
    quant_pre_process(str(float_model), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared), str(out), reader,
        quant_format=QuantFormat.QDQ, per_channel=per_channel,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )  # fmt: skip
    prepared.unlink(missing_ok=True)
    source, quantized = onnx.load(str(float_model)), onnx.load(str(out))
    properties = {prop.key: prop.value for prop in source.metadata_props}
    properties["quantization"] = json.dumps(
        {"type": "int8", "format": "QDQ", "per_channel": per_channel, "photos": len(photos)}
    )
    del quantized.metadata_props[:]
    onnx.helper.set_model_props(quantized, properties)
    quantized.doc_string = source.doc_string
    onnx.save(quantized, str(out))


def compare_predictions(
    reference: OnnxSegmenter, candidate: OnnxSegmenter, photos: Sequence[np.ndarray]
) -> dict[str, float]:
    """``agreement`` (fraction of equal pixels) and ``miou_vs_float`` (mIoU of ``candidate``
    against ``reference`` taken as ground truth) over ``photos``."""
    classes = len(reference.class_names)
    confusion = np.zeros((classes, classes), np.int64)
    for photo in photos:
        confusion += confusion_matrix_np(
            candidate.predict(photo), reference.predict(photo), classes
        )
    agreement = float(np.trace(confusion) / max(confusion.sum(), 1))
    return {"agreement": agreement, "miou_vs_float": macro_mean(iou(confusion), confusion)}


def labelled_scores(
    models: dict[str, OnnxSegmenter],
    data: str | Path,
    data_format: str = "auto",
    split: str = "val",
    max_images: int | None = None,
) -> dict[str, Any]:
    """The mIoU of each model against the labels of ``split`` of the dataset ``data``."""
    from cityseg.data.datasets import open_dataset

    dataset = open_dataset(data, split, format=data_format, max_images=max_images)
    if not getattr(dataset, "has_labels", True):
        raise DataError(f"{data}: split '{split}' has no labels; give --split a labelled one")
    classes = len(next(iter(models.values())).class_names)
    confusions = {name: np.zeros((classes, classes), np.int64) for name in models}
    for sample in dataset.samples:
        image, target = dataset.read(sample)
        for name, model in models.items():
            confusions[name] += confusion_matrix_np(model.predict(image), target, classes)
    scores = {f"miou_{name}": macro_mean(iou(c), c) for name, c in confusions.items()}
    return {"data": str(data), "split": split, "images": len(dataset.samples), **scores}


def milliseconds_per_photo(
    models: dict[str, OnnxSegmenter], photo: np.ndarray, runs: int = SPEED_RUNS
) -> dict[str, float]:
    """Median wall time (ms) of one forward pass of each model on ``photo`` at its run size,
    after a warm-up pass; the models take turns, so a machine busy with other work slows both
    alike."""
    batches = {
        name: resize_photo(photo, run_size(model, photo))[None] for name, model in models.items()
    }
    times: dict[str, list[float]] = {name: [] for name in models}
    for run in range(runs + 1):
        for name, model in models.items():
            start = time.perf_counter()
            model.logits(batches[name])
            if run:  # the first pass warms up
                times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(values) for name, values in times.items()}


def refusals(report: dict[str, Any], max_drop: float) -> list[str]:
    """What exceeds ``max_drop`` in a report: agreement below 1 - max_drop, a labelled mIoU drop
    above max_drop."""
    problems = []
    if 1 - report["agreement"] > max_drop:
        problems.append(
            f"the int8 model agrees with the float one on {100 * report['agreement']:.2f}% of "
            f"the pixels (a drop of {100 * (1 - report['agreement']):.2f} points)"
        )
    labelled = report.get("labelled")
    if labelled and labelled["drop"] > max_drop:
        problems.append(
            f"its mIoU on {labelled['data']} falls from {100 * labelled['miou_float']:.2f}% to "
            f"{100 * labelled['miou_int8']:.2f}%"
        )
    return problems


def quantize_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    calibration: str | Path,
    *,
    data: str | Path | None = None,
    data_format: str = "auto",
    split: str = "val",
    max_images: int | None = None,
    calibration_format: str = "image",
    max_drop: float = DEFAULT_MAX_DROP,
    allow_drop: bool = False,
    per_channel: bool = True,
    opset: int = DEFAULT_OPSET,
) -> dict[str, Any]:
    """Export ``checkpoint`` as a static int8 ONNX model at ``out``, measured against the float
    model; return the report also written to :func:`report_path`.

    Args:
        checkpoint: a checkpoint, run folder or model folder.
        out: the int8 ``.onnx`` to write.
        calibration: a folder of photos (a few dozen) to calibrate and compare on.
        data: a labelled dataset to score both models on (optional).
        data_format, split, max_images: which part of ``data`` (see ``open_dataset``).
        calibration_format: "image", or "pairs" for Kaggle pairs JPEGs (their left half).
        max_drop: the largest accepted drop of agreement or labelled mIoU (a fraction).
        allow_drop: write the model whatever the drop.
        per_channel: int8 weights with a scale per output channel (else one per tensor).
        opset: ONNX opset of the float export.

    Raises:
        ConfigError: the drop exceeds ``max_drop`` (nothing written).
        DataError: no calibration photos, or an unusable ``data``.
    """
    out = Path(out)
    if not 0 <= max_drop <= 1:
        raise ConfigError(f"--max-drop {max_drop}: give a fraction from 0 to 1 (e.g. 0.02)")
    photos = calibration_photos(calibration, calibration_format)
    created = [folder for folder in (out.parent, *out.parent.parents) if not folder.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        report = _quantize(checkpoint, out, calibration, photos, data, data_format, split,
                           max_images, max_drop, allow_drop, per_channel, opset)  # fmt: skip
    except BaseException:
        for folder in created:  # deepest first: leave no folder behind that this call made
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    report_path(out).write_text(json.dumps(report, indent=2) + "\n")
    return report


def _quantize(
    checkpoint: str | Path,
    out: Path,
    calibration: str | Path,
    photos: list[np.ndarray],
    data: str | Path | None,
    data_format: str,
    split: str,
    max_images: int | None,
    max_drop: float,
    allow_drop: bool,
    per_channel: bool,
    opset: int,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=".cityseg-int8-", dir=out.parent) as folder:
        float_path, int8_path = Path(folder) / "float.onnx", Path(folder) / "int8.onnx"
        export_checkpoint(checkpoint, float_path, opset, verify=False)
        start = time.perf_counter()
        quantize_onnx(float_path, int8_path, photos, per_channel)
        seconds = time.perf_counter() - start
        models = {
            "float": OnnxSegmenter(float_path, "cpu"),
            "int8": OnnxSegmenter(int8_path, "cpu"),
        }
        report: dict[str, Any] = {
            "model": out.name,
            "checkpoint": str(checkpoint),
            "quantization": {
                "type": "int8 static",
                "format": "QDQ",
                "weights": "int8",
                "per_channel": per_channel,
                "activations": "uint8",
                "calibration": "MinMax",
                "seconds": round(seconds, 2),
            },  # fmt: skip
            "calibration": {"folder": str(calibration), "photos": len(photos)},
            "run_size": list(run_size(models["float"], photos[0])),
            **compare_predictions(models["float"], models["int8"], photos),
        }
        if data is not None:
            labelled = labelled_scores(models, data, data_format, split, max_images)
            labelled["drop"] = labelled["miou_float"] - labelled["miou_int8"]
            report["labelled"] = labelled
        speed = milliseconds_per_photo(models, photos[0])
        float_ms, int8_ms = speed["float"], speed["int8"]
        report["speed"] = {
            "float_ms": round(float_ms, 2), "int8_ms": round(int8_ms, 2),
            "speedup": round(float_ms / int8_ms, 3), "cpu": processes.cpu_model(),
            "threads": os.cpu_count(), "runs": SPEED_RUNS,
        }  # fmt: skip
        report["size_bytes"] = {
            "float": float_path.stat().st_size,
            "int8": int8_path.stat().st_size,
        }
        report["max_drop"] = max_drop
        problems = refusals(report, max_drop)
        report["accepted"] = not problems
        if problems and not allow_drop:
            raise ConfigError(
                f"{out}: not written: {'; '.join(problems)}, more than --max-drop {max_drop:g}; "
                "calibrate on more photos like the ones it will see, or pass --allow-drop"
            )
        del models  # (close the sessions before the files move)
        os.replace(int8_path, out)
    return report
