"""Where a training step's time goes: its FLOP/s against the measured bf16 matmul, and a profile.

For each preset of ``_presets.py``: one training step as the trainer runs it, with the default
precision and layout (``precision=auto``, channels_last). Its floating-point work is 3x the
forward's convolutions and matrix products as ``torch.utils.flop_counter`` counts them (the
elementwise work is not counted, as is usual), its median time measured over a few steps, and the
achieved FLOP/s given as a share of a 2048x2048 matmul measured in the same run, in float32 and in
bf16. Then ``torch.profiler`` records a few steps: the time of each phase (to device + normalise,
forward, loss, backward, optimizer) and, within the phases, of each kind of operator
(convolutions, normalisation, layout conversions and casts, elementwise and the rest). The data
loader is not part of a step: ``bench_epoch.py`` measures the time spent waiting for it.

    python benchmarks/bench_profile.py                       # every preset
    python benchmarks/bench_profile.py --presets pairs --precision fp32
    python benchmarks/bench_profile.py --smoke
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

from _common import (
    add_common_arguments,
    machine_lines,
    markdown_table,
    matmul_flops,
    median,
    resolve_device,
    time_calls,
    use_fast_allocator,
)
from _presets import PRESETS, describe_model, model_config, preset_run
from _steps import PHASES, build_step

# Kinds of operator, by the first matching piece of an aten operator's name.
KINDS = (
    ("convolution backward", ("convolution_backward",)),
    ("convolution", ("convolution", "conv2d", "conv_transpose")),
    ("normalisation", ("batch_norm", "group_norm", "layer_norm")),
    ("layout and casts", ("copy_", "_to_copy", "contiguous", "clone", "to_dense", "reorder")),
    ("upsampling and pooling", ("upsample", "pool", "pad")),
    ("loss", ("nll_loss", "log_softmax", "cross_entropy")),
    ("concatenation", ("cat",)),
)


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--presets", nargs="+", choices=sorted(PRESETS), default=list(PRESETS))
    parser.add_argument("--precision", help="fp32, bf16 or fp16 (default: precision=auto)")
    parser.add_argument("--contiguous", action="store_true", help="contiguous, not channels_last")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per preset")
    parser.add_argument("--top", type=int, default=8, help="operators listed per preset")
    return parser.parse_args()


def main() -> None:
    use_fast_allocator()
    args = parse_arguments()
    device = resolve_device(args.device, args.threads, args.smoke)
    if args.smoke:
        args.presets, args.steps = ["tiny"], 1
    from cityseg.runtime.precision import choose_precision

    precision = args.precision or choose_precision("auto", device).name
    channels_last = not args.contiguous
    print("# Where a training step's time goes\n")
    print("\n".join(machine_lines(device)))
    size = 256 if args.smoke else 2048
    matmul = {name: matmul_flops(device, name, size) for name in ("fp32", "bf16")}
    print(
        f"- measured {size}x{size} matmul: {matmul['fp32'] / 1e9:.0f} GFLOP/s fp32, "
        f"{matmul['bf16'] / 1e9:.0f} GFLOP/s bf16"
    )
    print(f"- precision {precision}, {'channels_last' if channels_last else 'contiguous'}\n")
    rows, profiles = [], []
    for name in args.presets:
        fields, size_hw, batch = preset_run(name, args.smoke)
        config = model_config(fields)
        step = build_step(device, config, size_hw, batch, precision, channels_last, False)
        flop = count_flop(step)
        seconds = median(time_calls(step, device, warmup=1, iterations=args.steps))
        rate = flop / seconds
        rows.append(
            [
                name, describe_model(fields), f"{size_hw[0]}x{size_hw[1]}", batch,
                f"{flop / 1e9:.1f}", f"{1000 * seconds:.0f}", f"{batch / seconds:.2f}",
                f"{rate / 1e9:.1f}", f"{100 * rate / matmul['bf16']:.0f}%",
                f"{100 * rate / matmul['fp32']:.0f}%",
            ]
        )  # fmt: skip
        print(f"  {rows[-1]}", file=sys.stderr, flush=True)
        profiles.append((name, profile(step, max(1, min(args.steps, 3))), seconds))
    headers = [
        "preset", "network", "size", "batch", "GFLOP/step", "ms/step", "img/s", "GFLOP/s",
        "of bf16 matmul", "of fp32 matmul",
    ]  # fmt: skip
    print(markdown_table(headers, rows))
    print("\nRatios (same run):")
    for row in rows:
        print(f"- {row[0]}: the step reaches {row[8]} of the bf16 matmul rate ({row[9]} of fp32's)")
    for name, (phases, kinds, top), seconds in profiles:
        total = sum(phases.values()) or 1.0
        print(f"\n## {name}: {1000 * seconds:.0f} ms a step\n")
        phase_rows = [
            [phase, f"{1000 * t:.1f}", f"{100 * t / total:.0f}%"] for phase, t in phases.items()
        ]
        print(markdown_table(["phase", "ms", "share"], phase_rows))
        print()
        kind_rows = [
            [phase, kind, f"{1000 * t:.1f}", f"{100 * t / total:.0f}%"]
            for (phase, kind), t in sorted(kinds.items(), key=lambda item: -item[1])
            if t / total >= 0.01
        ]
        print(markdown_table(["phase", "kind of operator", "ms", "share"], kind_rows))
        print()
        top_rows = [[op, f"{1000 * t:.1f}", f"{100 * t / total:.0f}%"] for op, t in top[: args.top]]
        print(markdown_table(["operator (self time)", "ms", "share"], top_rows))


def count_flop(step) -> float:
    """Floating-point operations of one step: 3x the forward's convolutions and matmuls (the
    backward does about twice the forward's work). torch's counter is read for the forward
    operators only: it counts the backward of grouped (depthwise) convolutions as if they were
    dense, 96 times too much for a 96-channel depthwise layer."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    counts = counter.get_flop_counts()["Global"]
    return 3.0 * sum(flop for op, flop in counts.items() if "backward" not in str(op))


def profile(step, steps: int):
    """Per step: seconds of each phase, of each (phase, kind of operator), and the operators
    with the most self time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    step()
    with torch_profile(activities=[ProfilerActivity.CPU]) as recorded:
        for _ in range(steps):
            step()
    phases: dict[str, float] = defaultdict(float)
    kinds: dict[tuple[str, str], float] = defaultdict(float)
    operators: dict[str, float] = defaultdict(float)
    for event in recorded.events():
        seconds = event.self_cpu_time_total / 1e6 / steps
        if event.name in PHASES:
            phases[event.name] += event.cpu_time_total / 1e6 / steps
        phase = enclosing_phase(event)
        if phase is None or event.name in PHASES:
            continue
        kinds[(phase, kind_of(event.name, phase))] += seconds
        operators[event.name] += seconds
    ordered = {phase: phases.get(phase, 0.0) for phase in PHASES}
    return ordered, kinds, sorted(operators.items(), key=lambda item: -item[1])


def enclosing_phase(event) -> str | None:
    parent = event
    while parent is not None:
        if parent.name in PHASES:
            return parent.name
        parent = parent.cpu_parent
    return None


def kind_of(name: str, phase: str) -> str:
    if phase == "optimizer":
        return "optimizer"
    for kind, pieces in KINDS:
        if any(piece in name for piece in pieces):
            return kind
    return "elementwise and other"


if __name__ == "__main__":
    main()
