"""Training: the loop (``engine``), losses, LR schedules, several processes (``torchrun``), and
the run's records.

Import the submodules explicitly (``from cityseg.train.engine import train``): this package itself
imports nothing heavy.
"""
