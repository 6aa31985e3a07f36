"""The segmentation network: ``from cityseg.model import UNet``."""

from cityseg.model.unet import UNet

__all__ = ["UNet"]
