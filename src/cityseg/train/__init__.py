"""Training: the loop (``engine``), losses, LR schedules, checkpoints, devices and precision,
several processes (``torchrun``), and the run's records.

Import the submodules explicitly (``from cityseg.train.engine import train``,
``from cityseg.train.checkpoint import load_model``): this package itself imports nothing heavy.
"""
