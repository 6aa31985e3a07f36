"""Parameter and multiply-add counts of a model, measured rather than estimated."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``model`` (only those requiring a gradient if ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def layer_macs(module: nn.Module, inputs: torch.Tensor, output: torch.Tensor) -> int:
    """Multiply-adds of one Conv2d, ConvTranspose2d or Linear call, per sample, without the bias.

    A convolution does ``in_channels / groups * kh * kw`` multiply-adds for each output element.
    A transposed convolution scatters each input element to ``out_channels / groups * kh * kw``
    outputs. A linear layer is a 1x1 convolution.
    """
    batch = output.shape[0]
    if isinstance(module, nn.ConvTranspose2d):
        kernel = module.kernel_size[0] * module.kernel_size[1]
        return inputs.numel() // batch * module.out_channels // module.groups * kernel
    if isinstance(module, nn.Conv2d):
        kernel = module.kernel_size[0] * module.kernel_size[1]
        return output.numel() // batch * module.in_channels // module.groups * kernel
    return output.numel() // batch * module.in_features


def count_macs(build: Callable[[], nn.Module], in_channels: int, height: int, width: int) -> int:
    """Multiply-adds of one forward pass on a single (in_channels, height, width) input.

    The model comes from ``build()`` called on the meta device, so nothing is computed and no
    memory is used: forward hooks on every Conv2d, ConvTranspose2d and Linear add up
    :func:`layer_macs` from the shapes alone. Norms, activations, pooling, interpolation and biases
    are not counted (together they are well under 1% of a U-Net's multiply-adds).
    """
    with torch.device("meta"):
        model = build().eval()
    total = 0

    def add(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        total += layer_macs(module, args[0], output)

    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            module.register_forward_hook(add)
    with torch.no_grad():
        model(torch.empty(1, in_channels, height, width, device="meta"))
    return total
