"""In what number format the network runs: autocast and gradient scaler, for training and
inference alike.

``precision="auto"`` picks the fastest format the hardware supports natively:

* CUDA: bfloat16 when the GPU computes it natively (Ampere and later, see ``cuda_bf16_support``),
  else float16 with a gradient scaler: on a T4, V100 or RTX 20xx bfloat16 is emulated, and slow.
* CPU: bfloat16 when the CPU computes it natively (``amx_bf16`` or ``avx512_bf16`` in the CPU
  flags: Intel Cooper Lake / Sapphire Rapids and later, AMD Zen 4 and later); otherwise float32,
  since emulated bf16 is slower.
* MPS: float32 (float16 autocast on Apple GPUs is possible with ``precision=fp16``).

That is the rule, and inference follows it. Training on a CPU goes one step further: native bf16
is not always faster for a given network and input size, so the trainer measures this rule's
choice against float32 once per machine and configuration (:mod:`cityseg.train.step_setting`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch

from cityseg.errors import ConfigError, setting

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


def choose_precision(
    requested: str, device: torch.device, *, option: str = "train.precision"
) -> Precision:
    """Resolve a precision (auto/fp32/bf16/fp16) for ``device``: the one rule of training and
    inference alike.

    Args:
        requested: "auto" (see the module's docstring), "fp32", "bf16" or "fp16".
        device: where the network runs.
        option: how the user set it ("train.precision", "--precision"), for the messages.

    Raises:
        ConfigError: bf16 on a GPU without it, or fp16 on the CPU.
    """
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
            f"{setting(option, 'bf16')}: this GPU has no bfloat16 support; use fp16 or auto"
        )
    if requested == "fp16" and kind == "cpu":
        raise ConfigError(
            f"{setting(option, 'fp16')}: float16 is for GPUs; on the CPU use bf16 or fp32"
        )
    return Precision(requested, device)
