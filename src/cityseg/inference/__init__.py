"""Inference shared by ``evaluate`` and ``predict``: the options (:mod:`~cityseg.inference.options`,
no torch), the sliding window (:mod:`~cityseg.inference.windows`) and the :class:`Predictor`
(:mod:`~cityseg.inference.predictor`): whole image, sliding window and test-time augmentation.

Import the submodules explicitly; this package itself imports nothing.
"""
