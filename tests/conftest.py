"""Shared fixtures: the real sample data in ../shared/data (skipped, with a reason, if absent),
one thread for torch, a speed cache of the session's own, and a tiny checkpoint. Shared
functions live in :mod:`tests.helpers`."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from tests.helpers import save_tiny_checkpoint

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
def _stop_signals_as_in_a_terminal():
    """The tests send SIGINT, SIGTERM and SIGHUP as a terminal would; a suite started by nohup
    or as a background job (SIGHUP, SIGINT ignored, which the commands and their children keep
    ignoring by design) gets them back for its run."""
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    if hasattr(signal, "SIGHUP"):
        defaults[signal.SIGHUP] = signal.SIG_DFL
    previous = {signum: signal.signal(signum, handler) for signum, handler in defaults.items()}
    yield
    for signum, handler in previous.items():
        signal.signal(signum, handler)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny test models run fastest on one thread; more threads only fight over the cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True, scope="session")
def _own_speed_cache(tmp_path_factory):
    """The settings the trainer measures (cityseg.runtime.tuning) are remembered in a folder of
    the test session, not the user's cache: runs of one configuration share them, as for users."""
    previous = os.environ.get("CITYSEG_CACHE_DIR")
    os.environ["CITYSEG_CACHE_DIR"] = str(tmp_path_factory.mktemp("cityseg_cache"))
    yield
    if previous is None:
        os.environ.pop("CITYSEG_CACHE_DIR", None)
    else:
        os.environ["CITYSEG_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random-init UNet (base width 8, depth 3, "trained" at 64x128) in the checkpoint format."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("checkpoint") / "tiny.pt")
