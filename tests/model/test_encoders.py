"""Pretrained encoders: strict loading of the published files' keys (torchvision's ResNet files
without BatchNorm's num_batches_tracked, loaded as torch loads them), the download path (a local
HTTP server), the offline and wrong-hash errors, and the ImageNet head of EfficientNet-Lite
recognising the cars of real Cityscapes frames. What every encoder's U-Net promises (any size,
gradients, rebuilding, ONNX export) is in test_model_contract.py."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cityseg.errors import ConfigError
from cityseg.model import EncoderUNet, init_encoder, model_normalization
from cityseg.model.encoders import ENCODERS
from cityseg.model.encoders.weights import hub_cache_path, imagenet_state_dict
from cityseg.normalization import TF_LITE_NORMALIZATION
from tests.helpers import published
from tests.helpers.published import WITH_BATCH_COUNTERS, published_shapes

SMALL_DECODER = [16, 16, 8, 8, 8]
# The published files' key counts: torchvision's ResNets have no num_batches_tracked
PUBLISHED_KEYS = {
    "efficientnet-lite0": 296,
    "resnet18": 102,
    "resnet34": 182,
    "resnet50": 267,
    "mobilenet_v2": 314,
}
# ImageNet classes that are a car or part of one
VEHICLE_CLASSES = {
    407: "ambulance", 436: "beach wagon", 468: "cab", 475: "car mirror", 479: "car wheel",
    511: "convertible", 555: "fire engine", 569: "garbage truck", 581: "grille", 609: "jeep",
    627: "limousine", 654: "minibus", 656: "minivan", 661: "Model T", 675: "moving van",
    705: "passenger car", 717: "pickup", 734: "police van", 751: "racer",
    757: "recreational vehicle", 779: "school bus", 817: "sports car", 864: "tow truck",
    867: "trailer truck", 874: "trolleybus",
}  # fmt: skip


def published_state_dict(name: str) -> dict[str, torch.Tensor]:
    """The published file of encoder ``name``: the real one where it comes with an installed
    package (EfficientNet-Lite), else one with the keys and shapes of torchvision's (random
    values; see :mod:`tests.helpers.published`)."""
    if name in WITH_BATCH_COUNTERS:
        return published.published_state_dict(name)
    return imagenet_state_dict(name)


@pytest.mark.parametrize("name", list(ENCODERS))
def test_published_weights_load_strictly(name):
    state = published_state_dict(name)
    if name in PUBLISHED_KEYS:
        assert len(state) == PUBLISHED_KEYS[name]
    model = EncoderUNet(name, decoder_widths=SMALL_DECODER)
    init_from_state(model, state)
    filled = 0
    for key, tensor in model.encoder.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in state:  # as torch fills it in
            assert tensor.dtype == torch.int64 and tensor.item() == 0, key
            filled += 1
        else:
            assert torch.equal(tensor, state[key]), key
    assert (filled > 0) == (WITH_BATCH_COUNTERS.get(name) is False)


def test_a_legacy_resnet_file_loads_as_torch_loads_it_and_trains():
    state = published_state_dict("resnet18")
    assert not any(key.endswith("num_batches_tracked") for key in state)
    assert set(state) == set(published_shapes("resnet18"))
    reference = ENCODERS["resnet18"].build(3, 1000)
    reference.load_state_dict(state, strict=True)  # torch's own rule for such a file
    model = EncoderUNet("resnet18", decoder_widths=SMALL_DECODER)
    init_from_state(model, state)
    for key, tensor in reference.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(model.encoder.state_dict()[key], tensor), key
    model.train()(torch.randn(2, 3, 64, 64)).mean().backward()
    assert model.encoder.bn1.num_batches_tracked.item() == 1


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("resnet18", "layer2.0.downsample.1.running_var"),
        ("resnet50", "layer4.2.conv3.weight"),
        ("mobilenet_v2", "features.7.conv.1.1.bias"),
    ],
)
def test_a_published_file_without_one_of_its_keys_is_refused_in_one_line(name, key):
    state = published_state_dict(name)
    del state[key]
    model = EncoderUNet(name, decoder_widths=SMALL_DECODER)
    with pytest.raises(ConfigError) as error:
        init_from_state(model, state)
    message = str(error.value)
    assert "\n" not in message
    assert f"not {name} weights (1 missing, e.g. ['{key}'])" in message


def init_from_state(model: EncoderUNet, state: dict, tmp: Path | None = None) -> None:
    from cityseg.model.encoders.weights import load_encoder_weights

    load_encoder_weights(model.encoder, model.config["encoder"], state)


def test_weights_of_another_encoder_or_shape_are_refused_with_the_difference(tmp_path):
    model = EncoderUNet("resnet18", decoder_widths=SMALL_DECODER)
    with pytest.raises(ConfigError, match=r"not resnet18 weights .*missing"):
        init_from_state(model, published_state_dict("mobilenet_v2"))
    state = published_state_dict("resnet18")
    state["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    with pytest.raises(ConfigError, match=r"wrong shapes: \['conv1.weight \(64, 3, 3, 3\)"):
        init_from_state(model, state)
    state = published_state_dict("resnet18")
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(ConfigError, match="1 unexpected"):
        init_from_state(model, state)


def test_weights_from_a_pth_or_safetensors_file(tmp_path):
    from safetensors.torch import save_file

    state = published_state_dict("mobilenet_v2")
    torch.save(state, tmp_path / "w.pth")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    for file in ("w.pth", "w.safetensors"):
        model = EncoderUNet("mobilenet_v2", decoder_widths=SMALL_DECODER)
        assert "w." in init_encoder(model, str(tmp_path / file))
        assert torch.equal(
            model.encoder.features[3].conv[0][0].weight, state["features.3.conv.0.0.weight"]
        )
    (tmp_path / "text.pth").write_text("not weights")
    with pytest.raises(ConfigError, match=r"text.pth: not a readable state dict"):
        init_encoder(model, str(tmp_path / "text.pth"))
    with pytest.raises(ConfigError, match=r"missing.pth: no such file"):
        init_encoder(model, str(tmp_path / "missing.pth"))


def test_imagenet_weights_need_three_input_channels():
    model = EncoderUNet("efficientnet-lite0", in_channels=1, decoder_widths=SMALL_DECODER)
    with pytest.raises(ValueError, match="3 input channels"):
        init_encoder(model, "imagenet")
    assert init_encoder(model, "none") is None


@pytest.mark.parametrize("name", ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"])
def test_lite_weights_come_with_the_install(name):
    model = EncoderUNet(name, decoder_widths=SMALL_DECODER)
    assert init_encoder(model, "imagenet") == f"encoder {name}: ImageNet weights"
    assert model_normalization(model.config) == TF_LITE_NORMALIZATION == model.normalization


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture
def file_server(tmp_path):
    """A local HTTP server over ``tmp_path/served``; yields (folder, base URL)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(_Files, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture
def hub_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "torch_home"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(folder / "hub"))
    return folder / "hub" / "checkpoints"


