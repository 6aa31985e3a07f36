"""Write a checkpoint as a Hub model folder and push it: ``cityseg hub save`` and ``cityseg hub
push``.

The folder holds ``model.safetensors`` and ``config.json`` (see
:mod:`cityseg.checkpoint.model_folder`) and ``README.md``, the model card
(:func:`cityseg.share.card.model_card`). It loads back with ``--pretrained hf:USER/NAME`` once
pushed, or as a local folder wherever a checkpoint is expected.

Example:
    >>> from cityseg.share.hub import push_model, save_model_folder
    >>> save_model_folder("runs/pairs/checkpoint_best.pt", "pairs-model")  # doctest: +SKIP
    >>> push_model("runs/pairs/checkpoint_best.pt", "someone/unet-pairs")  # doctest: +SKIP
    'https://huggingface.co/someone/unet-pairs/commit/...'
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from cityseg import limits
from cityseg.checkpoint.io import checkpoint_file, load_checkpoint
from cityseg.checkpoint.loading import load_model
from cityseg.checkpoint.model_folder import model_config_json, write_model_folder
from cityseg.errors import CheckpointError, ConfigError, DataError
from cityseg.model.complexity import count_parameters
from cityseg.outputs import prepare_output_folder
from cityseg.pretrained.hub import CARD_FILE, check_repo_id, hub_endpoint, import_hub
from cityseg.share.card import model_card

METRICS_FILE = "metrics.json"
MAX_METRICS_BYTES = 64 * 2**20


def read_evaluation(path: str | Path) -> dict[str, Any]:
    """The ``metrics.json`` of a ``cityseg evaluate`` output folder (or the file itself).

    Raises:
        DataError: no such file, or not the JSON ``cityseg evaluate`` writes.
    """
    path = Path(path)
    file = path / METRICS_FILE if path.is_dir() else path
    if not file.is_file():
        raise DataError(
            f"{file}: no evaluation found; give --eval the folder `cityseg evaluate --out` wrote"
        )
    try:
        metrics = limits.read_json(file, MAX_METRICS_BYTES)
    except (OSError, ValueError) as error:
        raise DataError(f"{file}: {error}; run `cityseg evaluate` again") from None
    if not isinstance(metrics, dict) or not isinstance(metrics.get("classes"), dict):
        raise DataError(f"{file}: not a metrics.json written by `cityseg evaluate`")
    return metrics


def save_model_folder(
    checkpoint: str | Path,
    out: str | Path,
    repo_id: str | None = None,
    evaluation: str | Path | None = None,
) -> list[Path]:
    """Write ``model.safetensors``, ``config.json`` and ``README.md`` of ``checkpoint`` into
    ``out``; return the three paths. The same inputs give the same bytes.

    Args:
        checkpoint: a checkpoint ``.pt``, a run folder or a model folder.
        out: the folder to write (created; the three files are replaced, nothing else touched).
        repo_id: ``USER/NAME`` the card names in its title and commands.
        evaluation: a ``cityseg evaluate`` output folder (its ``metrics.json``), for the card's
            per-class scores.

    Raises:
        CheckpointError: the checkpoint cannot be read, or ``out`` is the checkpoint's folder.
        DataError: ``evaluation`` is not an evaluation.
    """
    out = Path(out)
    source = Path(checkpoint)
    source_file = source if source.is_dir() else checkpoint_file(source)
    if out.exists() and out.resolve() in (source_file.resolve(), source_file.resolve().parent):
        raise CheckpointError(
            f"{out}: is where the checkpoint {checkpoint} lies; choose another --out"
        )
    if repo_id is not None:
        check_repo_id(repo_id)
    metrics = read_evaluation(evaluation) if evaluation is not None else None
    model, _ = load_model(checkpoint)  # checks that the weights fit their network
    state = load_checkpoint(checkpoint)
    card = model_card(model_config_json(state), count_parameters(model), repo_id, metrics)
    prepare_output_folder(out)
    staging = Path(tempfile.mkdtemp(prefix=".cityseg-model-", dir=out))
    try:
        written = write_model_folder(state, staging)
        (staging / CARD_FILE).write_text(card, encoding="utf-8")
        written.append(staging / CARD_FILE)
        for path in written:
            os.replace(path, out / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [out / path.name for path in written]


def push_model(
    checkpoint: str | Path,
    repo_id: str,
    private: bool = False,
    evaluation: str | Path | None = None,
) -> str:
    """Create (or update) the model repository ``repo_id`` on the Hub with the folder of
    :func:`save_model_folder`, in one commit; return the commit's URL.

    Raises:
        ConfigError: huggingface_hub missing, not logged in, or a malformed ``repo_id``.
        CheckpointError: the checkpoint cannot be read.
        DataError: the Hub refused the upload (the message says why).
    """
    check_repo_id(repo_id)
    hub = import_hub()
    token = hub.get_token()
    if not token:
        raise ConfigError(
            "not logged in to the Hugging Face Hub: run `hf auth login` or set HF_TOKEN to a "
            "token with write access (https://huggingface.co/settings/tokens)"
        )
    with tempfile.TemporaryDirectory(prefix="cityseg-push-") as folder:
        files = save_model_folder(checkpoint, folder, repo_id, evaluation)
        api = hub.HfApi(endpoint=hub_endpoint(), token=token)
        operations = [hub.CommitOperationAdd(path.name, str(path)) for path in files]
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
            commit = api.create_commit(
                repo_id, operations, commit_message=f"Upload {Path(checkpoint).name} with cityseg"
            )
        except hub.errors.HfHubHTTPError as error:
            raise DataError(_refusal(repo_id, error)) from None
    return str(commit.commit_url)


def _refusal(repo_id: str, error: Exception) -> str:
    """One line for an HTTP error of the Hub during a push."""
    status = getattr(getattr(error, "response", None), "status_code", None)
    first = str(error).strip().splitlines()[0][:200] if str(error).strip() else "HTTP error"
    if status in (401, 403):
        return (
            f"{repo_id}: the Hub refused the token ({first}); log in again with `hf auth login` "
            "using a token with write access, or push to a repository you own"
        )
    return f"{repo_id}: the Hub refused the upload ({first})"
