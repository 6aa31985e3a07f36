"""Inference on full-resolution frames: images/s and peak memory, PyTorch against ONNX Runtime.

One 1024x2048 image through a U-Net (default width 32, random weights saved once so that every
configuration runs the same network), whole image and sliding window (512x1024 tiles, a third
overlapping, Gaussian blending, one tile per forward pass so memory stays bounded):

* PyTorch float32 and bf16 autocast + channels_last, through ``cityseg.inference``;
* ONNX Runtime (CPU) on the graph written by ``cityseg.export.export_model`` (uint8 in, logits
  out), whole image through ``cityseg.predict.OnnxSegmenter``; its sliding window here tiles the
  uint8 image in NumPy with the same tiles and window.

Each configuration runs in a fresh process: after a warm-up (whole: the full image; slide: one
tile), it times one prediction and reads the process's peak resident memory (VmHWM of
/proc/self/status) and, on CUDA, torch's peak device memory. Target: sliding window at width 32
under 2 GiB peak.

    python benchmarks/bench_inference.py [--width 32] [--size 1024x2048] [--tile-batch 1]
    python benchmarks/bench_inference.py --model efficientnet-lite0 --size 256x512 --tile 128x256
    python benchmarks/bench_inference.py --device cuda
    python benchmarks/bench_inference.py --smoke
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import (
    add_common_arguments,
    format_rate,
    machine_lines,
    markdown_table,
    parse_size,
    resolve_device,
    synchronize,
    use_fast_allocator,
)

CONFIGURATIONS = (
    ("torch", "whole", "fp32"),
    ("torch", "whole", "bf16"),
    ("torch", "slide", "fp32"),
    ("torch", "slide", "bf16"),
    ("onnxruntime", "whole", "fp32"),
    ("onnxruntime", "slide", "fp32"),
)
TARGET_GIB = 2.0


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--width", type=int, default=32, help="U-Net base width")
    parser.add_argument(
        "--model", help="a pretrained encoder's name (efficientnet-lite0, resnet18, ...) for a "
        "U-Net on it (random weights), instead of the plain U-Net of --width",
    )  # fmt: skip
    parser.add_argument("--size", default="1024x2048", metavar="HxW")
    parser.add_argument("--tile", default="512x1024", metavar="HxW")
    parser.add_argument("--tile-batch", type=int, default=1, help="tiles per forward pass")
    parser.add_argument("--no-onnx", action="store_true", help="leave out ONNX Runtime")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    use_fast_allocator()
    args = parse_arguments()
    if args.smoke:
        args.width, args.size, args.tile = 4, "128x256", "64x128"
    if args.one:
        result = run_one(args, tuple(args.one.split(",")), Path(args.scratch))
        print("RESULT " + json.dumps(result))
        return
    with tempfile.TemporaryDirectory(prefix="cityseg_bench_inference_") as scratch:
        compare(args, Path(scratch))


def compare(args, scratch: Path) -> None:
    import torch

    from cityseg.export import export_model
    from cityseg.model import model_from_config

    device = resolve_device(args.device, args.threads, args.smoke)
    print("# Inference on a full-resolution frame\n")
    print("\n".join(machine_lines(device)))
    torch.manual_seed(0)
    config = {"encoder": args.model} if args.model else {"base_width": args.width}
    model = model_from_config(config).eval()
    torch.save({"config": model.config, "state": model.state_dict()}, scratch / "model.pt")
    configurations = [c for c in CONFIGURATIONS if not (args.no_onnx and c[0] == "onnxruntime")]
    if device.type == "cuda":
        configurations = [c for c in configurations if c[0] == "torch"]
    if any(c[0] == "onnxruntime" for c in configurations):
        started = time.perf_counter()
        export_model(model, scratch / "model.onnx", model.normalization, verify=False)
        print(f"- ONNX export: {time.perf_counter() - started:.1f} s (cityseg.export)")
    print(
        f"- {model.describe()} {args.model or f'width {args.width}'} "
        f"({model.count_parameters() / 1e6:.2f} M parameters), image "
        f"{args.size}, tiles {args.tile} with stride 2/3 of a tile, {args.tile_batch} tile(s) "
        f"per forward, Gaussian window; {'in this process' if args.smoke else 'one process each'}"
    )
    rows, results = [], {}
    for configuration in configurations:
        if args.smoke:
            result = run_one(args, configuration, scratch)
        else:
            result = run_in_subprocess(args, configuration, scratch)
        results[configuration] = result
        runtime, mode, precision = configuration
        rows.append(
            [
                runtime, mode, precision, f"{result['seconds']:.2f}",
                format_rate(1 / result["seconds"]), f"{result['peak_rss_mib']:.0f}",
                f"{result['growth_mib']:.0f}", _device_peak(result),
            ]
        )  # fmt: skip
        print(f"  {configuration}: {result}", file=sys.stderr, flush=True)
    headers = [
        "runtime", "mode", "precision", "s/image", "img/s", "peak RSS MiB",
        "RSS growth MiB", "peak CUDA MiB",
    ]  # fmt: skip
    print()
    print(markdown_table(headers, rows))
    print_ratios(results)


def _device_peak(result: dict) -> str:
    return f"{result['cuda_peak_mib']:.0f}" if result.get("cuda_peak_mib") else "-"


def print_ratios(results: dict) -> None:
    print("\nRatios (same run):")
    base = results.get(("torch", "whole", "fp32"))
    for (runtime, mode, precision), result in results.items():
        if base and (runtime, mode, precision) != ("torch", "whole", "fp32"):
            print(
                f"- {runtime} {mode} {precision}: {base['seconds'] / result['seconds']:.2f}x the "
                "speed of PyTorch whole fp32"
            )
    for key, result in results.items():
        if key[1] == "slide":
            peak = result["peak_rss_mib"] / 1024
            verdict = "met" if peak < TARGET_GIB else "NOT met"
            print(
                f"- {' '.join(key)}: peak {peak:.2f} GiB (target < {TARGET_GIB:g} GiB: {verdict})"
            )


def run_in_subprocess(args, configuration, scratch: Path) -> dict:
    command = [
        sys.executable, str(Path(__file__).resolve()), "--one", ",".join(configuration),
        "--scratch", str(scratch), "--width", str(args.width), "--size", args.size,
        "--tile", args.tile, "--tile-batch", str(args.tile_batch), "--device", args.device,
    ]  # fmt: skip
    if args.model:
        command += ["--model", args.model]
    if args.threads:
        command += ["--threads", str(args.threads)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    line = next(line for line in output.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def run_one(args, configuration, scratch: Path) -> dict:
    """Warm up, time one prediction, and report memory, for one configuration."""
    runtime, mode, precision = configuration
    height, width = parse_size(args.size)
    tile = parse_size(args.tile)
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    if runtime == "torch":
        predict, device = torch_predictor(args, mode, precision, tile, scratch)
    else:
        predict, device = onnx_predictor(mode, tile, scratch), None
    before = memory_mib("VmRSS")
    predict(image[: tile[0], : tile[1]] if mode == "slide" else image)  # warm-up
    _reset_cuda_peak(device)
    started = time.perf_counter()
    labels = predict(image)
    seconds = time.perf_counter() - started
    assert labels.shape == (height, width), labels.shape
    peak = memory_mib("VmHWM")
    return {
        "seconds": seconds,
        "peak_rss_mib": peak,
        "growth_mib": peak - before,
        "cuda_peak_mib": _cuda_peak(device),
    }


def torch_predictor(args, mode: str, precision: str, tile, scratch: Path):
    import torch

    from cityseg.inference.options import InferenceOptions
    from cityseg.inference.predictor import Predictor
    from cityseg.model import model_from_config

    device = resolve_device(args.device, args.threads, args.smoke)
    saved = torch.load(scratch / "model.pt", weights_only=True)
    model = model_from_config(saved["config"])
    model.load_state_dict(saved["state"])
    norm = model.normalization
    options = InferenceOptions(
        mode=mode, tile=tile, tile_batch=args.tile_batch, precision=precision,
        channels_last=precision != "fp32",
    )  # fmt: skip
    predictor = Predictor(model, norm["mean"], norm["std"], device, options)

    def predict(image: np.ndarray) -> np.ndarray:
        labels = predictor.predict(image)
        synchronize(device)
        return labels.cpu().numpy()

    return predict, device


def onnx_predictor(mode: str, tile, scratch: Path):
    from cityseg.predict import OnnxSegmenter
    from cityseg.predict.onnx_segmenter import INPUT_NAME, softmax

    segmenter = OnnxSegmenter(scratch / "model.onnx", device="cpu")
    if mode == "whole":
        return segmenter.predict

    def predict(image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        tile_h, tile_w = min(tile[0], height), min(tile[1], width)
        weights = gaussian_window(tile_h, tile_w)
        total = np.zeros((len(segmenter.class_names), height, width), np.float32)
        weight_sum = np.zeros((height, width), np.float32)
        for top in tile_origins(height, tile_h):
            for left in tile_origins(width, tile_w):
                crop = np.ascontiguousarray(image[None, top : top + tile_h, left : left + tile_w])
                logits = segmenter.session.run(["logits"], {INPUT_NAME: crop})[0][0]
                total[:, top : top + tile_h, left : left + tile_w] += softmax(logits) * weights
                weight_sum[top : top + tile_h, left : left + tile_w] += weights
        return (total / weight_sum).argmax(axis=0).astype(np.uint8)

    return predict


def tile_origins(length: int, tile: int) -> list[int]:
    """As ``cityseg.inference.windows.tile_origins`` with a stride of 2/3 of the tile (no torch)."""
    stride = max(1, 2 * tile // 3)
    if tile >= length:
        return [0]
    count = -(-(length - tile) // stride) + 1
    return sorted({min(i * stride, length - tile) for i in range(count)})


def gaussian_window(height: int, width: int) -> np.ndarray:
    """As ``cityseg.inference.windows.window_weights(..., "gaussian")``."""
    axes = []
    for length in (height, width):
        position = np.arange(length, dtype=np.float32) - (length - 1) / 2
        axes.append(np.exp(-0.5 * (position / (length / 4)) ** 2))
    return axes[0][:, None] * axes[1][None, :]


def memory_mib(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process in MiB, from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_cuda_peak(device) -> None:
    import torch

    if device is not None and device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _cuda_peak(device) -> float | None:
    import torch

    if device is not None and device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return None


if __name__ == "__main__":
    main()
