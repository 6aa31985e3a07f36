"""Build what a run trains: the model (random, pretrained or from a checkpoint) and the loss (with
class weights from the training labels)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cityseg.checkpoint import compatibility
from cityseg.checkpoint.io import checkpoint_file, load_checkpoint
from cityseg.config import Config, ModelConfig
from cityseg.data.loader import ShardSampler, training_workers, worker_options
from cityseg.data.rare_classes import class_totals
from cityseg.data.unreadable import BadSample, read_or_report
from cityseg.errors import CheckpointError, ConfigError, DataError
from cityseg.model import init_encoder, model_from_config
from cityseg.pretrained import available_pretrained, pretrained_path
from cityseg.pretrained.hub import is_hub_name
from cityseg.train.distributed import DistInfo, all_reduce_sum, print_main
from cityseg.train.losses import SegmentationLoss, class_weights_from_counts, count_class_pixels


def build_model(
    config: ModelConfig, device: torch.device, channels_last: bool, pretrained: bool = True
) -> tuple[torch.nn.Module, str | None]:
    """The network of ``config`` on ``device`` (channels_last memory layout when asked), its
    pretrained encoder filled (unless ``pretrained`` is false: a resumed run, or one started from
    a checkpoint with ``train.init_from``, loads its own weights, so the encoder's are neither
    read nor downloaded), and a line saying which weights were loaded (None if none)."""
    try:
        model = model_from_config(config.model_kwargs())
        loaded = init_encoder(model, config.weights()) if pretrained else None
    except ValueError as error:
        raise ConfigError(f"model: {error}") from None
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, loaded


def initialize_from(model: torch.nn.Module, source: str) -> str:
    """Copy the weights of the checkpoint ``source`` (a file, a run folder, a model folder, a
    shipped model's name or ``hf:USER/NAME[@REVISION]``) into ``model``; return a line saying
    what was loaded.

    The architecture must be the same; a classifier for another number of classes is left as
    it is (random), so a model trained on other classes can be fine-tuned.
    """
    path = checkpoint_file(source)
    if is_hub_name(source) or (not path.is_file() and source in available_pretrained()):
        path = pretrained_path(source)  # (a folder ./pairs is no run; hf:USER/NAME is no folder)
    elif not Path(source).exists():
        shipped = ", ".join(available_pretrained()) or "none"
        raise ConfigError(
            f"train.init_from={source}: no such file or folder, and no shipped model of that "
            f"name (shipped: {shipped}); give a checkpoint .pt, a run folder, a shipped name or "
            "hf:USER/NAME (a model on the Hugging Face Hub)"
        )
    state = load_checkpoint(path)
    weights = state.get("model") or {}
    differences = [
        line
        for line in compatibility.config_differences(state.get("model_config", {}), model.config)
        if not line.startswith("model.num_classes")
    ]
    if differences:
        raise ConfigError(
            f"train.init_from={path}: another architecture ({'; '.join(differences)}); set "
            "model.* as the checkpoint has them"
        )
    expected = model.state_dict()
    head = [
        name for name in weights if name in expected and weights[name].shape != expected[name].shape
    ]
    kept = {name: tensor for name, tensor in weights.items() if name not in head}
    problems = compatibility.state_dict_problems(model, {**expected, **kept})
    if problems:
        raise CheckpointError(f"{path}: the weights do not fit the model ({'; '.join(problems)})")
    model.load_state_dict({**expected, **kept})
    left = f"; {len(head)} classifier tensors left random (other classes)" if head else ""
    return f"weights from {path} (epoch {state.get('epoch', '?')}){left}"


def build_criterion(
    config: Config,
    train_set: Dataset,
    info: DistInfo,
    device: torch.device,
    resume_state: dict[str, Any] | None,
    counts: np.ndarray | None = None,
) -> tuple[SegmentationLoss, list[float] | None]:
    """The training loss and its class weights (computed once, then read from the checkpoint):
    from ``counts``, the per-image class pixels rare-class sampling has already counted
    (:func:`~cityseg.data.rare_classes.count_table`), else from a pass over the labels."""
    spec, num_classes = config.loss.class_weights, config.model.num_classes
    if spec is None or spec == "none":
        weights = None
    elif isinstance(spec, list):
        weights = [float(w) for w in spec]
    elif resume_state is not None and resume_state.get("class_weights") is not None:
        weights = list(resume_state["class_weights"])
    else:
        method = "enet" if spec == "auto" else spec
        if counts is not None:
            weights = class_weights_from_counts(*class_totals(counts), method)
        else:
            weights = compute_class_weights(train_set, method, num_classes, config, info, device)
        shown = ", ".join(f"{w:.2f}" for w in weights)
        print_main(info, f"class weights ({method}, from {len(train_set)} labels): [{shown}]")
    criterion = SegmentationLoss(
        num_classes,
        class_weights=weights,
        ohem_thresh=config.loss.ohem_thresh,
        ohem_min_kept=config.loss.ohem_min_kept,
        label_smoothing=config.loss.label_smoothing,
    )
    return criterion, weights


class _Targets(Dataset):
    """The targets of a dataset; an unreadable item becomes a BadSample."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return read_or_report(lambda i: self.dataset[i][1], index)


def _identity(item: Any) -> Any:
    return item


def _readable_targets(loader: DataLoader, skip_bad: bool) -> Iterator[Any]:
    for target in loader:
        if not isinstance(target, BadSample):
            yield target
        elif not skip_bad:
            raise DataError(*target.problems)


def compute_class_weights(
    train_set: Dataset,
    method: str,
    num_classes: int,
    config: Config,
    info: DistInfo,
    device: torch.device,
) -> list[float]:
    """Class weights by ``method`` from the labels of ``train_set``, counted in parallel over the
    processes of the job (each counts its share) and the DataLoader workers."""
    loader = DataLoader(
        _Targets(train_set),
        batch_size=None,
        sampler=ShardSampler(len(train_set), info.rank, info.world_size),
        collate_fn=_identity,
        **worker_options(training_workers(config.data.workers, info.world_size)),
    )
    targets = _readable_targets(loader, config.data.skip_bad_samples)
    pixels, image_pixels = count_class_pixels(targets, num_classes)
    counts = torch.tensor([pixels.tolist(), image_pixels.tolist()], dtype=torch.int64)
    counts = all_reduce_sum(counts.to(device), info).cpu().numpy()  # NCCL reduces on the GPU
    return class_weights_from_counts(counts[0], counts[1], method)


def batch_per_process(batch_size: int, accumulate: int, world_size: int) -> int:
    """Images per process and micro-step in a step of ``batch_size`` images in total."""
    if batch_size % (accumulate * world_size):
        raise ConfigError(
            f"train.batch_size={batch_size} is not divisible by {world_size} process(es) x "
            f"train.accumulate={accumulate}; choose a multiple of {accumulate * world_size}"
        )
    return batch_size // (accumulate * world_size)
