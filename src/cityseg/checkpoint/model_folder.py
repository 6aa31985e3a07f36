"""A model folder: a checkpoint's network as plain data, the form a Hugging Face Hub repository
holds (see :mod:`cityseg.pretrained.hub`).

* ``config.json``: the format tag ``cityseg-model-v1``, ``model_config`` (rebuilds the network),
  ``class_names``, ``palette``, ``normalization``, ``input_size``, ``crop_size``, and the training
  recipe (``config``, without local paths), ``training`` summary, ``epoch`` and ``iteration``.
* ``model.safetensors``: the weights of ``model_config``'s network, nothing else.

Neither file can hold code, so a folder downloaded from anywhere is safe to read.
:func:`cityseg.checkpoint.io.load_checkpoint` reads such a folder wherever a checkpoint is expected
(evaluate, predict, export, ``train.init_from``), as a checkpoint holding only its inference keys.
Writing the same checkpoint twice gives the same bytes.
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any

from cityseg import limits
from cityseg.checkpoint.format import FORMAT, INFERENCE_KEYS
from cityseg.checkpoint.integrity import nonfinite_tensor
from cityseg.errors import CheckpointError
from cityseg.pretrained.hub import CONFIG_FILE, WEIGHTS_FILE

MODEL_FOLDER_FORMAT = "cityseg-model-v1"
DESCRIPTION_KEYS = ("training", "epoch", "iteration")
"""Keys of a checkpoint that describe its training, kept in ``config.json`` for the model card."""
LOCAL_PATHS = (("data", "root"), ("data", "cache"))
"""Entries of the training configuration that name folders of the machine it was trained on."""
MAX_CONFIG_BYTES = 16 * 2**20


def is_model_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding ``config.json`` and ``model.safetensors``."""
    path = Path(path)
    return path.is_dir() and (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def model_config_json(state: dict[str, Any]) -> dict[str, Any]:
    """The ``config.json`` of a checkpoint ``state``: its inference keys and its description."""
    config = {"format": MODEL_FOLDER_FORMAT}
    config |= {key: state[key] for key in INFERENCE_KEYS if key != "format" and key in state}
    recipe = copy.deepcopy(state.get("config"))
    if isinstance(recipe, dict):
        for section, key in LOCAL_PATHS:
            if isinstance(recipe.get(section), dict):
                recipe[section].pop(key, None)
    config["config"] = recipe
    config |= {key: copy.deepcopy(state[key]) for key in DESCRIPTION_KEYS if key in state}
    if isinstance(config.get("training"), dict):
        config["training"].pop("data", None)  # the validation data's folder on that machine
    return _finite(config)


def _finite(value: Any) -> Any:
    """``value`` with tuples as lists and NaN or infinite numbers as None (JSON has neither)."""
    if isinstance(value, dict):
        return {str(key): _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_model_folder(state: dict[str, Any], folder: str | Path) -> list[Path]:
    """Write ``config.json`` and ``model.safetensors`` of a checkpoint ``state`` into ``folder``
    (created); return the two paths."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    text = json.dumps(model_config_json(state), indent=2, sort_keys=True, allow_nan=False)
    config_path.write_text(text + "\n", encoding="utf-8")
    weights = {name: tensor.detach().cpu().contiguous() for name, tensor in state["model"].items()}
    save_file(weights, str(weights_path), metadata={"format": MODEL_FOLDER_FORMAT})
    umask = os.umask(0)
    os.umask(umask)
    for path in (config_path, weights_path):
        path.chmod(0o666 & ~umask)  # readable as any file the user writes
    return [config_path, weights_path]


def read_model_folder(folder: str | Path) -> dict[str, Any]:
    """A model folder as a checkpoint dict (``format`` ``cityseg-checkpoint-v1``, ``model`` the
    weights, and the keys of ``config.json``), for the readers of checkpoints.

    Raises:
        CheckpointError: a file is missing, too large, not JSON / safetensors, of another
            format, or its weights hold NaN or infinite values.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for path, limit in (
        (config_path, MAX_CONFIG_BYTES),
        (weights_path, limits.MAX_CHECKPOINT_BYTES),
    ):
        problem = limits.regular_file_problem(path, limit)
        if problem is not None:
            raise CheckpointError(f"{path}: {problem}; write the folder with `cityseg hub save`")
    try:
        config = limits.read_json(config_path, MAX_CONFIG_BYTES)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{config_path}: {error}; write it with `cityseg hub save`") from None
    if not isinstance(config, dict) or config.get("format") != MODEL_FOLDER_FORMAT:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise CheckpointError(
            f"{config_path}: not a cityseg model (format {found!r}, expected "
            f"{MODEL_FOLDER_FORMAT!r}); write it with `cityseg hub save` or `cityseg hub push`"
        )
    try:
        weights = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            f"{weights_path}: not a readable safetensors file ({str(error)[:120]}); the download "
            "is damaged: delete it from the Hugging Face cache and load it again"
        ) from None
    tensor = nonfinite_tensor(weights)
    if tensor is not None:
        raise CheckpointError(
            f"{weights_path}: damaged model weights ({tensor} holds NaN or infinite values); "
            "delete it from the Hugging Face cache and load it again, or write it again with "
            "`cityseg hub save`"
        )
    return {**config, "format": FORMAT, "model": weights}
