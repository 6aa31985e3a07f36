"""Where the network runs: the device, its determinism settings, and the one-line report of the
runtime (device, number format, layout, allocator, threads, processes)."""

from __future__ import annotations

import os

import torch

from cityseg.errors import ConfigError, setting
from cityseg.runtime.allocator import describe_allocator
from cityseg.runtime.precision import Precision, cpu_bf16_support


def resolve_device(
    name: str | None = "auto",
    *,
    option: str = "--device",
    local_rank: int | None = None,
    local_processes: int = 1,
) -> torch.device:
    """The device ``name`` stands for, checked: the one rule of training and inference alike.

    Args:
        name: "auto" (or None): CUDA, then MPS, then the CPU; else "cpu", "cuda", "cuda:N" or
            "mps", which must be available.
        option: how the user set it ("--device", "train.device"), for the messages.
        local_rank: in training, this process's place on its node: plain "cuda" then means GPU
            ``local_rank`` (one GPU per process). None (inference): the current GPU.
        local_processes: the processes of the job on this node, each taking a GPU.

    Raises:
        ConfigError: an unknown or unavailable device, or more processes than GPUs.
    """
    given = name
    if name in (None, "auto"):
        if torch.cuda.is_available():
            name = "cuda"
        elif torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"{setting(option, given)}: unknown device; use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"{setting(option, given)}: no CUDA GPU is available here; use auto or cpu"
            )
        if local_rank is not None and device.index is None:
            _check_gpu_count(local_rank, local_processes, option)
            return torch.device("cuda", local_rank)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            f"{setting(option, given)}: the MPS backend is not available here; use auto or cpu"
        )
    return device


def use_device(device: torch.device) -> None:
    """Make ``device`` this process's current GPU (nothing for another kind of device).

    What uses the current GPU rather than a tensor's then lands on the run's: pinned host memory
    and the data loader's pinning thread, cuDNN's and cuBLAS's handles, compiled kernels. Without
    it a run on ``cuda:1`` also opened a CUDA context (hundreds of MB) on GPU 0.
    """
    if device.type == "cuda":
        torch.cuda.set_device(device)


def _check_gpu_count(local_rank: int, local_processes: int, option: str) -> None:
    visible = torch.cuda.device_count()
    if max(local_processes, local_rank + 1) > visible:
        raise ConfigError(
            f"{max(local_processes, local_rank + 1)} processes on this node but only "
            f"{visible} GPU(s) visible: use torchrun --nproc_per_node={visible} (or fewer), "
            f"or {setting(option, 'cpu')}"
        )


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
        allocator = describe_allocator()
    autocast = "autocast" if precision.name != "fp32" else "no autocast"
    scaler = ", grad scaler" if precision.name == "fp16" else ""
    layout = "channels_last" if channels_last else "contiguous"
    return (
        f"device {where} | precision {precision.name} ({autocast}{scaler}) | {layout} | "
        f"allocator {allocator} | {world_size} process{'es' if world_size > 1 else ''}"
    )
