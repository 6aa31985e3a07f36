"""The segmentation networks: the plain :class:`UNet` and :class:`EncoderUNet` on an
ImageNet-pretrained encoder; :func:`model_from_config` builds either from its config dict."""

from cityseg.architectures import ENCODER_NAMES
from cityseg.model.base import SegmentationModel
from cityseg.model.encoder_unet import EncoderUNet
from cityseg.model.factory import init_encoder, model_from_config, model_normalization
from cityseg.model.unet import UNet

__all__ = [
    "ENCODER_NAMES",
    "EncoderUNet",
    "SegmentationModel",
    "UNet",
    "init_encoder",
    "model_from_config",
    "model_normalization",
]
