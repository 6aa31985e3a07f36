"""Training step throughput (images/s) of the U-Net: float32 eager against the fast paths.

For each width and size: float32 eager (contiguous), channels_last, half precision (bf16 autocast
on CPUs and GPUs that have it, fp16 + gradient scaler on older GPUs), both, and torch.compile of
the default fast path (channels_last with ``train.precision=auto``). A step is what the trainer
does: uint8 batch to the device, normalise, forward, loss (cityseg's SegmentationLoss), backward,
Adam step. The variants of a configuration are warmed up (the first step, compilation included,
is reported apart) and then timed in turns, one step each per round, so that load from other
processes falls on all of them alike. Achieved FLOP/s = images/s x 3 x 2 x forward MACs
(``UNet.count_macs``; the backward pass costs about twice the forward), next to the machine's
peak (see ``_common.cpu_peak_flops``) and the FLOP/s of a large matmul measured in the same run
(the achievable peak).

    python benchmarks/bench_train_step.py                  # CPU: configs up to 200 GFLOP a step
    python benchmarks/bench_train_step.py --max-gflop 0    # every width and size (long on a CPU)
    python benchmarks/bench_train_step.py --device cuda --batch-sizes 1 4 8
    python benchmarks/bench_train_step.py --smoke          # seconds, for CI
    python benchmarks/bench_train_step.py --widths 16 32 --sizes 256x512 \
        --encoders efficientnet-lite0 resnet18 mobilenet_v2  # U-Nets on pretrained encoders too
"""

from __future__ import annotations

import argparse
import sys

from _common import (
    add_common_arguments,
    format_rate,
    machine_lines,
    markdown_table,
    matmul_flops,
    median,
    parse_size,
    peak_flops,
    resolve_device,
    time_calls,
    time_round_robin,
    use_fast_allocator,
)
from _steps import build_step

VARIANTS = ("fp32", "channels_last", "half", "half+channels_last", "compile")


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument(
        "--encoders", nargs="*", default=[], metavar="NAME",
        help="also U-Nets on these pretrained encoders (efficientnet-lite0, resnet18, ...)",
    )  # fmt: skip
    parser.add_argument("--sizes", nargs="+", default=["256x512", "512x1024"], metavar="HxW")
    parser.add_argument("--batch-sizes", type=int, nargs="+", help="default: 1 (CPU), 1 4 (GPU)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--no-compile", action="store_true", help="leave out torch.compile")
    parser.add_argument(
        "--max-gflop",
        type=float,
        help="skip configurations whose step exceeds this many GFLOP (0: none; default 200 on "
        "a CPU, none on a GPU)",
    )
    parser.add_argument("--iterations", type=int, help="timed steps (default 3 CPU, 20 GPU)")
    parser.add_argument(
        "--max-seconds", type=float, help="stop timing a variant after this (default 5 CPU, 3 GPU)"
    )
    return parser.parse_args()


