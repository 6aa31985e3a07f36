"""The random generator states of a run (torch, CUDA, NumPy, Python), as plain checkpoint data."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def capture_rng_state() -> dict[str, Any]:
    """The states of the torch, CUDA, numpy (global) and python random generators, as plain data."""
    numpy_state = np.random.get_state(legacy=False)
    python_version, python_internal, python_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "bit_generator": numpy_state["bit_generator"],
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "python": [python_version, list(python_internal), python_gauss],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back the generator states saved by ``capture_rng_state``.

    The CUDA states go back to as many GPUs as are visible now: a run saved by a 4-GPU job
    continues on one GPU (its process used the first; the others' generators were never drawn
    from by it), and one saved on the CPU leaves the GPUs' generators as seeded."""
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        for index, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state.cpu(), index)
    numpy_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": numpy_state["bit_generator"],
            "state": {
                "key": numpy_state["key"].numpy().astype(np.uint32),
                "pos": numpy_state["pos"],
            },
            "has_gauss": numpy_state["has_gauss"],
            "gauss": numpy_state["gauss"],
        }
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's (global) and torch's generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def restore_for_rank(state: dict[str, Any], rank: int) -> None:
    """Put back the generators of a checkpoint, which holds rank 0's: rank 0 takes them as they
    are, every other rank derives its own from them, so that no two ranks draw alike."""
    restore_rng_state(state)
    if rank:
        seed_everything(int(torch.randint(2**31, ())) + rank)
