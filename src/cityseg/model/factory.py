"""Build a segmentation network from its config dict, and fill a pretrained encoder's weights."""

from __future__ import annotations

from typing import Any

from cityseg.architectures import PLAIN_UNET
from cityseg.model.base import SegmentationModel
from cityseg.model.encoder_unet import EncoderUNet
from cityseg.model.encoders import ENCODERS
from cityseg.model.encoders.weights import (
    imagenet_state_dict,
    load_encoder_weights,
    read_state_dict,
)
from cityseg.model.unet import UNet
from cityseg.normalization import IMAGENET_NORMALIZATION


def model_from_config(config: dict[str, Any]) -> SegmentationModel:
    """:class:`UNet` (no ``encoder`` key, or ``"unet"``) or :class:`EncoderUNet` from ``config``."""
    encoder = config.get("encoder", PLAIN_UNET)
    if encoder == PLAIN_UNET:
        return UNet.from_config({key: v for key, v in config.items() if key != "encoder"})
    return EncoderUNet.from_config(config)


def model_normalization(config: dict[str, Any]) -> dict[str, list[float]]:
    """The input normalisation (mean, std of RGB in [0, 1]) of the model that ``config`` builds:
    the one its encoder was pretrained with, ImageNet's for the plain U-Net."""
    encoder = config.get("encoder", PLAIN_UNET)
    normalization = (
        IMAGENET_NORMALIZATION if encoder == PLAIN_UNET else ENCODERS[encoder].normalization
    )
    return {key: list(values) for key, values in normalization.items()}


def init_encoder(model: SegmentationModel, weights: str | None) -> str | None:
    """Fill the encoder of ``model`` from ``weights``: "imagenet", "none"/None, or a path to a
    ``.pth``/``.safetensors`` state dict with the published names. Returns a line saying what was
    loaded (None when nothing was)."""
    if not isinstance(model, EncoderUNet) or weights in (None, "none"):
        return None
    name = model.config["encoder"]
    if weights == "imagenet":
        if model.in_channels != 3:
            raise ValueError(
                f"ImageNet weights take 3 input channels, the model has {model.in_channels}; "
                "set model.encoder_weights=none or model.in_channels=3"
            )
        state, source = imagenet_state_dict(name), "ImageNet"
    else:
        state, source = read_state_dict(weights), str(weights)
    load_encoder_weights(model.encoder, name, state)
    return f"encoder {name}: {source} weights"
