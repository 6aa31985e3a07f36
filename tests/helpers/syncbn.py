"""torch's own SyncBatchNorm on the CPU, for the gloo tests of several processes.

torch ships SyncBatchNorm's five kernels for GPUs only (``batch_norm_stats`` and the others have no
CPU kernel) and its module refuses CPU tensors. :func:`enable_cpu_sync_batchnorm` registers CPU
kernels for them, written from their definitions, so that ``nn.SyncBatchNorm``'s module and
autograd function run unchanged on gloo: in training, an all-gather of the statistics in the forward
pass and an all-reduce in the backward (eval mode skips both), exactly the collectives of a job on
GPUs. As there, the statistics of a float16 or bfloat16 input are float32.
:func:`sync_batchnorm_wrap` stands for ``wrap_model`` with ``train.sync_bn=true`` on GPUs.
"""

from __future__ import annotations

import torch
from torch import nn

_LIBRARY: torch.library.Library | None = None


def _dims(x: torch.Tensor) -> list[int]:
    return [d for d in range(x.dim()) if d != 1]


def _per_channel(x: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return values.view(1, -1, *([1] * (x.dim() - 2)))


def _wide(x: torch.Tensor) -> torch.Tensor:
    """``x`` in the type GPUs compute its statistics in: float32 for float16 and bfloat16."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _stats(x, eps):
    x = _wide(x)
    return x.mean(_dims(x)), (x.var(_dims(x), unbiased=False) + eps).rsqrt()


def _gather(x, mean_all, invstd_all, running_mean, running_var, momentum, eps, counts):
    counts = counts.view(-1, 1).to(mean_all.dtype)
    total = counts.sum()
    mean = (mean_all * counts).sum(0) / total
    var = ((invstd_all.pow(-2) - eps + (mean_all - mean).pow(2)) * counts).sum(0) / total
    if running_mean is not None:
        running_mean.mul_(1 - momentum).add_(momentum * mean.to(running_mean.dtype))
        unbiased = (var * total / (total - 1)).to(running_var.dtype)
        running_var.mul_(1 - momentum).add_(momentum * unbiased)
    return mean, (var + eps).rsqrt()


def _elemt(x, weight, bias, mean, invstd, eps):
    out = (_wide(x) - _per_channel(x, mean)) * _per_channel(x, invstd)
    if weight is not None:
        out = out * _per_channel(x, _wide(weight))
    if bias is not None:
        out = out + _per_channel(x, _wide(bias))
    return out.to(x.dtype)


def _backward_reduce(grad, x, mean, invstd, weight, input_g, weight_g, bias_g):
    grad, x = _wide(grad), _wide(x)
    sum_dy = grad.sum(_dims(x))
    sum_dy_xmu = (grad * (x - _per_channel(x, mean))).sum(_dims(x))
    parameters = weight.dtype if weight is not None else sum_dy.dtype
    return sum_dy, sum_dy_xmu, (sum_dy_xmu * invstd).to(parameters), sum_dy.to(parameters)


def _backward_elemt(grad, x, mean, invstd, weight, sum_dy, sum_dy_xmu, count):
    total = count.sum().float()
    scale = invstd if weight is None else invstd * weight.float()
    xmu = x.float() - _per_channel(x, mean)
    correction = xmu * _per_channel(x, invstd.pow(2) * sum_dy_xmu / total)
    grad_input = grad.float() - _per_channel(x, sum_dy / total) - correction
    return (grad_input * _per_channel(x, scale)).to(x.dtype)


def enable_cpu_sync_batchnorm() -> None:
    """Register the CPU kernels of SyncBatchNorm's operators (once per process)."""
    global _LIBRARY
    if _LIBRARY is not None:
        return
    _LIBRARY = torch.library.Library("aten", "IMPL")
    for name, kernel in {
        "batch_norm_stats": _stats,
        "batch_norm_gather_stats_with_counts": _gather,
        "batch_norm_elemt": _elemt,
        "batch_norm_backward_reduce": _backward_reduce,
        "batch_norm_backward_elemt": _backward_elemt,
    }.items():
        _LIBRARY.impl(name, kernel, "CPU")


class CpuSyncBatchNorm(nn.SyncBatchNorm):
    """``nn.SyncBatchNorm`` with its forward unchanged, but for its check that the input is on a
    GPU (the CPU kernels above stand in for the GPU's)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        backend_name = torch._C._get_privateuse1_backend_name
        torch._C._get_privateuse1_backend_name = lambda: input.device.type
        try:
            return super().forward(input)
        finally:
            torch._C._get_privateuse1_backend_name = backend_name


def sync_batchnorm_wrap(model, device, info, sync_bn):
    """``cityseg.train.distributed.wrap_model`` as on GPUs with ``train.sync_bn=true``:
    DistributedDataParallel with every BatchNorm synchronised. (DDP refuses SyncBatchNorm on the
    CPU when it wraps the model: the layers become SyncBatchNorm in place, after.)"""
    from cityseg.train.distributed import wrap_model

    enable_cpu_sync_batchnorm()
    wrapped, _ = wrap_model(model, device, info, sync_bn=False)
    converted = 0
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.__class__ = CpuSyncBatchNorm
            module.process_group = None
            converted += 1
    assert converted, "no BatchNorm to synchronise"
    return wrapped, None
