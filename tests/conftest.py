"""Shared fixtures: the real sample data in ../shared/data (skipped, with a reason, if absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CITYSEG_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def _shared(sub: str) -> Path:
    path = SHARED_DATA / sub
    if not path.is_dir():
        pytest.skip(f"real sample data not found at {path} (set CITYSEG_SHARED_DATA to its folder)")
    return path


@pytest.fixture(scope="session")
def cityscapes_root() -> Path:
    """The official layout: 8 train frames (aachen, 2048x1024) and 1 val frame (frankfurt)."""
    return _shared("cityscapes")


@pytest.fixture(scope="session")
def pairs_root() -> Path:
    """The Kaggle pairs sample: 2975 train JPEGs of 256x512."""
    return _shared("pairs")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny test models run fastest on one thread; more threads only fight over the 2 cores."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random-init UNet (base width 8, depth 3) saved in the cityseg checkpoint format."""
    import torch

    from cityseg import labels
    from cityseg.checkpoint.format import FORMAT
    from cityseg.checkpoint.io import save_checkpoint
    from cityseg.model import UNet
    from cityseg.normalization import IMAGENET_NORMALIZATION

    torch.manual_seed(0)
    model = UNet(base_width=8, depth=3)
    state = {
        "format": FORMAT,
        "model_config": model.config,
        "model": model.state_dict(),
        "class_names": list(labels.CLASS_NAMES),
        "palette": labels.PALETTE.tolist(),
        "normalization": IMAGENET_NORMALIZATION,
        "input_size": [64, 128],
        "config": {},
    }
    path = tmp_path_factory.mktemp("checkpoint") / "tiny.pt"
    save_checkpoint(path, state)
    return path
