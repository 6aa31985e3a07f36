"""Export a checkpoint to ONNX: ``cityseg export CHECKPOINT --out model.onnx``.

The graph takes decoded photos as they come, uint8 RGB channels-last (N, H, W, 3) with dynamic
batch, height and width, and holds the normalisation, so a consumer needs no preprocessing; see
:mod:`cityseg.predict.onnx_segmenter` for its inputs, outputs and metadata, and for running it.

Two exporters: the TorchScript-based one (``dynamo=False``, the default: faster, no extra package)
and the ``torch.export``-based one (``dynamo=True``: slower, needs the ``onnxscript`` package).
Both give the same outputs to within 1e-5.

Example:
    >>> from cityseg.export import export_checkpoint
    >>> result = export_checkpoint("runs/demo/best.pt", "model.onnx")  # doctest: +SKIP
    >>> result.max_abs_logit_diff < 1e-3, result.label_agreement  # doctest: +SKIP
    (True, 1.0)
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cityseg import labels, limits
from cityseg.checkpoint.loading import load_model
from cityseg.errors import ConfigError
from cityseg.outputs import same_file
from cityseg.predict.onnx_segmenter import INPUT_NAME, ONNX_FORMAT, OUTPUT_NAMES
from cityseg.runtime.normalize import Normalize

DEFAULT_OPSET = 17


class ImageToLogits(nn.Module):
    """The exported graph: uint8 RGB (N, H, W, 3) in; float32 logits (N, C, H, W) and uint8
    argmax trainIds (N, H, W) out. Normalises with the :class:`Normalize` of training and
    inference."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.model = model
        # channels_last: no copy into NCHW order, which the graph would only carry as a no-op.
        self.normalize = Normalize(mean, std, channels_last=True)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(self.normalize(image)).float()
        return logits, logits.argmax(dim=1).to(torch.uint8)


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` wrote and how well onnxruntime reproduces PyTorch.

    Attributes:
        path: the ONNX file.
        opset: its ONNX opset.
        exporter: "torchscript" or "dynamo".
        seconds: time the export itself took.
        check_size: (height, width) of the random check image (not the export size), or None.
        max_abs_logit_diff: largest |logit difference| between onnxruntime and PyTorch there.
        label_agreement: fraction of its pixels with the same argmax.
    """

    path: Path
    opset: int
    exporter: str
    seconds: float
    check_size: tuple[int, int] | None = None
    max_abs_logit_diff: float | None = None
    label_agreement: float | None = None


def export_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    opset: int = DEFAULT_OPSET,
    dynamo: bool = False,
    verify: bool = True,
) -> ExportResult:
    """Export a checkpoint written by ``cityseg train`` to ONNX (see :func:`export_model`).

    Raises:
        ConfigError: ``out`` is the checkpoint, or a file not exported by cityseg (before any work).
    """
    checkpoint = Path(checkpoint)
    check_export_target(Path(out), checkpoint)
    model, meta = load_model(checkpoint, torch.device("cpu"))
    palette = meta.get("palette")
    metadata = {
        "class_names": list(meta.get("class_names") or labels.CLASS_NAMES),
        "palette": np.asarray(labels.PALETTE if palette is None else palette).tolist(),
        "input_size": list(meta["input_size"]) if meta.get("input_size") else None,
        "crop_size": list(meta["crop_size"]) if meta.get("crop_size") else None,
        "model_config": meta.get("model_config"),
        "source_checkpoint": checkpoint.name,
    }
    return export_model(model, out, meta["normalization"], metadata, opset, dynamo, verify)


def export_model(
    model: nn.Module,
    out: str | Path,
    normalization: dict[str, Sequence[float]],
    metadata: dict | None = None,
    opset: int = DEFAULT_OPSET,
    dynamo: bool = False,
    verify: bool = True,
) -> ExportResult:
    """Write ``model`` as an ONNX graph from uint8 photos to logits and labels.

    Args:
        model: network from normalised float (N, 3, H, W) to logits (N, C, H, W), on any device;
            it is left as it is (a copy is exported).
        out: the ``.onnx`` file to write (its folder is created).
        normalization: ``{"mean": [...], "std": [...]}`` on the 0..1 scale, built into the graph.
        metadata: JSON-serialisable entries stored in the model's metadata_props (class_names,
            palette, input_size, model_config, ...).
        opset: ONNX opset version.
        dynamo: use the ``torch.export``-based exporter (needs ``onnxscript``).
        verify: run onnxruntime on a random image of a size other than the traced one and
            compare with PyTorch.

    The model is written beside ``out`` under a temporary name and renamed over it once checked:
    an existing ``out`` is replaced only when it is an ONNX model cityseg exported, and only whole.

    Raises:
        ConfigError: ``dynamo=True`` without onnxscript installed; ``out`` is a file cityseg did
            not export.
    """
    if dynamo and importlib.util.find_spec("onnxscript") is None:
        raise ConfigError("--dynamo needs the onnxscript package (pip install onnxscript)")
    out = Path(out)
    check_export_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        result = _export_checked(model, temporary, normalization, metadata, opset, dynamo, verify)
        os.replace(temporary, out)
    finally:
        temporary.unlink(missing_ok=True)
    return dataclasses.replace(result, path=out)


def check_export_target(out: Path, checkpoint: Path | None = None) -> None:
    """Refuse an ``out`` that is the checkpoint, or an existing file that is not an ONNX model
    written by ``cityseg export`` (the only file an export replaces).

    Raises:
        ConfigError: one line naming the file and what to do.
    """
    if checkpoint is not None and same_file(out, checkpoint):
        raise ConfigError(
            f"{out}: is the checkpoint being exported; an export never replaces its input: "
            f"choose another --out (e.g. {checkpoint.with_suffix('.onnx')})"
        )
    if (out.exists() or out.is_symlink()) and not is_exported_model(out):
        raise ConfigError(
            f"{out}: exists and is not an ONNX model written by `cityseg export`; it is left as "
            "it is: move it away or choose another --out"
        )


def is_exported_model(path: Path) -> bool:
    """Whether ``path`` is a regular file holding an ONNX model written by ``cityseg export``."""
    if limits.regular_file_problem(path, limits.MAX_CHECKPOINT_BYTES) or not path.is_file():
        return False
    with open(path, "rb") as file:
        if file.read(1) != b"\x08":  # a ModelProto starts with its ir_version field
            return False
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - any file that protobuf cannot parse is not ours
        return False
    return any(
        prop.key == "cityseg_format" and prop.value == ONNX_FORMAT for prop in proto.metadata_props
    )


def _export_checked(
    model: nn.Module,
    out: Path,
    normalization: dict[str, Sequence[float]],
    metadata: dict | None,
    opset: int,
    dynamo: bool,
    verify: bool,
) -> ExportResult:
    import onnx  # loaded when exporting only: the ONNX libraries take a while to import

    # A copy on the CPU in eval mode: the caller's model stays where it is, in its own mode.
    exported = copy.deepcopy(model).cpu().eval()
    graph = ImageToLogits(exported, normalization["mean"], normalization["std"]).eval()
    min_size = int(getattr(model, "min_size", 32))
    # An odd, non-square traced size: nothing in the graph may take it for a constant.
    example = _random_images(2, min_size + 5, 2 * min_size + 3, seed=0)
    start = time.perf_counter()
    with torch.no_grad():
        _export(graph, example, out, opset, dynamo, min_size)
    seconds = time.perf_counter() - start

    proto = onnx.load(str(out))
    properties = {**(metadata or {}), "normalization": dict(normalization), "min_size": min_size}
    onnx.helper.set_model_props(
        proto,
        {"cityseg_format": ONNX_FORMAT, **{k: json.dumps(v) for k, v in properties.items()}},
    )
    proto.doc_string = (
        f"cityseg U-Net. Input {INPUT_NAME!r}: uint8 RGB (N, H, W, 3). Outputs 'logits' float32 "
        "(N, C, H, W) and 'labels' uint8 trainIds (N, H, W)."
    )
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(out))
    result = ExportResult(out, opset, "dynamo" if dynamo else "torchscript", seconds)
    if not verify:
        return result
    check_size = (min_size + 19, min_size + 41)
    diff, agreement = compare_with_onnxruntime(graph, out, _random_images(1, *check_size, seed=1))
    return ExportResult(out, opset, result.exporter, seconds, check_size, diff, agreement)


def _random_images(count: int, height: int, width: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, height, width, 3), generator=generator, dtype=torch.uint8)


def _export(
    graph: nn.Module, example: torch.Tensor, out: Path, opset: int, dynamo: bool, min_size: int
) -> None:
    names = {"input_names": [INPUT_NAME], "output_names": list(OUTPUT_NAMES)}
    if dynamo:
        dims = {
            0: torch.export.Dim("batch", min=1),
            1: torch.export.Dim("height", min=min_size),
            2: torch.export.Dim("width", min=min_size),
        }
        torch.onnx.export(
            graph, (example,), str(out), dynamo=True, opset_version=opset, external_data=False,
            dynamic_shapes={INPUT_NAME: dims}, verbose=False, **names,
        )  # fmt: skip
        return
    image_axes = {0: "batch", 1: "height", 2: "width"}
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of dynamo, which is slower and needs
        # onnxscript; it still exports this network exactly (see tests/test_export.py).
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            graph, (example,), str(out), dynamo=False, opset_version=opset,
            dynamic_axes={
                INPUT_NAME: image_axes,
                "logits": {0: "batch", 2: "height", 3: "width"},
                "labels": image_axes,
            },
            **names,
        )  # fmt: skip


def compare_with_onnxruntime(
    graph: nn.Module, path: str | Path, images: torch.Tensor | np.ndarray
) -> tuple[float, float]:
    """Run uint8 photos (N, H, W, 3) through ``graph`` in PyTorch (fp32) and through the ONNX file
    in onnxruntime (CPU); return the largest absolute logit difference and the fraction of
    pixels whose argmax agrees."""
    import onnxruntime  # as onnx above

    images = torch.as_tensor(images)
    reference = copy.deepcopy(graph).cpu().eval()  # (the caller's graph stays as it is)
    with torch.no_grad():
        expected = reference(images)[0].numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {INPUT_NAME: images.numpy()})[0]
    if logits.shape != expected.shape:
        raise AssertionError(f"onnxruntime gives {logits.shape}, PyTorch {expected.shape}")
    agreement = float(np.mean(logits.argmax(axis=1) == expected.argmax(axis=1)))
    return float(np.abs(logits - expected).max()), agreement
