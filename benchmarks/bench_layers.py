"""Each kind of layer of the benchmarked networks, forward and backward, in float32 and in bf16.

The networks of ``_presets.py`` run one forward pass with hooks that record every leaf layer and
the shape it receives. Each layer is then timed alone, forward and backward, in channels_last: in
float32, and as it runs in the network under bf16 autocast (a bf16 input, as the layer before
hands it over, and the autocast rules: convolutions compute in bf16, batch normalisation keeps
float32 statistics). The sums per kind of layer (3x3 convolutions, depthwise 5x5, transposed,
batch norm, ...) over the whole network say which kinds gain from bf16 on this CPU and which
lose. cityseg's depthwise convolutions compute in float32 under CPU autocast
(``cityseg.model.encoders.depthwise``); for them the column "bf16 kernel" gives the other
choice, the bf16 convolution itself.

    python benchmarks/bench_layers.py                    # every preset
    python benchmarks/bench_layers.py --presets pairs
    python benchmarks/bench_layers.py --smoke
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

from _common import (
    add_common_arguments,
    machine_lines,
    markdown_table,
    median,
    resolve_device,
    time_calls,
    use_fast_allocator,
)
from _presets import PRESETS, describe_model, model_config, preset_run

MODES = ("fp32", "bf16", "bf16 kernel")


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--presets", nargs="+", choices=sorted(PRESETS), default=list(PRESETS))
    parser.add_argument("--iterations", type=int, default=5, help="timed calls per layer")
    return parser.parse_args()


def main() -> None:
    use_fast_allocator()
    args = parse_arguments()
    device = resolve_device(args.device, args.threads, args.smoke)
    if args.smoke:
        args.presets, args.iterations = ["tiny"], 1
    print("# Layers in float32 and bf16, forward + backward\n")
    print("\n".join(machine_lines(device)))
    print(f"- median of {args.iterations} timed calls per layer and shape, channels_last\n")
    ratios = []
    for name in args.presets:
        fields, size, batch = preset_run(name, args.smoke)
        totals = time_network(model_config(fields), size, batch, device, args.iterations)
        print(f"## {name}: {describe_model(fields)}, {size[0]}x{size[1]}, batch {batch}\n")
        rows, all_fp32, all_bf16 = [], 0.0, 0.0
        for kind, (count, times) in sorted(totals.items(), key=lambda item: -item[1][1]["fp32"]):
            fp32, bf16 = times["fp32"], times["bf16"]
            all_fp32, all_bf16 = all_fp32 + fp32, all_bf16 + bf16
            other = times.get("bf16 kernel")
            rows.append(
                [
                    kind, count, f"{1000 * fp32:.1f}", f"{1000 * bf16:.1f}",
                    f"{fp32 / bf16:.2f}x", f"{1000 * other:.1f}" if other else "-",
                ]
            )  # fmt: skip
        rows.append(["all", "", f"{1000 * all_fp32:.1f}", f"{1000 * all_bf16:.1f}",
                     f"{all_fp32 / all_bf16:.2f}x", ""])  # fmt: skip
        headers = [
            "kind of layer", "layers", "fp32 ms", "bf16 autocast ms", "bf16 speed-up",
            "bf16 kernel ms",
        ]  # fmt: skip
        print(markdown_table(headers, rows))
        print()
        slower = [row[0] for row in rows[:-1] if float(row[4][:-1]) < 1.0]
        ratios.append(
            f"{name}: bf16 {all_fp32 / all_bf16:.2f}x float32 over all layers; slower in bf16: "
            + (", ".join(slower) or "none")
        )
    print("Ratios (same run):")
    print("\n".join(f"- {line}" for line in ratios))


def time_network(config, size, batch, device, iterations):
    """{kind: (number of layers, {mode: seconds of all of them, forward + backward})}."""
    import torch

    from cityseg.model import model_from_config

    model = (
        model_from_config(config.model_kwargs()).to(device).to(memory_format=torch.channels_last)
    )
    calls = record_layers(model, torch.randn(batch, 3, *size, device=device))
    counts: dict[str, int] = defaultdict(int)
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for module, shape in calls:
        kind = kind_of(module)
        counts[kind] += 1
        modes = MODES if kind.startswith("depthwise") else MODES[:2]
        for mode in modes:
            seconds = median(time_calls(layer_call(module, shape, mode, device), device,
                                        warmup=1, iterations=iterations))  # fmt: skip
            totals[kind][mode] += seconds
        print(f"  {kind} {tuple(shape)}: {dict(totals[kind])}", file=sys.stderr, flush=True)
    return {kind: (counts[kind], totals[kind]) for kind in counts}


def record_layers(model, images):
    """(leaf module, input shape) of every leaf layer the forward pass of ``images`` calls."""
    import torch

    calls, handles = [], []
    for module in model.modules():
        if (
            not list(module.children())
            and list(module.parameters(recurse=False))
            or is_active(module)
        ):
            handles.append(
                module.register_forward_hook(
                    lambda m, inputs, output: calls.append((m, tuple(inputs[0].shape)))
                )
            )
    with torch.no_grad():
        model.eval()(images)
    for handle in handles:
        handle.remove()
    return calls


def is_active(module) -> bool:
    import torch.nn as nn

    return isinstance(module, (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.MaxPool2d))


def kind_of(module) -> str:
    import torch.nn as nn

    if isinstance(module, nn.ConvTranspose2d):
        return f"transposed {module.kernel_size[0]}x{module.kernel_size[1]}"
    if isinstance(module, nn.Conv2d):
        k = f"{module.kernel_size[0]}x{module.kernel_size[1]}"
        if module.groups > 1 and module.groups == module.in_channels:
            return f"depthwise {k}"
        return f"convolution {k}"
    return type(module).__name__


def layer_call(module, shape, mode: str, device):
    """Forward and backward of ``module`` alone on a random input of ``shape``."""
    import copy

    import torch

    layer = copy.deepcopy(module).train()
    if getattr(layer, "inplace", False):
        layer.inplace = False  # the input is a leaf that needs its gradient
    dtype = torch.float32 if mode == "fp32" else torch.bfloat16
    x = torch.randn(shape, device=device).to(dtype)
    if x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)

    forward = layer
    if mode == "bf16 kernel":  # torch's own convolution, whatever the subclass does

        def forward(tensor):
            if getattr(layer, "same_pad", None) is not None:
                tensor = torch.nn.functional.pad(tensor, layer.same_pad)
            return torch.nn.Conv2d.forward(layer, tensor)

    def call() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mode != "fp32"):
            out = forward(x)
        out.backward(torch.ones_like(out))
        layer.zero_grad(set_to_none=True)
        x.grad = None

    return call


if __name__ == "__main__":
    main()
