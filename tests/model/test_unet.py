"""UNet: every variant at odd sizes, its own configuration rules, counts, exports, precision (what
every network promises is in test_model_contract.py)."""

from __future__ import annotations

import itertools
import re
import shutil
import warnings

import pytest
import torch
from torch import nn

from cityseg.model import UNet
from cityseg.model.parts import Up, group_count

ODD_SIZES = [(33, 47), (64, 64), (37, 100)]
TINY = {"base_width": 4, "depth": 2}
VARIANTS = list(
    itertools.product(["batch", "group", "none"], ["bilinear", "transpose"], [1, 3], [1, 2])
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run fastest on one thread, and far faster than on busy shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def trained_stats(model: UNet, size: tuple[int, int] = (40, 40)) -> UNet:
    """Run one training-mode forward so BatchNorm running statistics are not the defaults."""
    model.train()
    with torch.no_grad():
        model(torch.randn(2, model.in_channels, *size))
    return model.eval()


@pytest.mark.parametrize(("norm", "upsampling", "final_kernel", "convs"), VARIANTS)
def test_forward_backward_at_odd_sizes(norm, upsampling, final_kernel, convs) -> None:
    model = UNet(
        num_classes=5,
        **TINY,
        norm=norm,
        upsampling=upsampling,
        final_kernel=final_kernel,
        convs_per_block=convs,
    )
    for height, width in ODD_SIZES:
        model.zero_grad()
        x = torch.randn(2, 3, height, width, requires_grad=True)
        logits = model(x)
        assert logits.shape == (2, 5, height, width)
        logits.square().mean().backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
        for name, param in model.named_parameters():
            assert param.grad is not None and torch.isfinite(param.grad).all(), name


@pytest.mark.parametrize(
    "kwargs",
    [
        {"widths": [6, 12, 24], "norm": "group"},
        {"widths": (8, 8, 16, 16)},
        {"base_width": 4, "depth": 3, "dropout": 0.2},
        {"base_width": 4, "depth": 1, "in_channels": 1, "num_classes": 1},
    ],
)
def test_other_configs_keep_the_input_size(kwargs: dict) -> None:
    model = UNet(**kwargs)
    x = torch.randn(2, model.in_channels, 35, 41)
    assert model(x).shape == (2, model.num_classes, 35, 41)


def test_default_model_takes_rgb_and_gives_19_classes() -> None:
    model = UNet(num_classes=19).eval()
    assert model.config["widths"] == [32, 64, 128, 256, 512]
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 45)).shape == (1, 19, 32, 45)


def test_bilinear_up_is_conv_then_upsample_equal_to_upsample_then_conv() -> None:
    up = Up(8, 4, 4, upsampling="bilinear")
    conv, upsample = up.up[0], up.up[1]
    x = torch.randn(1, 8, 5, 7)
    with torch.no_grad():
        assert torch.allclose(up.up(x), conv(upsample(x)), atol=1e-5)


def test_conv_bias_only_without_norm() -> None:
    for norm in ["batch", "group", "none"]:
        model = UNet(**TINY, norm=norm)
        block_convs = [
            m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)
        ]
        assert all((conv.bias is None) == (norm != "none") for conv in block_convs), norm


def test_group_norm_groups_divide_the_widths() -> None:
    assert [group_count(c) for c in [4, 6, 32, 48, 64, 128, 512]] == [1, 1, 8, 12, 16, 32, 32]
    model = UNet(widths=[6, 20, 40], norm="group")
    for norm in (m for m in model.modules() if isinstance(m, nn.GroupNorm)):
        assert norm.num_channels % norm.num_groups == 0 and norm.num_groups <= 32


def test_dropout_at_bottleneck_and_decoder() -> None:
    model = UNet(**TINY, dropout=0.5)
    assert sum(isinstance(m, nn.Dropout2d) for m in model.modules()) == 1 + 2
    x = torch.randn(1, 3, 32, 32)
    assert not torch.equal(model.train()(x), model(x))
    assert torch.equal(model.eval()(x), model(x))
    assert not any(isinstance(m, nn.Dropout2d) for m in UNet(**TINY).modules())


def test_config_is_a_copy_and_base_width_equals_widths() -> None:
    model = UNet(base_width=8, depth=3)
    model.config["widths"].append(999)
    assert model.config == UNet(widths=[8, 16, 32, 64]).config
    assert isinstance(model.config["widths"], list)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"norm": "layer"}, "norm must be one of"),
        ({"upsampling": "nearest"}, "upsampling must be one of"),
        ({"depth": 0}, "depth must be an integer >= 1"),
        ({"base_width": 0}, "base_width must be a positive integer"),
        ({"widths": [64, 32, 16]}, r"must not decrease.*\[16, 32, 64\]"),
        ({"widths": [16]}, "at least 2 positive integers"),
        ({"widths": [16, 32], "depth": 1}, "either widths or base_width/depth"),
        ({"final_kernel": 5}, "final_kernel must be 1 or 3"),
        ({"dropout": 1.0}, r"dropout must be a probability in \[0, 1\)"),
        ({"convs_per_block": 0}, "convs_per_block must be a positive integer"),
        ({"num_classes": 0}, "num_classes must be a positive integer"),
        ({"in_channels": 2.5}, "in_channels must be a positive integer"),
    ],
)
def test_invalid_configs_raise_a_clear_value_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        UNet(**kwargs)


