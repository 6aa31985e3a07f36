"""Segmentation metrics: the confusion matrix (:mod:`~cityseg.metrics.confusion`), pure functions
of it (:mod:`~cityseg.metrics.scores`), the official Cityscapes IoU and iIoU
(:mod:`~cityseg.metrics.official`) and the summary of them all (:mod:`~cityseg.metrics.summary`).

Import the submodules explicitly; this package itself imports nothing. ``scores``, ``official`` and
``summary`` need NumPy only (``cityseg score`` never pays for torch); ``confusion`` counts on the
device with torch.
"""
