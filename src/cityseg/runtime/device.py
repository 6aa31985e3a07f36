"""Where the network runs: the device, its determinism settings, and the one-line report of the
runtime (device, number format, layout, allocator, threads, processes)."""

from __future__ import annotations

import os

import torch

from cityseg.errors import ConfigError
from cityseg.runtime.allocator import active_allocator
from cityseg.runtime.precision import Precision, cpu_bf16_support


def choose_device(name: str, local_rank: int = 0, local_processes: int = 1) -> torch.device:
    """``auto`` = cuda, then mps, then cpu; a named device must be available. On CUDA, process
    ``local_rank`` of the ``local_processes`` on this node takes GPU ``local_rank``: one each."""
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("train.device=cuda: no CUDA GPU is available; use auto or cpu")
        visible = torch.cuda.device_count()
        if max(local_processes, local_rank + 1) > visible:
            raise ConfigError(
                f"{max(local_processes, local_rank + 1)} processes on this node but only "
                f"{visible} GPU(s) visible: use torchrun --nproc_per_node={visible} (or fewer), "
                "or train.device=cpu"
            )
        return torch.device("cuda", local_rank)
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("train.device=mps: the MPS backend is not available; use auto or cpu")
    return torch.device(name)


def resolve_device(device: str | None) -> torch.device:
    """``None``/"auto": CUDA if available, else CPU; otherwise the named device, checked."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"--device {device}: unknown device; use cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available here; use --device cpu")
    return resolved


def configure_determinism(deterministic: bool, device: torch.device) -> None:
    """Deterministic kernels (bit-exact reruns on the CPU) or the fastest ones (cuDNN benchmark).

    On CUDA a few kernels have no deterministic version (bilinear upsampling's backward): torch
    then warns instead of failing.
    """
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic
        torch.backends.cuda.matmul.allow_tf32 = not deterministic
        torch.backends.cudnn.allow_tf32 = not deterministic
    if deterministic or torch.are_deterministic_algorithms_enabled():  # the call imports inductor
        torch.use_deterministic_algorithms(deterministic, warn_only=device.type == "cuda")


def describe_runtime(precision: Precision, channels_last: bool, world_size: int = 1) -> str:
    """One line: device, number format, memory layout, allocator, threads, processes."""
    device = precision.device
    if device.type == "cuda":
        where = f"cuda ({torch.cuda.get_device_name(device)})"
        allocator = f"cuda caching ({torch.cuda.get_allocator_backend()})"
    else:
        capability = torch.backends.cpu.get_cpu_capability()
        bf16 = cpu_bf16_support()
        where = f"{device.type} ({torch.get_num_threads()} threads, {capability}, bf16 {bf16})"
        allocator = active_allocator()
    autocast = "autocast" if precision.name != "fp32" else "no autocast"
    scaler = ", grad scaler" if precision.name == "fp16" else ""
    layout = "channels_last" if channels_last else "contiguous"
    return (
        f"device {where} | precision {precision.name} ({autocast}{scaler}) | {layout} | "
        f"allocator {allocator} | {world_size} process{'es' if world_size > 1 else ''}"
    )
