"""What the benchmarks share: the allocator, the device, timing, the machine, peaks, tables, data.

Every benchmark prints a description of the machine (CPU model, cores, clock, torch, allocator,
load average) and markdown tables whose ratios were all measured in the same run, so a table can be
pasted into BENCHMARKS.md as it comes.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CITYSEG_SHARED_DATA", REPO.parent / "shared" / "data"))


def use_fast_allocator() -> None:
    """Run this script with the allocator the ``cityseg`` command would use (``CITYSEG_ALLOCATOR``:
    tcmalloc where installed, else glibc with its thresholds raised, unless another is asked
    for), so the numbers are the ones users get."""
    sys.path.insert(0, str(REPO / "src"))
    from cityseg.runtime.allocator import prepare_allocator

    prepare_allocator(sys.argv[1:], program=[sys.executable, sys.argv[0]])


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda[:N]")
    parser.add_argument("--smoke", action="store_true", help="tiny seconds-long form for CI")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")


def resolve_device(name: str, threads: int | None = None, smoke: bool = False):
    """The torch device of ``--device``; ``threads`` CPU threads (one in smoke runs, which must
    not crawl on a machine busy with other work: OpenMP threads that wait for a descheduled
    sibling make every small operator cost a time slice)."""
    import torch

    threads = threads or (1 if smoke else None)
    if threads:
        torch.set_num_threads(threads)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(
    call: Callable[[], object],
    device,
    warmup: int = 1,
    iterations: int = 5,
    max_seconds: float = 20.0,
) -> list[float]:
    """Seconds of each timed call after ``warmup`` calls: ``iterations`` calls, or fewer (at least
    one) once ``max_seconds`` have been spent timing."""
    for _ in range(warmup):
        call()
    synchronize(device)
    times: list[float] = []
    budget_start = time.perf_counter()
    while len(times) < iterations:
        start = time.perf_counter()
        call()
        synchronize(device)
        times.append(time.perf_counter() - start)
        if time.perf_counter() - budget_start > max_seconds:
            break
    return times


def time_round_robin(
    calls: dict[str, Callable[[], object]],
    device,
    iterations: int = 5,
    max_seconds: float = 20.0,
) -> dict[str, list[float]]:
    """Seconds of each call, timed in turns (a, b, c, a, b, c, ...) so that load from other
    processes falls on every call alike: ``iterations`` rounds, or fewer (at least one) once
    ``max_seconds`` have been spent. Calls are assumed warm."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    budget_start = time.perf_counter()
    for _ in range(iterations):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
        if time.perf_counter() - budget_start > max_seconds:
            break
    return times


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def cpu_info() -> dict[str, object]:
    """Model name, vendor, family, flags, logical cores usable here and clock (GHz)."""
    info: dict[str, object] = {"model": platform.processor() or "unknown", "flags": set()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "model name":
            info["model"] = value
        elif key == "vendor_id":
            info["vendor"] = value
        elif key == "cpu family":
            info["family"] = int(value)
        elif key == "cpu MHz" and "ghz" not in info:
            info["ghz"] = float(value) / 1000
        elif key == "flags":
            info["flags"] = set(value.split())
    max_mhz = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if max_mhz.is_file():
        info["ghz"] = int(max_mhz.read_text()) / 1e6
    info["cores"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    return info


def cpu_peak_flops() -> dict[str, object]:
    """Theoretical peak FLOP/s of the cores torch uses (its threads, at most the cores usable
    here) for float32 and bfloat16, and how it was computed.

    FLOPs per cycle per core: AVX-512 with two 512-bit FMA units (Intel server cores, AMD Zen 5):
    2 units x 16 float32 lanes x 2 (multiply + add) = 64; AMD Zen 4 runs AVX-512 on two 256-bit
    units: 32; AVX2 + FMA: 32. bfloat16: AMX tiles 1024 per cycle per core (Sapphire Rapids);
    AVX512-BF16 dot products (VDPBF16PS) twice the float32 rate; otherwise the float32 rate
    (bfloat16 is computed in float32).
    """
    import torch

    info = cpu_info()
    cores = min(info["cores"], torch.get_num_threads())  # the cores torch computes on
    flags, ghz = info["flags"], info.get("ghz", 0.0)
    zen4 = info.get("vendor") == "AuthenticAMD" and info.get("family") == 25
    if "avx512f" in flags:
        fp32, why = (32, "AVX-512 on 2x256-bit FMA units (Zen 4)") if zen4 else (
            64, "AVX-512, 2 FMA units x 16 lanes x 2",
        )  # fmt: skip
    elif "fma" in flags:
        fp32, why = 32, "AVX2, 2 FMA units x 8 lanes x 2"
    else:
        fp32, why = 8, "SSE, 4 lanes x 2"
    if "amx_bf16" in flags:
        bf16, bf16_why = 1024, "AMX-BF16 tiles, 1024/cycle"
    elif "avx512_bf16" in flags:
        bf16, bf16_why = 2 * fp32, "AVX512-BF16 dot products, 2x fp32"
    else:
        bf16, bf16_why = fp32, "no native bf16: fp32 rate"
    return {
        "fp32": cores * ghz * 1e9 * fp32,
        "half": cores * ghz * 1e9 * bf16,
        "how": (
            f"{cores} cores x {ghz:.2f} GHz x {fp32} FLOP/cycle fp32 ({why}); "
            f"x {bf16} bf16 ({bf16_why})"
        ),
    }


# Dense peaks (TFLOP/s, no sparsity) from the vendors' data sheets: (fp32 non-tensor, bf16/fp16).
CUDA_PEAKS = {
    "H200": (67, 989),
    "H100 SXM": (67, 989),
    "H100 PCIe": (51, 756),
    "H100": (67, 989),
    "A100": (19.5, 312),
    "L40S": (91.6, 362),
    "L4": (30.3, 121),
    "A10": (31.2, 125),
    "RTX 4090": (82.6, 165),
    "RTX 3090": (35.6, 71),
    "V100": (15.7, 125),
    "T4": (8.1, 65),
}


def cuda_peak_flops(device) -> dict[str, object]:
    """Data-sheet peak FLOP/s of the GPU (fp32 and bf16/fp16 tensor cores), when it is known."""
    import torch

    name = torch.cuda.get_device_name(device)
    for key, (fp32, half) in CUDA_PEAKS.items():
        if key in name:
            return {"fp32": fp32 * 1e12, "half": half * 1e12, "how": f"{name}: data sheet {key}"}
    return {"fp32": float("nan"), "half": float("nan"), "how": f"{name}: not in the table"}


def peak_flops(device) -> dict[str, object]:
    return cuda_peak_flops(device) if device.type == "cuda" else cpu_peak_flops()


def matmul_flops(device, dtype_name: str, size: int = 2048, repeats: int = 3) -> float:
    """Achievable FLOP/s: the best of ``repeats`` square matmuls of ``size`` in ``dtype``."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype_name]
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    times = time_calls(lambda: a @ b, device, warmup=1, iterations=repeats, max_seconds=5)
    return 2 * size**3 / min(times)


def parse_size(text: str) -> tuple[int, int]:
    """A ``--size``/``--tile`` value as cityseg's commands read it (``256x512``, ``256``, ...)."""
    sys.path.insert(0, str(REPO / "src"))
    from cityseg.sizes import parse_size as parse

    return parse(text)


def machine_lines(device) -> list[str]:
    """A few lines that say where the numbers come from."""
    import torch

    sys.path.insert(0, str(REPO / "src"))
    from cityseg.runtime.allocator import describe_allocator

    info = cpu_info()
    lines = [
        f"- CPU: {info['model']}, {info['cores']} cores usable, {info.get('ghz', 0):.2f} GHz, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads, "
        f"{torch.backends.cpu.get_cpu_capability()}), allocator {describe_allocator()}",
        "- load average before the run (1, 5, 15 min): "
        + ", ".join(f"{load:.2f}" for load in os.getloadavg()),
    ]
    stolen = stolen_seconds()
    if stolen is not None:
        lines.append(f"- CPU time stolen by the hypervisor since boot: {stolen:.0f} s")
    if device.type == "cuda":
        lines.insert(1, f"- GPU: {torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}")
    return lines


def stolen_seconds() -> float | None:
    """CPU seconds the hypervisor has given to other guests since boot, all CPUs together
    (``steal`` of /proc/stat; None where there is none to read). On a shared virtual machine this,
    not the load average, says when another tenant slowed a run down: a stolen share of 10% on
    2 vCPUs leaves threads waiting on a sibling that is not running."""
    try:
        fields = open("/proc/stat").readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def stolen_share(before: float | None, after: float | None, seconds: float) -> float | None:
    """The share of the CPUs' time stolen between two readings ``seconds`` apart."""
    if before is None or after is None or seconds <= 0:
        return None
    return (after - before) / (seconds * (os.cpu_count() or 1))


def find_data(explicit: str | None, sub: str) -> Path | None:
    """``explicit`` if given (must exist), else ``SHARED_DATA/sub`` when present, else None."""
    if explicit:
        path = Path(explicit)
        if not path.is_dir():
            sys.exit(f"{path}: no such folder")
        return path
    path = SHARED_DATA / sub
    return path if path.is_dir() else None


def generate_pairs(root: Path, count: int, seed: int = 0) -> Path:
    """``count`` random pairs JPEGs (256x512: noise photo, blocks of label colours) under
    ``root/train``: the stand-in when the real pairs data is absent."""
    import cv2

    sys.path.insert(0, str(REPO / "src"))
    from cityseg.labels import PALETTE

    rng = np.random.default_rng(seed)
    folder = root / "train"
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(1, count + 1):
        photo = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
        blocks = PALETTE[rng.integers(0, len(PALETTE), (8, 8))].astype(np.uint8)
        label = cv2.resize(blocks, (256, 256), interpolation=cv2.INTER_NEAREST)
        pair = cv2.cvtColor(np.concatenate([photo, label], axis=1), cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(folder / f"{index}.jpg"), pair, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return root


def format_rate(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"
