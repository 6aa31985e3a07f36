"""One training step as cityseg's trainer runs it, for the benchmarks that time steps."""

from __future__ import annotations

from collections.abc import Callable

from cityseg.train.step import PHASES  # noqa: F401 (the step's phases, for bench_profile)


def build_step(
    device,
    config,
    size: tuple[int, int],
    batch: int,
    precision_name: str,
    channels_last: bool,
    compiled: bool,
) -> Callable[[], None]:
    """One training step of the network of ``config`` (a ModelConfig) as the trainer runs it
    (cuDNN settings, pinned batches and the trainer's optimizer included), on a fixed random
    uint8 batch: :class:`cityseg.train.step.TrainingStep` itself, whose phases are marked for
    torch.profiler (``PHASES``)."""
    import torch

    from cityseg.config import TrainConfig
    from cityseg.model import model_normalization
    from cityseg.runtime.device import configure_determinism
    from cityseg.runtime.normalize import Normalize
    from cityseg.runtime.precision import Precision
    from cityseg.train.build import build_model
    from cityseg.train.losses import SegmentationLoss
    from cityseg.train.schedules import build_optimizer
    from cityseg.train.step import TrainingStep

    configure_determinism(TrainConfig().deterministic, device)
    torch.manual_seed(0)
    model = build_model(config, device, channels_last, pretrained=False)[0].train()
    step_model = torch.compile(model) if compiled else model
    optimizer = build_optimizer(model, TrainConfig(lr=1e-4))
    precision = Precision(precision_name, device)
    scaler = precision.grad_scaler()
    criterion = SegmentationLoss(19).to(device)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, *size, 3), dtype=torch.uint8, generator=generator)
    targets = torch.randint(0, 19, (batch, *size), dtype=torch.uint8, generator=generator)
    if device.type == "cuda":
        images, targets = images.pin_memory(), targets.pin_memory()
    norm = model_normalization(config.model_kwargs())
    normalize = Normalize(norm["mean"], norm["std"], channels_last).to(device)

    step = TrainingStep(step_model, criterion, optimizer, scaler, precision, normalize)

    def one_step() -> None:
        step(images, targets)

    return one_step
