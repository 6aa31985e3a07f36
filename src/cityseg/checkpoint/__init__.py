"""Checkpoints: the format (:mod:`~cityseg.checkpoint.format`), the files
(:mod:`~cityseg.checkpoint.io`), the model they hold (:mod:`~cityseg.checkpoint.loading`), whether
one fits (:mod:`~cityseg.checkpoint.compatibility`) and the random states of a run
(:mod:`~cityseg.checkpoint.random_state`).

Import the submodules explicitly; this package itself imports nothing.
"""
