"""cityseg: U-Net semantic segmentation of Cityscapes street scenes.

Import submodules explicitly (``cityseg.data``, ``cityseg.model``, ...): this package itself stays
light so that ``cityseg --help`` starts without importing torch.

Imports stand at the top of each module. The exceptions say why where they stand: the command
line (``cityseg.cli``) imports each command's machinery when it runs, optional or slow-to-import
libraries (onnx, onnxruntime, tensorboard, kagglehub, safetensors, matplotlib's legend, the
polygon rasteriser) load on first use, and :class:`cityseg.predict.Segmenter` loads on first use
so that the ONNX path runs without torch. The layers of the package and the modules that must
stay torch-free are written as import-linter contracts in ``pyproject.toml``.
"""

__version__ = "0.1.0"
