"""Evaluation: score a checkpoint on a labelled split (:mod:`~cityseg.evaluate.evaluator`) or
submission PNGs on disk (:mod:`~cityseg.evaluate.submissions`).

Import the submodules explicitly; this package itself imports nothing, so ``cityseg score`` never
pays for torch. The metrics themselves live in :mod:`cityseg.metrics`.
"""
