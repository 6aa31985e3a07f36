"""What the tests share: tiny data sets on disk (made by the package's scene generator), the tiny
training configuration, checkpoints of tiny networks, `cityseg` runs in and out of process, and
the contract testers every dataset and segmenter passes (:mod:`tests.helpers.contracts`).

Import from here (``from tests.helpers import write_scenes``) or from the submodules.
"""

from tests.helpers.checkpoints import save_tiny_checkpoint
from tests.helpers.commands import (
    Running,
    cityseg,
    cli_env,
    in_process,
    partial_writes,
    reference_run,
    same_weights,
)
from tests.helpers.scenes import write_pairs, write_scenes
from tests.helpers.training import TINY, tiny_config, train_args

__all__ = [
    "TINY",
    "Running",
    "cityseg",
    "cli_env",
    "in_process",
    "partial_writes",
    "reference_run",
    "same_weights",
    "save_tiny_checkpoint",
    "tiny_config",
    "train_args",
    "write_pairs",
    "write_scenes",
]
