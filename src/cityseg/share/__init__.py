"""Share a trained model: the folder a Hugging Face Hub repository holds (weights, config and model
card, :mod:`~cityseg.share.hub`) and its card (:mod:`~cityseg.share.card`).

Import the submodules explicitly; this package itself imports nothing.
"""
