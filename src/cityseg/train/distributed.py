"""Several processes through ``torchrun``: process group, model wrapping, reductions.

``torchrun --nproc_per_node N -m cityseg train ...`` sets ``RANK``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE`` and ``WORLD_SIZE``; without them everything here degrades to a single process
and does nothing. The backend follows ``train.device``: NCCL on CUDA (one GPU per process), gloo on
the CPU (the same code path, which is what the tests run), also on a node that has GPUs.

When one process fails, torchrun stops the others; a process that waits in a collective for a
peer that stopped answering gives up after ``CITYSEG_DIST_TIMEOUT`` seconds (default 600, where
torch's own is 30 minutes) instead of hanging.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from cityseg.runtime.device import resolve_device


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1  # the processes on this node

    @property
    def is_main(self) -> bool:
        """Only the main process writes files and prints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup_distributed(device: str = "auto") -> DistInfo:
    """Join the process group when started by torchrun with more than one process.

    ``device`` is ``train.device``: the backend is NCCL when it resolves to CUDA (each process
    then takes GPU ``LOCAL_RANK``; ConfigError when the node has fewer GPUs than processes), gloo
    otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size)))
    chosen = resolve_device(
        device, option="train.device", local_rank=local_rank, local_processes=local_world_size
    )
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    if not dist.is_initialized():
        timeout = timedelta(seconds=float(os.environ.get("CITYSEG_DIST_TIMEOUT", "600")))
        backend = "nccl" if chosen.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=timeout)
    return DistInfo(rank, local_rank, world_size, local_world_size)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(
    model: nn.Module, device: torch.device, info: DistInfo, sync_bn: bool
) -> tuple[nn.Module, str | None]:
    """The model to train: DistributedDataParallel (with SyncBatchNorm when ``sync_bn`` and the
    processes use GPUs) in a job of several processes, else ``model`` itself. Also returns a note
    when ``sync_bn`` was requested but cannot apply (one process, or CPU): never an error."""
    note = None
    if sync_bn and not (info.enabled and device.type == "cuda"):
        note = "train.sync_bn ignored: SyncBatchNorm needs several CUDA processes"
    if not info.enabled:
        return model, note
    if sync_bn and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids), note


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over all processes, in place (a no-op with one process)."""
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_buffers(model: nn.Module, info: DistInfo) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every process, in place. Without
    SyncBatchNorm each process's last training batches leave it statistics of its own, while the
    checkpoint holds rank 0's: a validation shared by the processes must use rank 0's."""
    if info.enabled:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def print_main(info: DistInfo, *parts: object) -> None:
    """Print on the main process only, flushed at once (logs of several processes interleave)."""
    if info.is_main:
        print(*parts, flush=True)
        sys.stdout.flush()
