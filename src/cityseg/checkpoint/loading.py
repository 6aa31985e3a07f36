"""The trained network of a checkpoint, ready for inference.

Example:
    >>> from cityseg.checkpoint.loading import load_model
    >>> model, meta = load_model("runs/tiny/checkpoint_best.pt")  # doctest: +SKIP
    >>> meta["class_names"][:2], meta["input_size"]  # doctest: +SKIP
    (['road', 'sidewalk'], [128, 256])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cityseg.checkpoint import compatibility
from cityseg.checkpoint.format import TRAINING_KEYS
from cityseg.checkpoint.io import load_checkpoint
from cityseg.errors import CheckpointError
from cityseg.model import model_from_config


def load_model(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The trained UNet (in eval mode, on ``device``) and the checkpoint's description ``meta``
    (everything but the weights and the optimiser/scaler/random states).

    The file is read into host memory and only the model moves to ``device``: the optimiser and
    random states never travel to the GPU and back."""
    state = load_checkpoint(path)
    try:
        model = model_from_config(state["model_config"])
        problems = compatibility.state_dict_problems(model, state["model"])
        if problems:
            raise ValueError("; ".join(problems))
        model.load_state_dict(state["model"])
    except (KeyError, ValueError, TypeError, RuntimeError) as error:
        reason = str(error).strip().splitlines()[0][:300]
        raise CheckpointError(
            f"{path}: the weights do not fit the stored model configuration ({reason}); "
            "the file is damaged or from another version"
        ) from None
    compatibility.check_class_names(
        Path(path), state.get("class_names"), model.config["num_classes"]
    )
    meta = {key: value for key, value in state.items() if key not in ("model", *TRAINING_KEYS)}
    return model.to(device).eval(), meta