def _serve(monkeypatch, name: str, url: str) -> None:
    monkeypatch.setitem(ENCODERS, name, dataclasses.replace(ENCODERS[name], url=url))


def test_torchvision_weights_are_downloaded_once_into_the_hub_cache(
    file_server, hub_dir, monkeypatch, tmp_path
):
    folder, base = file_server
    state = published_state_dict("resnet18")  # as published: no num_batches_tracked
    staging = tmp_path / "resnet18.pth"
    torch.save(state, staging)
    digest = hashlib.sha256(staging.read_bytes()).hexdigest()[:8]
    served = folder / f"resnet18-{digest}.pth"
    staging.rename(served)
    _serve(monkeypatch, "resnet18", base + served.name)

    loaded = imagenet_state_dict("resnet18")
    assert (hub_dir / served.name).is_file()
    assert hub_cache_path(base + served.name) == hub_dir / served.name
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[key], state[key]) for key in state)
    served.unlink()  # the second time comes from the cache
    model = EncoderUNet("resnet18", decoder_widths=SMALL_DECODER)
    assert init_encoder(model, "imagenet") == "encoder resnet18: ImageNet weights"
    assert torch.equal(model.encoder.layer3[0].downsample[1].running_var,
                       state["layer3.0.downsample.1.running_var"])  # fmt: skip


