"""Several processes through ``torchrun``: process group, model wrapping, reductions.

``torchrun --nproc_per_node N -m cityseg train ...`` sets ``RANK``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE`` and ``WORLD_SIZE``; without them everything here degrades to a single process
and does nothing. The backend follows ``train.device``: NCCL on CUDA (one GPU per process), gloo on
the CPU (the same code path, which is what the tests run), also on a node that has GPUs.

When one process fails, torchrun stops the others; a process that waits in a collective for a
peer that stopped answering, or at the start for a peer that never joins, gives up after
``CITYSEG_DIST_TIMEOUT`` seconds (default 600, where torch's own is 30 minutes) instead of
hanging. Each of these variables is checked first: a value that cannot be used (``WORLD_SIZE=two``,
``WORLD_SIZE`` without ``RANK``, a rank beyond the job) is one line naming it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from cityseg import environment
from cityseg.errors import ConfigError
from cityseg.runtime.device import resolve_device
from cityseg.train.failures import TrainingFailed

TIMEOUT_VARIABLE = "CITYSEG_DIST_TIMEOUT"
DEFAULT_TIMEOUT = 600.0
MAX_TIMEOUT = 7 * 24 * 3600.0
MAX_PROCESSES = 2**20


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
    otherwise. TrainingFailed when the job's processes do not all join within the timeout."""
    timeout = environment.seconds(TIMEOUT_VARIABLE, DEFAULT_TIMEOUT, MAX_TIMEOUT)
    info = job_from_environment()
    if not info.enabled:
        return info
    chosen = resolve_device(
        device,
        option="train.device",
        local_rank=info.local_rank,
        local_processes=info.local_world_size,
    )
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    if not dist.is_initialized():
        backend = "nccl" if chosen.type == "cuda" else "gloo"
        try:
            dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout))
        except (dist.DistStoreError, dist.DistNetworkError) as error:  # the rendezvous failed:
            # a peer that never joined, an address that cannot be reached
            raise peers_missing(error, info, timeout) from None
        except ValueError as error:  # torch's own check of the rendezvous variables
            raise ConfigError(
                f"cannot start the process group of {info.world_size} processes: "
                f"{str(error).strip()[:200]}; start the job with torchrun, which sets them"
            ) from None
    return info


def job_from_environment(environ: Mapping[str, str] = os.environ) -> DistInfo:
    """This process's place in the job that torchrun's variables describe (one process when
    ``WORLD_SIZE`` is unset or 1); ConfigError naming a variable that cannot be used."""
    world_size = environment.whole_number("WORLD_SIZE", 1, 1, MAX_PROCESSES, environ)
    if world_size == 1:
        return DistInfo()
    if environment.text("RANK", environ) is None:
        raise ConfigError(
            f"WORLD_SIZE={world_size} but RANK is not set; start the job's processes with "
            "torchrun (which sets both), or unset WORLD_SIZE to train in one process"
        )
    rank = environment.whole_number("RANK", 0, 0, world_size - 1, environ)
    local_world_size = environment.whole_number(
        "LOCAL_WORLD_SIZE", world_size, 1, world_size, environ
    )
    local_rank = environment.whole_number("LOCAL_RANK", 0, 0, local_world_size - 1, environ)
    environment.whole_number("MASTER_PORT", 0, 1, 65535, environ)  # when set (torch's check)
    return DistInfo(rank, local_rank, world_size, local_world_size)


def peers_missing(error: Exception, info: DistInfo, timeout: float) -> TrainingFailed:
    """The error for a process group that could not form: the processes did not all join."""
    address = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    return TrainingFailed(
        f"the job's {info.world_size} processes did not all join within {timeout:g} s "
        f"({TIMEOUT_VARIABLE}): rank {info.rank} waited at {address} ({reason}); start every "
        f"process of the job (torchrun with the same --nnodes, --nproc-per-node and rendezvous "
        f"address on each node), or raise {TIMEOUT_VARIABLE}"
    )


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
