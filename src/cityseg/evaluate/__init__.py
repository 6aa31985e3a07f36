"""Evaluation: confusion matrix, metrics, the official Cityscapes scores, scoring PNGs on disk.

Import the submodules explicitly; this package itself imports nothing, so ``cityseg score`` never
pays for torch. ``metrics`` and ``official`` need NumPy only, ``score`` NumPy and OpenCV, and
``confusion`` imports torch only inside its ``ConfusionMatrix`` class.

* :mod:`cityseg.evaluate.confusion`: ``confusion_matrix_np`` and the device ``ConfusionMatrix``.
* :mod:`cityseg.evaluate.metrics`: pure functions of a confusion matrix, ``summarize``,
  ``format_table``.
* :mod:`cityseg.evaluate.official`: the official Cityscapes IoU and iIoU, ``OfficialCounts``.
* :mod:`cityseg.evaluate.score`: ``score_predictions`` for submission PNGs on disk.
"""
