"""Where and in what number format the network runs: device, autocast, gradient scaler, layout.

``precision="auto"`` picks the fastest format the hardware supports natively:

* CUDA: bfloat16 when the GPU computes it natively (Ampere and later, see ``cuda_bf16_support``),
  else float16 with a gradient scaler: on a T4, V100 or RTX 20xx bfloat16 is emulated, and slow.
* CPU: bfloat16 when the CPU computes it natively (``amx_bf16`` or ``avx512_bf16`` in the CPU
  flags: Intel Cooper Lake / Sapphire Rapids and later, AMD Zen 4 and later); otherwise float32,
  since emulated bf16 is slower. Measured on a 2-core AMD Zen 4 (avx512_bf16, no AMX), U-Net
  base_width 16 depth 4, batch 8 at 128x256, one training step: 0.75 s in float32, 0.45 s in
  bfloat16 (channels_last); 1.11 s and 0.62 s in the contiguous layout.
* MPS: float32 (float16 autocast on Apple GPUs is possible with ``precision=fp16``).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from cityseg.errors import ConfigError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """A resolved number format: ``name`` in fp32/bf16/fp16 on ``device``."""

    name: str
    device: torch.device

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast context for the forward pass (a no-op for fp32)."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=DTYPES[self.name])

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A gradient scaler, enabled only for float16."""
        return torch.amp.GradScaler(self.device.type, enabled=self.name == "fp16")


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


def cpu_flags() -> set[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where it does not exist)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_bf16_support() -> str:
    """'amx' (fast bf16 tiles), 'avx512' (native bf16 dot products) or 'none'."""
    flags = cpu_flags()
    if "amx_bf16" in flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512"
    return "none"


def cuda_bf16_support(device: torch.device) -> str:
    """'native' (Ampere and later, and ROCm), 'emulated' (older GPUs: it works, slowly) or 'none',
    for the GPU ``device`` (not the current one). The one rule of training and inference alike."""
    with torch.cuda.device(device):
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return "native"
        return "emulated" if torch.cuda.is_bf16_supported(including_emulation=True) else "none"


def choose_precision(requested: str, device: torch.device) -> Precision:
    """Resolve ``train.precision`` (auto/fp32/bf16/fp16) for ``device``."""
    kind = device.type
    if requested == "auto":
        if kind == "cuda":
            requested = "bf16" if cuda_bf16_support(device) == "native" else "fp16"
        elif kind == "cpu" and cpu_bf16_support() != "none":
            requested = "bf16"
        else:
            requested = "fp32"
    if requested == "bf16" and kind == "cuda" and cuda_bf16_support(device) == "none":
        raise ConfigError(
            "train.precision=bf16: this GPU has no bfloat16 support; use fp16 or auto"
        )
    if requested == "fp16" and kind == "cpu":
        raise ConfigError("train.precision=fp16: float16 is for GPUs; on the CPU use bf16 or fp32")
    return Precision(requested, device)


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
    from cityseg.allocator import active_allocator

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
