"""Several processes of one training job (gloo, on the CPU), started from the test's own Python:
what torchrun would set up, with each process able to patch itself before it trains."""

from __future__ import annotations

import multiprocessing
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_ranks(target: Callable, args: tuple, world_size: int = 2, timeout: float = 120) -> list:
    """Run ``target(rank, *args)`` in ``world_size`` fresh processes that form one job; return
    their exit codes (None for a process still running after ``timeout`` seconds: killed)."""
    context = multiprocessing.get_context("spawn")
    port = free_port()
    processes = [
        context.Process(target=_rank_main, args=(target, rank, world_size, port, args))
        for rank in range(world_size)
    ]
    for process in processes:
        process.start()
    deadline = time.monotonic() + timeout
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    codes = [process.exitcode for process in processes]
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join()
    return codes


def _rank_main(target: Callable, rank: int, world_size: int, port: int, args: tuple) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_WORLD_SIZE=str(world_size),
        CITYSEG_DIST_TIMEOUT="30",  # a collective left waiting fails instead of hanging
        CITYSEG_ALLOCATOR="system",
    )
    import torch

    torch.set_num_threads(1)
    target(rank, *args)


def train_rank(rank: int, root: Path, run: Path, overrides: tuple, buffers: Path | None) -> None:
    """``cityseg.train.engine.train`` on the tiny configuration; with ``buffers``, each process
    writes its model's buffers after each validation to ``buffers/rank<r>.pt``."""
    import torch

    from cityseg.train import engine
    from tests.helpers.training import tiny_config

    if buffers is not None:
        validate = engine.Trainer.validate

        def recording_validate(self):
            scores = validate(self)
            torch.save(dict(self.run.raw_model.named_buffers()), buffers / f"rank{rank}.pt")
            return scores

        engine.Trainer.validate = recording_validate
    engine.train(tiny_config(root, *overrides), run)


def train_rank_sync_bn(rank: int, root: Path, run: Path, overrides: tuple) -> None:
    """``train_rank`` with every BatchNorm a SyncBatchNorm, as ``train.sync_bn=true`` gives on
    GPUs (torch's own, on the CPU: :mod:`tests.helpers.syncbn`)."""
    from cityseg.train import run as training_run
    from tests.helpers.syncbn import sync_batchnorm_wrap

    training_run.wrap_model = sync_batchnorm_wrap
    train_rank(rank, root, run, overrides, None)
