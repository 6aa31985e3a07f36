"""The networks cityseg builds and the rules their settings obey, in one place and without torch.

The configuration checks (:mod:`cityseg.config`) and the networks (:mod:`cityseg.model`) both read
these: the names ``model.encoder`` may take, the smallest input, the total stride every input is
padded to, and the choices of normalisation, upsampling and final kernel. The encoder registry
(:data:`cityseg.model.encoders.ENCODERS`) builds exactly the encoders named here, in this order.

Example:
    >>> from cityseg.architectures import ENCODER_NAMES, min_input_side, total_stride
    >>> ENCODER_NAMES[:2]
    ('unet', 'efficientnet-lite0')
    >>> total_stride("unet", depth=4), total_stride("resnet18"), min_input_side("unet", depth=6)
    (16, 32, 64)
"""

from __future__ import annotations

PLAIN_UNET = "unet"
"""``model.encoder`` of the plain U-Net, trained from scratch."""
PRETRAINED_ENCODERS = (
    "efficientnet-lite0",
    "efficientnet-lite1",
    "efficientnet-lite2",
    "resnet18",
    "resnet34",
    "resnet50",
    "mobilenet_v2",
)
"""The ImageNet-pretrained encoders a U-Net decoder can sit on."""
ENCODER_NAMES = (PLAIN_UNET, *PRETRAINED_ENCODERS)
"""Every value of ``model.encoder``."""

MIN_SIZE = 32
"""The smallest height and width every network takes (and so the smallest side of ``data.size``
and ``data.crop``)."""
ENCODER_STRIDE = 32
"""The total stride of every pretrained encoder: its deepest feature map is 1/32 of the input."""
DECODER_BLOCKS = 5
"""Decoder blocks on a pretrained encoder, from stride 16 back to stride 1."""
DEFAULT_DECODER_WIDTHS = (256, 128, 64, 32, 16)
"""Channels of those decoder blocks unless ``model.decoder_widths`` says otherwise."""

NORMS = ("batch", "group", "none")
"""``model.norm``: BatchNorm, GroupNorm or none."""
UPSAMPLINGS = ("bilinear", "transpose")
"""``model.upsampling``: 1x1 conv + bilinear upsampling, or a 2x2 transposed conv."""
FINAL_KERNELS = (1, 3)
"""``model.final_kernel``: the kernel size of the conv that gives the class logits."""


def total_stride(encoder: str, depth: int = 0) -> int:
    """What an input's height and width are padded to a multiple of inside the network: ``2**depth``
    for the plain U-Net of ``depth`` halvings, :data:`ENCODER_STRIDE` for a pretrained encoder."""
    return 2**depth if encoder == PLAIN_UNET else ENCODER_STRIDE


def min_input_side(encoder: str, depth: int = 0) -> int:
    """The smallest height and width the network takes: :data:`MIN_SIZE`, or its total stride when
    that is larger (a plain U-Net deeper than 5 levels)."""
    return max(MIN_SIZE, total_stride(encoder, depth))
