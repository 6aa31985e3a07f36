"""The machine a network runs on: device (:mod:`~cityseg.runtime.device`), number format
(:mod:`~cityseg.runtime.precision`) and memory allocator (:mod:`~cityseg.runtime.allocator`).

Import the submodules explicitly; this package itself imports nothing, so that the command line
can choose the allocator before torch is loaded.
"""
