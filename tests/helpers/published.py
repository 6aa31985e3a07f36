"""State dicts shaped like torchvision's published ImageNet files (random values), written from
torchvision's own architecture definitions (``torchvision/models/resnet.py`` and
``mobilenetv2.py``), not from cityseg's modules, so that a test of loading them can fail.

What the files hold, key by key:

* ``resnet18-f37072fd.pth``, ``resnet34-b627a593.pth``, ``resnet50-0676ba61.pth``: saved before
  BatchNorm had its ``num_batches_tracked`` buffer, so each BatchNorm has only ``weight``,
  ``bias``, ``running_mean`` and ``running_var`` (102, 182 and 267 keys with ``fc``).
* ``mobilenet_v2-b0353104.pth``: trained later, with the buffer (314 keys with ``features.18``
  and ``classifier``).
"""

from __future__ import annotations

import torch

IMAGENET_CLASSES = 1000
# name: (block kind, blocks per stage), as torchvision's resnet18/34/50 build them
RESNETS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}
# torchvision's inverted_residual_setting: expansion t, channels c, repeats n, first stride s
MOBILENET_V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                       (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip
# Which published files have the buffer
WITH_BATCH_COUNTERS = {
    "resnet18": False,
    "resnet34": False,
    "resnet50": False,
    "mobilenet_v2": True,
}

Shapes = dict[str, tuple[int, ...]]


def _batch_norm(prefix: str, channels: int, counter: bool) -> Shapes:
    shapes = {f"{prefix}.{name}": (channels,) for name in ("weight", "bias", "running_mean",
                                                            "running_var")}  # fmt: skip
    if counter:
        shapes[f"{prefix}.num_batches_tracked"] = ()
    return shapes


def resnet_shapes(name: str, counters: bool = False) -> Shapes:
    """Key and shape of every tensor of torchvision's ``name`` (resnet18/34/50), in order."""
    kind, counts = RESNETS[name]
    expansion = 1 if kind == "basic" else 4
    shapes: Shapes = {"conv1.weight": (64, 3, 7, 7), **_batch_norm("bn1", 64, counters)}
    inplanes = 64
    for stage, count in enumerate(counts):
        planes = 64 * 2**stage
        for block in range(count):
            prefix = f"layer{stage + 1}.{block}"
            stride = 2 if stage > 0 and block == 0 else 1
            if kind == "basic":
                convs = [(planes, inplanes, 3), (planes, planes, 3)]
            else:
                convs = [(planes, inplanes, 1), (planes, planes, 3), (planes * 4, planes, 1)]
            for index, (out_ch, in_ch, k) in enumerate(convs, 1):
                shapes[f"{prefix}.conv{index}.weight"] = (out_ch, in_ch, k, k)
                shapes.update(_batch_norm(f"{prefix}.bn{index}", out_ch, counters))
            if stride != 1 or inplanes != planes * expansion:
                shapes[f"{prefix}.downsample.0.weight"] = (planes * expansion, inplanes, 1, 1)
                shapes.update(_batch_norm(f"{prefix}.downsample.1", planes * expansion, counters))
            inplanes = planes * expansion
    shapes["fc.weight"] = (IMAGENET_CLASSES, inplanes)
    shapes["fc.bias"] = (IMAGENET_CLASSES,)
    return shapes


def mobilenet_v2_shapes(counters: bool = True) -> Shapes:
    """Key and shape of every tensor of torchvision's ``mobilenet_v2``, in order."""

    def conv_bn(prefix: str, out_ch: int, in_per_group: int, k: int) -> Shapes:
        return {f"{prefix}.0.weight": (out_ch, in_per_group, k, k),
                **_batch_norm(f"{prefix}.1", out_ch, counters)}  # fmt: skip

    shapes = conv_bn("features.0", 32, 3, 3)
    index, in_ch = 1, 32
    for expand, out_ch, repeats, _stride in MOBILENET_V2_STAGES:
        for _ in range(repeats):
            hidden, prefix, layer = in_ch * expand, f"features.{index}.conv", 0
            if expand != 1:
                shapes.update(conv_bn(f"{prefix}.0", hidden, in_ch, 1))
                layer = 1
            shapes.update(conv_bn(f"{prefix}.{layer}", hidden, 1, 3))  # depthwise
            shapes[f"{prefix}.{layer + 1}.weight"] = (out_ch, hidden, 1, 1)
            shapes.update(_batch_norm(f"{prefix}.{layer + 2}", out_ch, counters))
            index, in_ch = index + 1, out_ch
    shapes.update(conv_bn(f"features.{index}", 1280, in_ch, 1))
    shapes["classifier.1.weight"] = (IMAGENET_CLASSES, 1280)
    shapes["classifier.1.bias"] = (IMAGENET_CLASSES,)
    return shapes


def published_shapes(name: str) -> Shapes:
    """Key and shape of every tensor of torchvision's published file for encoder ``name``."""
    counters = WITH_BATCH_COUNTERS[name]
    return (
        mobilenet_v2_shapes(counters) if name == "mobilenet_v2" else resnet_shapes(name, counters)
    )


def published_state_dict(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with the keys and shapes of torchvision's published file for ``name`` and
    random values (positive running variances, batch counters as int64 scalars)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in published_shapes(name).items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.randint(1, 10**6, (), generator=generator, dtype=torch.int64)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[key] = torch.randn(shape, generator=generator)
    return state
