"""ONNX export: a valid graph with dynamic batch, height and width that onnxruntime runs like
PyTorch, on real photos and on odd sizes, and the OnnxSegmenter that runs it without torch."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import onnx
import pytest
import torch

from cityseg import labels
from cityseg.checkpoint.loading import load_model
from cityseg.data.io import read_rgb
from cityseg.errors import CheckpointError, ConfigError
from cityseg.export import (
    ImageToLogits,
    compare_with_onnxruntime,
    export_checkpoint,
    export_model,
)
from cityseg.inference.options import InferenceOptions
from cityseg.model import UNet
from cityseg.normalization import IMAGENET_NORMALIZATION
from cityseg.predict import OnnxSegmenter, Segmenter
from cityseg.predict.onnx_segmenter import _open_session

NORMALIZATION = IMAGENET_NORMALIZATION  # the fixture's
MAX_LOGIT_DIFF = 1e-3
MIN_AGREEMENT = 0.9999
RESIZED_AGREEMENT = 0.99
"""With a resize, the ONNX path rounds the resized photo to uint8 (the graph's input) where
PyTorch keeps it in float: near-ties of a barely trained network can flip."""


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint) -> Path:
    return tiny_checkpoint


@pytest.fixture(scope="module")
def exported(checkpoint):
    return export_checkpoint(checkpoint, checkpoint.with_suffix(".onnx"))


@pytest.fixture(scope="module")
def graph(checkpoint) -> ImageToLogits:
    model, meta = load_model(checkpoint, "cpu")
    return ImageToLogits(model, **meta["normalization"]).eval()


def real_photos(cityscapes_root: Path, pairs_root: Path) -> dict[str, np.ndarray]:
    """The frankfurt val frame (128x256), an aachen frame downscaled to an odd 203x405, and the
    photo halves of two Kaggle pairs JPEGs (256x256)."""
    frankfurt = "leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png"
    aachen = read_rgb(
        cityscapes_root / "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png"
    )
    photos = {
        "frankfurt": read_rgb(cityscapes_root / frankfurt),
        "aachen": cv2.resize(aachen, (405, 203), interpolation=cv2.INTER_AREA),
    }
    for name in ("1.jpg", "2975.jpg"):
        pair = read_rgb(pairs_root / "train" / name)
        photos[f"pairs/{name}"] = np.ascontiguousarray(pair[:, : pair.shape[0]])
    return photos


def test_the_export_is_a_valid_onnx_model_with_dynamic_uint8_input(exported):
    assert exported.path.is_file() and exported.opset == 17
    assert exported.exporter == "torchscript"
    proto = onnx.load(str(exported.path))
    onnx.checker.check_model(proto, full_check=True)
    (image,) = proto.graph.input
    assert image.name == "image"
    assert image.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim]
    assert dims == ["batch", "height", "width", 3]
    assert [output.name for output in proto.graph.output] == ["logits", "labels"]
    print(f"\nexport of a base-8 depth-3 UNet: {exported.seconds:.2f} s")


def test_the_metadata_describes_the_model(exported):
    props = {p.key: p.value for p in onnx.load(str(exported.path)).metadata_props}
    assert props["cityseg_format"] == "cityseg-onnx-v1"
    assert json.loads(props["class_names"]) == list(labels.CLASS_NAMES)
    assert json.loads(props["palette"]) == labels.PALETTE.tolist()
    assert json.loads(props["normalization"]) == NORMALIZATION
    assert json.loads(props["input_size"]) == [64, 128]
    assert json.loads(props["model_config"])["widths"] == [8, 16, 32, 64]


def test_the_built_in_check_ran_at_another_size(exported):
    assert exported.check_size == (51, 73)
    assert exported.max_abs_logit_diff < MAX_LOGIT_DIFF
    assert exported.label_agreement >= MIN_AGREEMENT


def test_onnxruntime_matches_pytorch_on_real_photos(exported, graph, cityscapes_root, pairs_root):
    for name, photo in real_photos(cityscapes_root, pairs_root).items():
        diff, agreement = compare_with_onnxruntime(graph, exported.path, photo[None])
        print(f"\n{name} {photo.shape[:2]}: max |logit diff| {diff:.2e}, agreement {agreement:.6f}")
        assert diff < MAX_LOGIT_DIFF, name
        assert agreement >= MIN_AGREEMENT, name


@pytest.mark.parametrize("shape", [(3, 45, 77), (1, 33, 129), (2, 96, 64), (1, 32, 33)])
def test_dynamic_batch_and_odd_sizes(exported, graph, shape):
    generator = torch.Generator().manual_seed(sum(shape))
    images = torch.randint(0, 256, (*shape, 3), generator=generator, dtype=torch.uint8)
    diff, agreement = compare_with_onnxruntime(graph, exported.path, images)
    assert diff < MAX_LOGIT_DIFF and agreement >= MIN_AGREEMENT


def test_the_labels_output_is_the_argmax_of_the_logits(exported):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    images = np.random.default_rng(0).integers(0, 256, (2, 40, 52, 3), dtype=np.uint8)
    logits, train_ids = session.run(None, {"image": images})
    assert logits.dtype == np.float32 and logits.shape == (2, 19, 40, 52)
    assert train_ids.dtype == np.uint8
    np.testing.assert_array_equal(train_ids, logits.argmax(axis=1))


def test_the_onnx_segmenter_agrees_with_the_checkpoint(exported, checkpoint):
    photo = np.random.default_rng(1).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    native = InferenceOptions.from_flags(resize="native")
    cases = [
        (native, MIN_AGREEMENT),
        (InferenceOptions.from_flags(resize="native", tta=True, scales=[1.0]), MIN_AGREEMENT),
        (InferenceOptions(), RESIZED_AGREEMENT),  # the training size, as PyTorch resizes
    ]
    for options, agreement in cases:
        expected = Segmenter.from_checkpoint(checkpoint, "cpu", options).predict(photo)
        onnx_segmenter = OnnxSegmenter(exported.path, "cpu", options)
        assert np.mean(onnx_segmenter.predict(photo) == expected) >= agreement
    options = InferenceOptions.from_flags(resize="train", tta=True)
    resized = OnnxSegmenter(exported.path, "cpu", options)
    assert resized.input_size == (64, 128) and resized.options.scales == (0.75, 1.0, 1.25)
    train_ids = resized.predict_batch(np.stack([photo, photo]))
    assert train_ids.shape == (2, 70, 90) and train_ids.max() < 19
    assert OnnxSegmenter(exported.path, "cpu").class_names == list(labels.CLASS_NAMES)


def test_the_onnx_segmenter_refuses_what_it_cannot_run(exported, tmp_path):
    with pytest.raises(ConfigError, match="whole mode only"):
        OnnxSegmenter(exported.path, options=InferenceOptions(mode="slide"))
    with pytest.raises(CheckpointError, match="ONNX model not found"):
        OnnxSegmenter(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="junk.onnx: not a loadable ONNX model"):
        OnnxSegmenter(tmp_path / "junk.onnx")
    foreign = tmp_path / "foreign.onnx"
    tensor = onnx.helper.make_tensor_value_info
    identity = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "foreign",
        [tensor("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [tensor("y", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    opset = [onnx.helper.make_opsetid("", 17)]
    onnx.save(onnx.helper.make_model(identity, opset_imports=opset, ir_version=8), str(foreign))
    with pytest.raises(CheckpointError, match="not an ONNX model written by `cityseg export`"):
        OnnxSegmenter(foreign)


@pytest.mark.slow
def test_the_dynamo_exporter_gives_the_same_model(checkpoint, graph, tmp_path):
    pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript")
    result = export_checkpoint(checkpoint, tmp_path / "dynamo.onnx", dynamo=True)
    assert result.exporter == "dynamo" and result.max_abs_logit_diff < MAX_LOGIT_DIFF
    images = torch.randint(0, 256, (2, 45, 77, 3), dtype=torch.uint8)
    assert compare_with_onnxruntime(graph, result.path, images)[1] >= MIN_AGREEMENT


def test_dynamo_without_onnxscript_is_a_clear_error(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="onnxscript"):
        export_checkpoint(checkpoint, tmp_path / "x.onnx", dynamo=True)


def test_export_leaves_the_callers_model_as_it_was(tmp_path):
    """The export works on a copy: the caller's model keeps its device, mode and tensors."""
    model = UNet(base_width=4, depth=2).train()
    parameters = [(p, p.data_ptr(), p.device) for p in model.parameters()]
    export_model(model, tmp_path / "model.onnx", NORMALIZATION, verify=False)
    assert model.training
    after = [(p, p.data_ptr(), p.device) for p in model.parameters()]
    assert all(a[0] is b[0] and a[1:] == b[1:] for a, b in zip(parameters, after, strict=True))
    graph = ImageToLogits(model, **NORMALIZATION).train()
    compare_with_onnxruntime(graph, tmp_path / "model.onnx", np.zeros((1, 40, 48, 3), np.uint8))
    assert graph.training and model.training


class FakeOnnxRuntime:
    """onnxruntime on a GPU machine: the providers it offers, those a session really starts."""

    def __init__(self, monkeypatch, available: list[str], starts: list[str] | None = None):
        import onnxruntime

        self.available, self.starts, self.asked = available, starts, []
        monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: list(available))
        monkeypatch.setattr(onnxruntime, "InferenceSession", self.session)

    def session(self, path, providers):
        self.asked.append(providers)
        names = [p if isinstance(p, str) else p[0] for p in providers]
        started = [p for p in names if p in (self.starts or names)]
        return SimpleNamespace(get_providers=lambda: started)