def test_a_download_with_the_wrong_hash_is_refused_and_not_kept(file_server, hub_dir, monkeypatch):
    folder, base = file_server
    torch.save(published_state_dict("resnet18"), folder / "resnet18-00000000.pth")
    _serve(monkeypatch, "resnet18", base + "resnet18-00000000.pth")
    with pytest.raises(ConfigError, match="does not match the hash in its name"):
        imagenet_state_dict("resnet18")
    assert not (hub_dir / "resnet18-00000000.pth").exists()


def test_offline_and_not_cached_names_the_url_the_cache_and_the_way_out(hub_dir, monkeypatch):
    with socket_closed() as port:
        url = f"http://127.0.0.1:{port}/mobilenet_v2-b0353104.pth"
        _serve(monkeypatch, "mobilenet_v2", url)
        with pytest.raises(ConfigError) as error:
            imagenet_state_dict("mobilenet_v2")
    message = str(error.value)
    assert "\n" not in message
    assert url in message and str(hub_dir / "mobilenet_v2-b0353104.pth") in message
    assert "model.encoder_weights=PATH" in message


class socket_closed:
    """A local port with nothing listening on it."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    def __exit__(self, *args) -> None:
        pass


def test_bf16_channels_last_forward_is_close_to_fp32():
    torch.manual_seed(0)
    model = EncoderUNet("efficientnet-lite0", decoder_widths=SMALL_DECODER).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        reference = model(x)
        fast = model.to(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = fast(x.to(memory_format=torch.channels_last)).float()
    assert (low.argmax(1) == reference.argmax(1)).float().mean() > 0.9


def car_crops(cityscapes_root: Path, min_side: int = 80) -> list[np.ndarray]:
    """The cars (labelId 26 instances) of the real frames whose box is at least min_side square."""
    crops = []
    for instance_path in sorted(cityscapes_root.glob("gtFine/*/*/*_gtFine_instanceIds.png")):
        photo_path = Path(str(instance_path).replace("/gtFine/", "/leftImg8bit/", 1)).with_name(
            instance_path.name.replace("gtFine_instanceIds", "leftImg8bit")
        )
        ids = cv2.imread(str(instance_path), cv2.IMREAD_UNCHANGED)
        photo = cv2.imread(str(photo_path))[..., ::-1]
        for instance in np.unique(ids[ids // 1000 == 26]):
            rows, cols = np.nonzero(ids == instance)
            top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
            if bottom - top >= min_side and right - left >= min_side:
                crops.append(photo[top:bottom, left:right])
    return crops


def test_lite0_imagenet_head_recognises_the_cars_of_real_frames(cityscapes_root):
    crops = car_crops(cityscapes_root)
    assert len(crops) >= 10
    classifier = ENCODERS["efficientnet-lite0"].build(3, 1000)
    classifier.load_state_dict(imagenet_state_dict("efficientnet-lite0"), strict=True)
    classifier.eval()

    def hits(normalization) -> int:
        mean = np.array(normalization["mean"]) * 255
        std = np.array(normalization["std"]) * 255
        count = 0
        for crop in crops:
            x = (cv2.resize(crop, (224, 224), interpolation=cv2.INTER_AREA) - mean) / std
            with torch.no_grad():
                logits = classifier(torch.from_numpy(x).permute(2, 0, 1)[None].float())
            count += bool(set(logits.topk(5).indices[0].tolist()) & set(VEHICLE_CLASSES))
        return count

    assert hits(TF_LITE_NORMALIZATION) >= 0.75 * len(crops)
    torch.manual_seed(0)
    classifier = ENCODERS["efficientnet-lite0"].build(3, 1000).eval()  # random weights
    assert hits(TF_LITE_NORMALIZATION) < 0.5 * len(crops)
