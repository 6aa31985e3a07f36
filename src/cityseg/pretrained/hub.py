"""Models on the Hugging Face Hub, named ``hf:USER/NAME`` or ``hf:USER/NAME@REVISION``.

A model repository holds ``config.json`` (what rebuilds the network, its normalisation, classes
and training size) and ``model.safetensors`` (the weights): plain data, never a pickle. Both are
downloaded through ``huggingface_hub`` into its cache (``HF_HOME``, ``HF_HUB_CACHE``) and read
from there afterwards; with ``HF_HUB_OFFLINE=1``, or when the Hub cannot be reached, the cached
copy is used. ``HF_ENDPOINT`` points the client at another server. No torch import here.

Example:
    >>> from cityseg.pretrained.hub import parse_hub_name
    >>> parse_hub_name("hf:someone/unet-pairs@v1")
    ('someone/unet-pairs', 'v1')
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from types import ModuleType

from cityseg.errors import CheckpointError, ConfigError

HUB_PREFIX = "hf:"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
MODEL_FILES = (CONFIG_FILE, WEIGHTS_FILE)
"""The files a cityseg model repository must hold to be loaded (the card is for people)."""

INSTALL_HINT = "pip install 'cityseg[hub]' (or pip install huggingface_hub)"
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
_OFFLINE_VALUES = {"1", "ON", "YES", "TRUE"}


def is_hub_name(name: str) -> bool:
    """Whether ``name`` names a model on the Hub (``hf:...``)."""
    return str(name).startswith(HUB_PREFIX)


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` if it reads ``USER/NAME``; ConfigError otherwise."""
    if not _REPO_ID.fullmatch(repo_id) or ".." in repo_id:
        raise ConfigError(
            f"{repo_id!r} is not a Hub repository name; write USER/NAME (letters, digits, "
            "'-', '_', '.'), e.g. someone/unet-cityscapes"
        )
    return repo_id


def parse_hub_name(name: str) -> tuple[str, str | None]:
    """``"hf:USER/NAME@REVISION"`` -> ``("USER/NAME", "REVISION")`` (revision None if absent)."""
    repo_id, _, revision = name.removeprefix(HUB_PREFIX).partition("@")
    check_repo_id(repo_id)
    if "@" in name and not revision:
        raise ConfigError(f"{name}: empty revision after '@'; write hf:USER/NAME@REVISION")
    return repo_id, revision or None


def import_hub() -> ModuleType:
    """The ``huggingface_hub`` package, or ConfigError saying how to install it."""
    try:
        import huggingface_hub
    except ImportError:
        message = f"the Hugging Face Hub needs the huggingface_hub package: {INSTALL_HINT}"
        raise ConfigError(message) from None
    return huggingface_hub


def hub_endpoint() -> str | None:
    """The Hub server: ``HF_ENDPOINT`` as set now (None: the library's default)."""
    return os.environ.get("HF_ENDPOINT") or None


def offline() -> bool:
    """``HF_HUB_OFFLINE`` as set now: use the cache only, never the network."""
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in _OFFLINE_VALUES


def download_hub_model(name: str) -> Path:
    """The local folder holding ``config.json`` and ``model.safetensors`` of the Hub model
    ``name`` (``hf:USER/NAME[@REVISION]``), downloaded into the Hub cache on first use.

    Raises:
        ConfigError: a malformed name, or huggingface_hub is not installed.
        CheckpointError: no such repository, revision or file, or not cached while offline.
    """
    repo_id, revision = parse_hub_name(name)
    hub = import_hub()
    folders = {
        Path(_download(hub, name, repo_id, revision, filename)).parent for filename in MODEL_FILES
    }
    if len(folders) != 1:  # a snapshot changed between the two files: ask again for one commit
        raise CheckpointError(f"{name}: the repository changed during the download; try again")
    return folders.pop()


def _download(hub: ModuleType, name: str, repo_id: str, revision: str | None, filename: str) -> str:
    errors = hub.errors
    try:  # on a network error the library itself falls back to its cached copy
        return hub.hf_hub_download(
            repo_id, filename, revision=revision, endpoint=hub_endpoint(),
            local_files_only=offline(),
        )  # fmt: skip
    except errors.LocalEntryNotFoundError:
        raise CheckpointError(
            f"{name}: {filename} is not in the Hugging Face cache and the Hub cannot be reached"
            + (" (HF_HUB_OFFLINE is set; unset it to download)" if offline() else "")
            + "; connect once to download it"
        ) from None
    except errors.RepositoryNotFoundError:
        raise CheckpointError(
            f"{name}: no such model repository on the Hub (or it is private: log in with "
            "`hf auth login` or set HF_TOKEN)"
        ) from None
    except errors.RevisionNotFoundError:
        raise CheckpointError(f"{name}: no revision {revision!r} in {repo_id}") from None
    except (errors.EntryNotFoundError, getattr(errors, "RemoteEntryNotFoundError", ())):
        raise CheckpointError(
            f"{name}: the repository has no {filename}; it was not written by `cityseg hub push`"
        ) from None
    except errors.HfHubHTTPError as error:
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else "HTTP error"
        raise CheckpointError(f"{name}: the Hub refused the download ({first})") from None
