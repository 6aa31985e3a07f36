"""Does a checkpoint fit? Say exactly what differs instead of a wall of state_dict errors.

Used by :func:`cityseg.checkpoint.loading.load_model` (evaluate, predict, export) and by the
trainer when it resumes a run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from cityseg.config import ModelConfig
from cityseg.errors import CheckpointError
from cityseg.labels import CLASS_NAMES

_SHOWN = 3


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``"model.base_width: checkpoint 8, now 16"`` for each key whose value differs."""
    keys = sorted(set(saved) | set(current))
    return [
        f"model.{key}: checkpoint {saved.get(key)!r}, now {current.get(key)!r}"
        for key in keys
        if saved.get(key) != current.get(key)
    ]


def state_dict_problems(model: torch.nn.Module, weights: Mapping[str, Any]) -> list[str]:
    """Missing, unexpected and wrongly shaped weights of ``weights`` for ``model`` (a few each)."""
    expected = model.state_dict()
    if not isinstance(weights, Mapping):
        return [f"the weights are a {type(weights).__name__}, not a dict of tensors"]
    problems = []
    missing = [name for name in expected if name not in weights]
    unexpected = [name for name in weights if name not in expected]
    shapes = [
        f"{name} {tuple(weights[name].shape)} where the model has {tuple(tensor.shape)}"
        for name, tensor in expected.items()
        if name in weights
        and (not isinstance(weights[name], torch.Tensor) or weights[name].shape != tensor.shape)
    ]
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
        if items:
            more = f" (+{len(items) - _SHOWN} more)" if len(items) > _SHOWN else ""
            problems.append(f"{label}: {', '.join(map(str, items[:_SHOWN]))}{more}")
    return problems


def check_class_names(path: Path, class_names: Sequence[str] | None, num_classes: int) -> None:
    """A checkpoint's classes must be Cityscapes' 19, in trainId order: anything else would be
    scored against the data and written as labelIds as wrong classes."""
    names = list(class_names) if class_names is not None else list(CLASS_NAMES)[:num_classes]
    if len(names) != num_classes:
        raise CheckpointError(
            f"{path}: {len(names)} class names for a model of {num_classes} classes; "
            "the file is damaged or was edited"
        )
    if num_classes != len(CLASS_NAMES):
        raise CheckpointError(
            f"{path}: a model of {num_classes} classes ({', '.join(names[:3])}, ...), but the "
            f"data readers, metrics and label tables of cityseg have the {len(CLASS_NAMES)} "
            "Cityscapes classes (trainIds 0-18): its ids would be scored and written as wrong "
            "classes; use a checkpoint trained on those 19 classes"
        )
    differing = [
        f"trainId {index}: {name!r} (expected {expected!r})"
        for index, (name, expected) in enumerate(zip(names, CLASS_NAMES, strict=True))
        if name != expected
    ]
    if differing:
        raise CheckpointError(
            f"{path}: its classes differ from the Cityscapes classes cityseg uses "
            f"({'; '.join(differing[:_SHOWN])}); use a checkpoint trained with cityseg"
        )


def check_resumable(
    path: Path,
    state: Mapping[str, Any],
    model: torch.nn.Module,
    model_section: Mapping[str, Any],
    class_names: Sequence[str],
) -> None:
    """Raise CheckpointError unless a run's checkpoint fits the model and classes configured now.

    Args:
        path: the checkpoint (for the messages).
        state: its contents.
        model: the model built from the configuration of the resumed run.
        model_section: that configuration's ``model`` section, to name differences in its terms.
        class_names: the class names that configuration gives.
    """
    differences = config_differences(state.get("model_config", {}), model.config)
    saved_section = (state.get("config") or {}).get("model")
    if differences and saved_section:  # say it in the user's terms: base_width, not widths
        saved_section = {**dataclasses.asdict(ModelConfig()), **saved_section}  # older runs
        differences = config_differences(saved_section, model_section) or differences
    if differences:
        raise CheckpointError(
            f"{path}: the run was trained with another model configuration "
            f"({'; '.join(differences)}); resume without changing model.*, or start a new "
            "run with --out"
        )
    saved_names = list(state.get("class_names") or [])
    if saved_names != list(class_names):
        raise CheckpointError(
            f"{path}: its classes ({len(saved_names)}, starting {saved_names[:3]}) differ from "
            f"this configuration's ({len(class_names)}, starting {list(class_names)[:3]}); "
            "start a new run with --out"
        )
    problems = state_dict_problems(model, state.get("model"))
    if problems:
        raise CheckpointError(
            f"{path}: the weights do not fit the model ({'; '.join(problems)}); the file is "
            "damaged or from another version"
        )


def precision_change(saved: str | None, now: str, requested: str) -> str | None:
    """The line to print when a resumed run continues in another number format than the one it
    was trained in (``train.precision=auto`` resolves on each machine), else None."""
    if saved is None or saved == now:
        return None
    return (
        f"train.precision: the run was trained in {saved} and continues in {now} "
        f"(train.precision={requested} here); to keep {saved}, resume with train.precision={saved}"
    )