GPU_BUILD = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def test_onnx_sessions_run_on_the_gpu_asked_for(exported, monkeypatch, capsys):
    ort = FakeOnnxRuntime(monkeypatch, GPU_BUILD)
    _open_session(exported.path, "cuda:1")
    assert ort.asked[-1] == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    _open_session(exported.path, "cuda")
    assert ort.asked[-1][0] == ("CUDAExecutionProvider", {"device_id": 0})
    _open_session(exported.path, "auto")  # no TensorRT: an engine built for every photo size
    assert ort.asked[-1] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    _open_session(exported.path, "tensorrt:2")  # unless asked for
    tensorrt, cuda, _ = ort.asked[-1]
    assert tensorrt == ("TensorrtExecutionProvider", {"device_id": 2})
    assert cuda == ("CUDAExecutionProvider", {"device_id": 2})
    assert capsys.readouterr().err == ""
    for device in ("cuda:x", "gpu", "cuda:"):
        with pytest.raises(ConfigError, match="unknown device"):
            _open_session(exported.path, device)


def test_a_gpu_provider_that_does_not_start_is_reported(exported, monkeypatch, capsys):
    FakeOnnxRuntime(monkeypatch, GPU_BUILD, starts=["CPUExecutionProvider"])  # no cuDNN, say
    _open_session(exported.path, "cuda:0")
    err = capsys.readouterr().err.strip()
    assert err == (
        f"warning: {exported.path}: onnxruntime could not start CUDAExecutionProvider "
        "(a missing library?); running on CPUExecutionProvider"
    )
    FakeOnnxRuntime(monkeypatch, ["CPUExecutionProvider"])
    with pytest.raises(ConfigError, match="onnxruntime has no CUDA here"):
        _open_session(exported.path, "cuda")
