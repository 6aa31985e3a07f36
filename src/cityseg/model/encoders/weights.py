"""ImageNet weights of the encoders: found inside an installed package, fetched once into torch's
hub cache (hash checked), or read from a file the user gives; loaded strictly, as torch itself
loads them."""

from __future__ import annotations

import importlib.util
import os
import urllib.error
from pathlib import Path

import torch
from torch import nn

from cityseg import environment, limits
from cityseg.errors import ConfigError
from cityseg.model.encoders import ENCODERS, EncoderSpec

MAX_WEIGHTS_BYTES = 2**30  # no published encoder file comes near 1 GiB


def imagenet_state_dict(name: str) -> dict[str, torch.Tensor]:
    """The published ImageNet state dict of encoder ``name`` (with its classifier keys)."""
    spec = ENCODERS[name]
    if spec.package is not None:
        return read_state_dict(_package_file(name, spec))
    return _download(name, spec)


def _package_file(name: str, spec: EncoderSpec) -> Path:
    found = importlib.util.find_spec(spec.package)
    pip_name = spec.package.replace("_", "-")
    if found is None or found.origin is None:
        raise ConfigError(
            f"model.encoder_weights=imagenet: the {name} weights come with the package {pip_name}, "
            f"which is not installed; pip install {pip_name}, or set model.encoder_weights=PATH"
        )
    path = Path(found.origin).parent / spec.file
    if not path.is_file():
        raise ConfigError(
            f"{path}: the {name} weights are missing from the package {pip_name}; "
            f"reinstall it (pip install --force-reinstall {pip_name})"
        )
    return path


def _check_hub_folder() -> None:
    """ConfigError when torch's hub folder would come from an empty or relative ``HOME`` (torch
    would put it at ``/.cache/torch`` or in the working folder)."""
    if environment.absolute_folder("TORCH_HOME") or environment.absolute_folder("XDG_CACHE_HOME"):
        return
    if "HOME" in os.environ and environment.absolute_folder("HOME") is None:
        raise ConfigError(
            "model.encoder_weights=imagenet: HOME is empty or relative, so there is no folder to "
            "keep the downloaded weights in; set TORCH_HOME to one, or give model.encoder_weights="
            "PATH"
        )


def hub_cache_path(url: str) -> Path:
    """Where torch's hub keeps the file of ``url`` (``$TORCH_HOME/hub/checkpoints/NAME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _download(name: str, spec: EncoderSpec) -> dict[str, torch.Tensor]:
    _check_hub_folder()
    cached = hub_cache_path(spec.url)
    try:
        return torch.hub.load_state_dict_from_url(
            spec.url, check_hash=True, weights_only=True, map_location="cpu", progress=True
        )
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise ConfigError(
            f"model.encoder_weights=imagenet: cannot download {spec.url} ({reason}) and it is not "
            f"in the cache {cached}; put the file there, or give model.encoder_weights=PATH"
        ) from None
    except RuntimeError as error:
        if "hash" not in str(error):
            raise ConfigError(
                f"{cached}: not a readable weights file ({error}); delete it and run again"
            ) from None
        raise ConfigError(
            f"{spec.url}: the downloaded file does not match the hash in its name, so it was "
            "not used; try again, or download it yourself and give model.encoder_weights=PATH"
        ) from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.pth``/``.pt`` (read ``weights_only``) or ``.safetensors`` file."""
    path = Path(path)
    where = f"model.encoder_weights={path}"
    problem = limits.regular_file_problem(path, MAX_WEIGHTS_BYTES)
    if problem is not None:
        raise ConfigError(f"{where}: {problem}")
    if not path.is_file():
        raise ConfigError(f"{where}: no such file; give a .pth or .safetensors state dict")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file  # optional dependency

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except ImportError:
        raise ConfigError(f"{where}: reading .safetensors needs pip install safetensors") from None
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same one line
        reason = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
        raise ConfigError(f"{where}: not a readable state dict ({reason})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(
        isinstance(value, torch.Tensor) for value in state.values()
    ):
        raise ConfigError(f"{where}: expected a dict of parameter names to tensors")
    return state


def load_encoder_weights(encoder: nn.Module, name: str, state: dict[str, torch.Tensor]) -> None:
    """Copy ``state`` (published names; the classifier keys are left out) into ``encoder``,
    strictly: every parameter and buffer must be there with its shape, and nothing else.

    The one key that may be absent is a BatchNorm's ``num_batches_tracked``, as torch itself
    allows: torchvision's ResNet files were saved before BatchNorm had that buffer, and torch
    fills it in when a state dict without version metadata (as here, a plain dict) lacks it.
    """
    spec = ENCODERS[name]
    if state and all(key.startswith("encoder.") for key in state):
        state = {key.removeprefix("encoder."): value for key, value in state.items()}
    # A plain dict: no ``_metadata``, so torch treats every BatchNorm as saved before version 2.
    state = {key: value for key, value in state.items() if not key.startswith(spec.head)}
    expected = encoder.state_dict()
    filled = _batch_counters(encoder)
    missing = [key for key in expected if key not in state and key not in filled]
    unexpected = [key for key in state if key not in expected]
    wrong = [
        f"{key} {tuple(state[key].shape)} (expected {tuple(value.shape)})"
        for key, value in expected.items()
        if key in state and state[key].shape != value.shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing, e.g. {missing[:3]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected, e.g. {unexpected[:3]}")
    if wrong:
        problems.append(f"wrong shapes: {wrong[:3]}")
    if problems:
        raise ConfigError(
            f"model.encoder_weights: these are not {name} weights ({'; '.join(problems)})"
        )
    encoder.load_state_dict(state, strict=True)


def _batch_counters(module: nn.Module) -> set[str]:
    """The ``num_batches_tracked`` keys of ``module``'s BatchNorm layers that torch fills in
    when a state dict lacks them (those tracking running statistics)."""
    return {
        f"{name}.num_batches_tracked" if name else "num_batches_tracked"
        for name, layer in module.named_modules()
        if isinstance(layer, nn.modules.batchnorm._NormBase) and layer.track_running_stats
    }
