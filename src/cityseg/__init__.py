"""cityseg: U-Net semantic segmentation of Cityscapes street scenes.

Import submodules explicitly (``cityseg.data``, ``cityseg.model``, ...): this package itself stays
light so that ``cityseg --help`` starts without importing torch.
"""

__version__ = "0.1.0"