def test_from_config_names_unknown_keys() -> None:
    with pytest.raises(ValueError, match=r"unknown keys \['width'\]"):
        UNet.from_config({"width": 32})


def test_minimum_size_grows_with_depth() -> None:
    model = UNet(base_width=2, depth=6)
    assert model.min_size == 64
    with pytest.raises(ValueError, match=r"H, W >= 64"):
        model(torch.randn(1, 3, 63, 64))


def test_count_parameters() -> None:
    model = UNet(**TINY)
    assert model.count_parameters() == sum(p.numel() for p in model.parameters())
    model.outc.requires_grad_(False)
    frozen = model.outc.weight.numel() + model.outc.bias.numel()
    assert model.count_parameters(trainable_only=True) == model.count_parameters() - frozen


@pytest.mark.parametrize(("upsampling", "up_macs"), [("transpose", 8192), ("bilinear", 2048)])
def test_count_macs_matches_a_hand_count(upsampling: str, up_macs: int) -> None:
    model = UNet(1, 2, widths=[2, 4], convs_per_block=1, norm="none", upsampling=upsampling)
    hand = (
        32 * 32 * 2 * 1 * 9  # first block: 1 -> 2 channels, 3x3, at 32x32
        + 16 * 16 * 4 * 2 * 9  # down block: 2 -> 4, 3x3, at 16x16
        + up_macs  # transpose 2x2 4 -> 2 (16*16*4*2*4) or 1x1 conv 4 -> 2 at 16x16 (16*16*2*4)
        + 32 * 32 * 2 * 4 * 9  # decoder block: 2 + 2 concatenated -> 2, 3x3, at 32x32
        + 32 * 32 * 2 * 2  # final 1x1 conv: 2 -> 2 classes
    )
    assert model.count_macs(32, 32) == hand
    assert model.count_macs(33, 47) == model.count_macs(34, 48)  # counted at the padded size


def test_default_model_counts_and_summary() -> None:
    model = UNet()
    assert model.count_parameters() == 7_241_395
    assert model.count_macs(256, 512) == 23_412_604_928
    assert model.count_macs(512, 1024) == 4 * model.count_macs(256, 512)
    assert model.summary(512, 1024) == "UNet: 7.24 M parameters, 93.7 GMACs at 512x1024"
    assert re.fullmatch(
        r"UNet: \d+\.\d\d M parameters, [\d.]+ GMACs at 33x47", model.summary(33, 47)
    )


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_channels_last_bf16_autocast_on_cpu(norm: str) -> None:
    model = trained_stats(UNet(**TINY, norm=norm)).to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 37, 100).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        reference = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(x)
    assert logits.shape == (2, 19, 37, 100) and torch.isfinite(logits).all()
    assert (logits.float() - reference).abs().max() < 0.1 * reference.abs().max()

    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(x).float().square().mean()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_torch_export_keeps_height_and_width_dynamic() -> None:
    model = trained_stats(UNet(**TINY))
    batch, height, width = (torch.export.Dim(n, min=m) for n, m in [("N", 1), ("H", 32), ("W", 32)])
    exported = torch.export.export(
        model, (torch.randn(2, 3, 61, 93),), dynamic_shapes={"x": {0: batch, 2: height, 3: width}}
    )
    for shape in [(3, 3, 37, 101), (1, 3, 64, 96), (2, 3, 32, 33)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            assert torch.allclose(exported.module()(x), model(x), atol=1e-5), shape


def test_onnx_export_matches_pytorch_at_other_sizes(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    model = trained_stats(UNet(**TINY, upsampling="transpose", final_kernel=3))
    path = tmp_path / "unet.onnx"
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notices
        torch.onnx.export(
            model,
            (torch.randn(1, 3, 61, 93),),
            str(path),
            dynamo=False,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": axes, "logits": axes},
            opset_version=17,
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(2, 3, 37, 100), (1, 3, 64, 64)]:
        x = torch.randn(*shape)
        (logits,) = session.run(None, {"image": x.numpy()})
        with torch.no_grad():
            expected = model(x).numpy()
        assert logits.shape == expected.shape
        assert abs(logits - expected).max() < 1e-4, shape


def toolchain_error(error: BaseException | None) -> str:
    """The name of a C++ compiler error anywhere in ``error``'s chain, or ""."""
    while error is not None:
        if type(error).__name__ in ("CppCompileError", "InvalidCxxCompiler"):
            return type(error).__name__
        error = error.__cause__ or error.__context__
    return ""


@pytest.mark.slow
def test_torch_compile_matches_eager() -> None:
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("torch.compile needs a C++ compiler for the CPU backend; none found")
    model = trained_stats(UNet(**TINY))
    x = torch.randn(2, 3, 37, 100)
    try:
        with torch.no_grad():
            compiled = torch.compile(model)(x)
    except Exception as error:  # only a broken compiler toolchain is a reason to skip
        if toolchain_error(error):
            pytest.skip(f"torch.compile toolchain unavailable: {toolchain_error(error)}")
        raise
    with torch.no_grad():
        assert torch.allclose(compiled, model(x), atol=1e-5)
