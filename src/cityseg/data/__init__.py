"""Dataset readers: the official Cityscapes layout and the Kaggle pairs format.

Every dataset yields ``(image, target)``: RGB uint8 (H, W, 3) and trainIds uint8 (H, W) with 255 =
ignore (``None`` for the unlabelled ``test`` split), and lists its files as ``samples``
(:class:`Sample`) and ``frame_ids``. This package imports no torch.

Example:
    >>> from cityseg.data import open_dataset
    >>> dataset = open_dataset("/data/cityscapes", "val")  # doctest: +SKIP
    >>> image, target = dataset[0]
"""

from cityseg.data.cityscapes import CityscapesDataset
from cityseg.data.datasets import open_dataset
from cityseg.data.formats import detect_format
from cityseg.data.io import read_label_png, read_rgb, write_png
from cityseg.data.pairs import PairsDataset
from cityseg.data.sample import Sample

__all__ = [
    "CityscapesDataset",
    "PairsDataset",
    "Sample",
    "detect_format",
    "open_dataset",
    "read_label_png",
    "read_rgb",
    "write_png",
]