def main() -> None:
    use_fast_allocator()
    args = parse_arguments()
    device = resolve_device(args.device, args.threads, args.smoke)
    cpu = device.type == "cpu"
    if args.smoke:
        args.widths, args.sizes, args.batch_sizes, args.no_compile = [4], ["64x128"], [1], True
        args.iterations, args.max_seconds = 1, 1.0
    variants = [v for v in args.variants if not (v == "compile" and args.no_compile)]
    batch_sizes = args.batch_sizes or ([1] if cpu else [1, 4])
    max_gflop = args.max_gflop if args.max_gflop is not None else (200 if cpu else 0)
    iterations = args.iterations or (3 if cpu else 20)
    max_seconds = args.max_seconds or (5.0 if cpu else 3.0)
    half = half_precision(device)

    print("# Training step throughput\n")
    print("\n".join(machine_lines(device)))
    peaks = peak_flops(device)
    measured = {"fp32": matmul_flops(device, "fp32", 512 if args.smoke else 2048)}
    measured["half"] = matmul_flops(device, half, 512 if args.smoke else 2048)
    print(f"- peak: {peaks['how']}")
    print(
        f"- peak FLOP/s: {peaks['fp32'] / 1e9:.0f} G fp32, {peaks['half'] / 1e9:.0f} G {half}; "
        f"measured matmul: {measured['fp32'] / 1e9:.0f} G fp32, {measured['half'] / 1e9:.0f} G "
        f"{half}"
    )
    auto = auto_precision(device)
    print(f"- half = {half}; compile = torch.compile of channels_last + precision auto ({auto})\n")

    rows, skipped, ratios = [], [], []
    for width in [*args.widths, *args.encoders]:
        for size in args.sizes:
            height, width_px = parse_size(size)
            macs = count_macs(width, height, width_px)
            for batch in batch_sizes:
                gflop = 6 * macs * batch / 1e9
                if max_gflop and gflop > max_gflop:
                    skipped.append(f"width {width} at {size} batch {batch} ({gflop:.0f} GFLOP)")
                    continue
                config = (width, (height, width_px), batch)
                steps, first, failures = warm_steps(device, config, variants, half, auto)
                times = time_round_robin(steps, device, iterations, max_seconds * len(steps))
                rates = {variant: batch / median(times[variant]) for variant in steps}
                for variant in variants:
                    if variant in failures:
                        rows.append([width, size, batch, variant, failures[variant]] + ["-"] * 7)
                        continue
                    flops = rates[variant] * 6 * macs
                    peak_key = (
                        "fp32" if variant_settings(variant, half, auto)[0] == "fp32" else "half"
                    )
                    rows.append(
                        [
                            width, size, batch, label(variant, half), format_rate(rates[variant]),
                            f"{1000 * median(times[variant]):.0f}", len(times[variant]),
                            f"{flops / 1e9:.1f}", f"{100 * flops / peaks[peak_key]:.1f}%",
                            f"{100 * flops / measured[peak_key]:.1f}%",
                            f"{rates[variant] / rates['fp32']:.2f}x" if "fp32" in rates else "-",
                            f"{first[variant]:.1f}",
                        ]
                    )  # fmt: skip
                    print(f"  {rows[-1]}", file=sys.stderr, flush=True)
                if "fp32" in rates and len(rates) > 1:
                    best = max(rates, key=rates.get)
                    ratios.append(
                        f"width {width} {size} batch {batch}: best {label(best, half)} "
                        f"{rates[best] / rates['fp32']:.2f}x float32 eager"
                    )
    headers = [
        "width", "size", "batch", "variant", "img/s", "ms/step", "steps timed", "GFLOP/s",
        "% peak", "% matmul", "vs fp32 eager", "first step s",
    ]  # fmt: skip
    print(markdown_table(headers, rows))
    print("\nRatios (same run):")
    print("\n".join(f"- {line}" for line in ratios) or "- none")
    if skipped:
        print(f"\nSkipped (over --max-gflop {max_gflop:g}): " + "; ".join(skipped))


def half_precision(device) -> str:
    """bf16, except on GPUs that only emulate it (fp16 with a gradient scaler there)."""
    from cityseg.runtime.precision import cuda_bf16_support

    if device.type == "cuda" and cuda_bf16_support(device) != "native":
        return "fp16"
    return "bf16"


def auto_precision(device) -> str:
    from cityseg.runtime.precision import choose_precision

    return choose_precision("auto", device).name


def variant_settings(variant: str, half: str, auto: str) -> tuple[str, bool, bool]:
    """(precision, channels_last, compiled) of a variant."""
    return {
        "fp32": ("fp32", False, False),
        "channels_last": ("fp32", True, False),
        "half": (half, False, False),
        "half+channels_last": (half, True, False),
        "compile": (auto, True, True),
    }[variant]


def label(variant: str, half: str) -> str:
    return variant.replace("half", half)


def model_config(width: int | str):
    """The ModelConfig of a plain U-Net of base ``width``, or of a U-Net on encoder ``width``."""
    from cityseg.config import ModelConfig

    if isinstance(width, str):
        return ModelConfig(encoder=width, encoder_weights="none")
    return ModelConfig(base_width=width)


def count_macs(width: int | str, height: int, width_px: int) -> int:
    from cityseg.model import model_from_config

    return model_from_config(model_config(width).model_kwargs()).count_macs(height, width_px)


def warm_steps(device, config, variants, half: str, auto: str):
    """A warmed-up training step per variant, the seconds of each first step (compilation
    included) and the variants that failed (torch.compile needs a C++ compiler on a CPU)."""
    width, size, batch = config
    steps, first, failures = {}, {}, {}
    for variant in variants:
        precision, channels_last, compiled = variant_settings(variant, half, auto)
        try:
            config = model_config(width)
            step = build_step(device, config, size, batch, precision, channels_last, compiled)
            first[variant] = time_calls(step, device, warmup=0, iterations=1)[0]
        except Exception as error:  # noqa: BLE001 - reported in the table
            failures[variant] = f"failed: {type(error).__name__}: {error}"[:80].replace("|", "/")
            continue
        steps[variant] = step
    return steps, first, failures


if __name__ == "__main__":
    main()
