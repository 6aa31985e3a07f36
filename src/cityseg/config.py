"""Training configuration: dataclasses, YAML files and ``section.key=value`` overrides.

A configuration has four sections, ``data``, ``model``, ``loss`` and ``train``, each a dataclass
below whose field docstrings are the reference for every key. A YAML file gives any subset of the
keys; the command line overrides any of them with ``section.key=value``, the value read as YAML
(``train.lr=0.01``, ``data.size=[128,256]``, ``train.max_iterations=null``).

YAML is read with ``yaml.safe_load``'s rules and three bounds: a key given twice in one mapping is
an error (YAML would keep the last one silently), and the document may expand to at most
:data:`MAX_YAML_VALUES` values nested at most :data:`MAX_YAML_DEPTH` deep, counted before anything
walks it: anchors and aliases repeat what they name, and a few hundred bytes of aliases of aliases
(a "billion laughs") stand for 10^9 values. Messages show at most a few dozen characters of any
value given.

Example:
    >>> from cityseg.config import load_config
    >>> config = load_config(None, ["train.lr=1e-3", "data.size=[128, 256]"])
    >>> config.train.lr, config.data.size
    (0.001, [128, 256])

No torch import here: the CLI reads configurations before it starts the heavy machinery.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from cityseg import architectures, limits
from cityseg.errors import ConfigError
from cityseg.sizes import MAX_SIDE


@dataclass
class DataConfig:
    """Where the images come from and how they are augmented."""

    root: str | None = None
    """Dataset folder (official Cityscapes layout or Kaggle pairs)."""
    format: Literal["auto", "cityscapes", "pairs"] = "auto"
    train_split: str = "train"
    val_split: str | None = "val"
    """Validation split; when the dataset lacks it, ``val_fraction`` of train is held out."""
    val_fraction: float = 0.1
    """Fraction of the training split held out for validation (chosen by ``train.seed``) when
    ``val_split`` does not exist (the pairs format has no val split); 0 = no validation."""
    val_cities: list[str] | None = None
    """Cities of the training split held out for validation, instead of ``val_fraction``, when
    ``val_split`` does not exist: validation then sees streets no training image shows (for pairs,
    the city of each file number comes from the official file order, :mod:`cityseg.data.cities`)."""
    rare_class_sampling: float | None = None
    """Rare-class sampling (DAFormer, Hoyer et al. 2022) at this temperature (e.g. 0.01); null =
    off (every image once an epoch). Each draw picks a class c with probability proportional to
    exp((1 - f_c) / T), f_c the share of class c among the labelled training pixels, then an image
    holding c; an epoch is as many draws as there are images. The per-image class counts are
    computed once and kept in the run folder."""
    rare_class_min_pixels: int | None = None
    """With ``rare_class_sampling``: an image is drawn for class c only when c covers more than
    this many of its pixels at ``data.size`` (fewer are often label noise: the pairs' JPEG
    colours); null = 0.15% of them, the share DAFormer's 3000 pixels are of a 1024x2048 frame."""
    max_images: int | None = None
    """Use at most this many training images (a random subset chosen by ``train.seed``)."""
    max_val_images: int | None = None
    """Validate on at most this many images (the first ones of the validation set)."""
    size: list[int] | None = field(default_factory=lambda: [256, 512])
    """[H, W] every image is resized to before augmentation, and validation images too;
    null keeps the native size."""
    crop: list[int] | None = None
    """[H, W] of the random training crop; null = ``size`` (then scaling only pads or crops)."""
    scale: list[float] = field(default_factory=lambda: [0.75, 1.25])
    """[min, max] random scale factor applied on top of ``size``."""
    hflip: float = 0.5
    """Probability of a horizontal flip."""
    rotation: float = 0.0
    """Maximum rotation in degrees (uniform in [-rotation, rotation])."""
    color_jitter: float = 0.0
    """Strength of brightness, contrast and saturation jitter (each factor in [1-s, 1+s])."""
    workers: int | Literal["auto"] = "auto"
    """DataLoader workers per process; "auto" = cores per process minus one, at most 8 (none
    for a ``cache`` on the CPU: its items cost less than a worker beside the training threads)."""
    skip_bad_samples: bool = False
    """A training or validation sample that cannot be read stops the run with its file name;
    true skips it instead (with a warning naming it) and counts it in the epoch summary."""
    cache: str | None = None
    """Folder made by ``cityseg data prepare ROOT --out CACHE --size HxW``: the images decoded and
    resized once (at ``size``), read instead of the PNG/JPEG files; checked against ``root``."""

    @property
    def training_size(self) -> list[int] | None:
        """[H, W] of the training batches: ``crop``, or ``size`` when there is no crop (None when
        both are null, which the checks refuse)."""
        return self.crop or self.size


ENCODERS = Literal[architectures.ENCODER_NAMES]
UNET_ONLY_KEYS = ("base_width", "depth", "widths")


@dataclass
class ModelConfig:
    """The network: the plain U-Net (:class:`cityseg.model.UNet`, ``encoder: unet``) or a U-Net
    decoder on an ImageNet-pretrained encoder (:class:`cityseg.model.EncoderUNet`)."""

    encoder: ENCODERS = "unet"
    """"unet" (trained from scratch) or a pretrained encoder: efficientnet-lite0/1/2 (weights
    installed with cityseg), resnet18/34/50 or mobilenet_v2 (torchvision's published weights,
    downloaded once into torch's hub cache)."""
    encoder_weights: str | None = None
    """Weights of a pretrained encoder: "imagenet" (the default for one), "none" (random), or a
    path to a .pth / .safetensors state dict with the published parameter names."""
    decoder_widths: list[int] | None = None
    """Channels of the five decoder blocks of a pretrained encoder's U-Net, from stride 16 to 1;
    null = [256, 128, 64, 32, 16]."""
    in_channels: int = 3
    num_classes: int = 19
    base_width: int = 32
    """Plain U-Net: channels of the first level (doubling at each of ``depth`` levels)."""
    depth: int = 4
    widths: list[int] | None = None
    """Plain U-Net: channels of every level; replaces ``base_width`` and ``depth``."""
    convs_per_block: int = 2
    norm: Literal[architectures.NORMS] = "batch"
    upsampling: Literal[architectures.UPSAMPLINGS] = "bilinear"
    dropout: float = 0.0
    final_kernel: int = 1

    def model_kwargs(self) -> dict[str, Any]:
        """The network's constructor arguments (``cityseg.model.model_from_config(kwargs)``)."""
        kwargs = dataclasses.asdict(self)
        del kwargs["encoder_weights"]
        if self.encoder != "unet":
            for key in UNET_ONLY_KEYS:
                del kwargs[key]
            return kwargs
        del kwargs["encoder"], kwargs["decoder_widths"]
        if self.widths is not None:
            del kwargs["base_width"], kwargs["depth"]
        else:
            del kwargs["widths"]
        return kwargs

    def weights(self) -> str | None:
        """``encoder_weights`` resolved: "imagenet" for a pretrained encoder unless set."""
        if self.encoder == "unet":
            return None
        return self.encoder_weights or "imagenet"


@dataclass
class LossConfig:
    """Cross-entropy over trainIds, ignoring 255."""

    class_weights: Literal["none", "auto", "enet", "median"] | list[float] | None = None
    """None/"none"; a list of 19 weights; "enet" (= "auto"): 1 / ln(1.02 + p_c) with p_c the share
    of class c among labelled training pixels (Paszke et al., ENet 2016); "median": median
    frequency balancing, median(f) / f_c with f_c = pixels of c / pixels of the images holding c
    (Eigen & Fergus 2015). Computed once from the training labels and stored in the checkpoint."""
    ohem_thresh: float | None = None
    """Online hard example mining: keep pixels whose true-class probability is below this (e.g.
    0.7), and at least ``ohem_min_kept`` of the hardest ones; null = off."""
    ohem_min_kept: int = 100_000
    """Minimum number of pixels OHEM keeps per batch."""
    label_smoothing: float = 0.0


@dataclass
class TrainConfig:
    """Optimisation, schedule, precision, devices and bookkeeping."""

    epochs: int = 50
    max_iterations: int | None = None
    """Stop after this many optimiser steps; when set, it also fixes the length of the poly and
    cosine schedules (so a run stopped early by ``epochs`` and resumed follows the same curve)."""
    batch_size: int = 8
    """Images per optimiser step in total, over all processes and accumulation steps."""
    accumulate: int = 1
    """Gradient accumulation steps per optimiser step."""
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    """SGD momentum."""
    weight_decay: float = 0.0
    schedule: Literal["poly", "cosine", "plateau", "constant"] = "poly"
    warmup_iterations: int = 0
    """Linear warm-up from 0 over this many steps, for every schedule."""
    poly_power: float = 0.9
    min_lr: float = 0.0
    """Floor of the poly and cosine schedules."""
    plateau_factor: float = 0.5
    """LR multiplier when validation mIoU has not improved for ``plateau_patience`` validations."""
    plateau_patience: int = 3
    early_stopping: int | None = None
    """Stop after this many validations without a better mIoU; null = never."""
    clip_grad_norm: float | None = None
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """auto: bf16 autocast where the hardware computes it (fp16 with a gradient scaler on older
    GPUs), else fp32; on a CPU, the faster of that and fp32 for this network, batch and size,
    measured once per machine (cityseg.train.step_setting)."""
    channels_last: bool | Literal["auto"] = "auto"
    """Channels-last memory layout; auto: on a GPU true, on a CPU the faster, measured as above."""
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    compile: bool = False
    init_from: str | None = None
    """Start from these weights instead of random ones: a checkpoint .pt, a run folder, or the
    name of a shipped model ("pairs"). The model settings must match it, except num_classes
    (the classifier then starts random). A resumed run ignores it."""
    encoder_lr_mult: float = 1.0
    """Learning rate of a pretrained encoder relative to the rest (e.g. 0.1)."""
    freeze_encoder_epochs: int = 0
    """Keep a pretrained encoder (weights and BatchNorm statistics) frozen for the first N
    epochs, so the random decoder does not disturb it."""
    ema_decay: float = 0.0
    """Keep an exponential moving average of the weights (e.g. 0.999; 0 = off): it is what is
    validated, saved as the model and used for inference; the trained weights are kept beside
    it for resuming."""
    sync_bn: bool = False
    """SyncBatchNorm across GPUs (only used with several CUDA processes)."""
    deterministic: bool = False
    seed: int = 0
    val_every: int = 1
    """Validate every this many epochs (and after the last one)."""
    log_every: int = 20
    """Write the training loss to TensorBoard every this many steps."""
    progress: bool = True


@dataclass
class Config:
    """A whole training configuration."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


MAX_YAML_VALUES = 10_000
"""The most values (numbers, strings, lists, mappings) a configuration file or an override may
expand to; a whole configuration has about a hundred."""
MAX_YAML_DEPTH = 32
"""The deepest nesting of lists and mappings in a configuration file or an override."""
MIN_SIDE = architectures.MIN_SIZE
"""The smallest side of ``data.size`` and ``data.crop`` (the networks' smallest input)."""
CITY = re.compile(r"[a-z][a-z0-9-]{0,63}")
"""A city name of ``data.val_cities``: lowercase, as in the official file names."""
MAX_WIDTH = 8192
"""The most channels a level of the network may have."""

SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "loss": LossConfig,
    "train": TrainConfig,
}


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Read a YAML file (or start from the defaults when ``path`` is None) and apply overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        problem = limits.regular_file_problem(path, limits.MAX_CONFIG_BYTES)
        if problem is not None:
            raise ConfigError(f"{path}: {problem}; give a YAML configuration file")
        if not path.is_file():
            raise ConfigError(f"{path}: configuration file not found; give an existing YAML file")
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not a text file (not UTF-8); give a YAML file") from None
        except OSError as error:
            raise ConfigError(f"{path}: cannot be read ({error.strerror or error})") from None
        values = _parse_yaml(text, str(path), "not valid YAML", "fix the file") or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a mapping of sections {list(SECTIONS)}")
    return config_from_dict(apply_overrides(values, overrides), source=str(path or "command line"))


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of a config dict with each ``section.key=value`` applied (the value read as YAML)."""
    values = {
        section: dict(keys) if isinstance(keys, dict) else keys or {}
        for section, keys in values.items()
    }
    for override in overrides:
        where = f"override {_shown(override)}"
        name, equals, text = override.partition("=")
        section, dot, key = name.strip().partition(".")
        if not equals or not dot or not key:
            raise ConfigError(f"{where}: expected section.key=value, e.g. train.lr=0.01")
        _check_key(section, key, where)
        value = _parse_yaml(text, where, "the value is not valid YAML", "")
        if not isinstance(values.setdefault(section, {}), dict):
            raise ConfigError(
                f"{where}: section {_shown(section)} of the file is not a mapping of keys"
            )
        values[section][key] = value
    return values


def _parse_yaml(text: str, where: str, what: str, fix: str) -> Any:
    """``text`` read as YAML with ``yaml.safe_load``'s rules, a key given twice refused and the
    document's expanded size bounded; any failure a ConfigError starting with ``where``: ``what``
    (the reason) and ``fix``, or the bound that was passed."""
    try:
        value = yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as error:
        reason = " ".join(str(error).split())[:200]
    except (ValueError, TypeError, RecursionError, OverflowError) as error:  # odd scalars
        reason = f"{type(error).__name__}: {error}"[:200]
    else:
        _check_expansion(value, where)
        return value
    raise ConfigError(f"{where}: {what} ({reason}){'; ' + fix if fix else ''}")


class _ConfigLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """``yaml.safe_load``'s loader (LibYAML's when installed), refusing a key given twice in a
    mapping: the YAML specification forbids it, and the loader would keep the last silently."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[tuple[str, str], yaml.Node] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue  # a merge key ("<<") may override on purpose
            first = seen.setdefault((key_node.tag, key_node.value), key_node)
            if first is not key_node:
                raise yaml.YAMLError(
                    f"the key {_shown(key_node.value)} is given twice, on lines "
                    f"{first.start_mark.line + 1} and {key_node.start_mark.line + 1}"
                )
        return super().construct_mapping(node, deep)


def _check_expansion(value: Any, where: str) -> None:
    """Raise ConfigError if ``value`` expands to more than MAX_YAML_VALUES values or nests deeper
    than MAX_YAML_DEPTH (an alias that contains itself nests without end). Each list or mapping is
    counted once however many aliases share it, so the count costs what the text holds."""
    counted: dict[int, int] = {}

    def count(item: Any, depth: int) -> int:
        if not isinstance(item, (list, dict)):
            return 1
        if depth > MAX_YAML_DEPTH:
            raise ConfigError(
                f"{where}: lists and mappings nested more than {MAX_YAML_DEPTH} deep (or an "
                "alias that contains itself); write the values out"
            )
        if id(item) not in counted:
            children = item.values() if isinstance(item, dict) else item
            counted[id(item)] = 1 + sum(count(child, depth + 1) for child in children)
        return counted[id(item)]

    total = count(value, 0)
    if total > MAX_YAML_VALUES:
        raise ConfigError(
            f"{where}: expands to {total:,} values, more than the {MAX_YAML_VALUES:,} a "
            "configuration may hold (anchors and aliases repeating one another); write the "
            "values out"
        )


def _shown(value: Any) -> str:
    """``repr(value)``, cut for a message (a value may be a list of thousands)."""
    return _cut(repr(value))


def _cut(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters, its last one kept (a closing quote or bracket)."""
    return text if len(text) <= limit else f"{text[: limit - 4]}...{text[-1]}"


def config_from_dict(values: dict[str, Any], source: str = "config") -> Config:
    """Build a checked :class:`Config` from a plain dict; raise ConfigError naming each bad key."""
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: expected a mapping of sections {list(SECTIONS)}")
    problems, sections = [], {}
    for section, keys in values.items():
        if section not in SECTIONS:
            problems.append(f"{source}: unknown section {_shown(section)}; valid: {list(SECTIONS)}")
            continue
        if not isinstance(keys, dict):
            problems.append(f"{source}: section {_shown(section)} must be a mapping of keys")
            continue
        sections[section] = _section_from_dict(section, keys, source, problems)
    if problems:
        raise ConfigError(*problems)
    config = Config(**sections)
    check_config(config)
    return config


def config_to_dict(config: Config) -> dict[str, Any]:
    """The configuration as a plain, YAML- and checkpoint-safe dict."""
    return dataclasses.asdict(config)


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved configuration as YAML."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))


NUM_CLASSES = 19  # the Cityscapes training classes (trainIds 0-18) every reader yields
IMAGE_CHANNELS = 3  # every reader yields RGB


def check_config(config: Config) -> None:
    """Raise ConfigError naming every value that makes no sense: not finite, out of range, or
    inconsistent with another value or with the data cityseg reads (19 classes, RGB)."""
    problems = _nonfinite(config)
    if not problems:  # ranges of NaN would only confuse
        problems = _check_data(config.data) + _check_model(config) + _check_train(config)
    if problems:
        raise ConfigError(*problems)


def _nonfinite(config: Config) -> list[str]:
    problems = []
    for section in SECTIONS:
        for key, value in dataclasses.asdict(getattr(config, section)).items():
            values = value if isinstance(value, list) else [value]
            if any(isinstance(v, float) and not math.isfinite(v) for v in values):
                problems.append(f"{section}.{key}: must be a finite number, got {_shown(value)}")
    return problems


def _range(name: str, value: float | None, low: float, high: float = math.inf,
           low_open: bool = False, high_open: bool = False) -> list[str]:  # fmt: skip
    """``["name: expected a value in [low, high], got value"]`` when it lies outside."""
    if value is None:
        return []
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if above and below:
        return []
    bounds = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    return [f"{name}: expected a value in {bounds}, got {_shown(value)}"]


def _check_data(data: DataConfig) -> list[str]:
    problems = []
    for name in ("size", "crop"):
        size = getattr(data, name)
        if size is not None and (
            len(size) != 2 or not MIN_SIDE <= min(size) <= max(size) <= MAX_SIDE
        ):
            problems.append(
                f"data.{name}: expected [H, W] with each side from {MIN_SIDE} to {MAX_SIDE}, "
                f"got {_shown(size)}"
            )
        elif size is not None:
            problems += _pixels(f"data.{name} {size}", size)
    if data.size is None and data.crop is None:
        problems.append("data.size and data.crop are both null; set one so batches share a size")
    if len(data.scale) != 2 or not 0 < data.scale[0] <= data.scale[1]:
        problems.append(
            f"data.scale: expected [min, max] with 0 < min <= max, got {_shown(data.scale)}"
        )
    elif not problems and data.size is not None:
        largest = [round(side * data.scale[1]) for side in data.size]
        what = f"data.size {data.size} x data.scale max {data.scale[1]:g} = {largest}"
        if max(largest) > MAX_SIDE:
            problems.append(f"{what}: a side above {MAX_SIDE}; choose a smaller data.scale max")
        else:
            problems += _pixels(what, largest)
        if data.crop is not None and (data.crop[0] > largest[0] or data.crop[1] > largest[1]):
            problems.append(
                f"data.crop {data.crop} is larger than the largest scaled image {largest} "
                f"(data.size {data.size} x data.scale max {data.scale[1]:g}): the crops would "
                "be mostly padding; choose a smaller data.crop or a larger data.size"
            )
    problems += _range("data.val_fraction", data.val_fraction, 0, 1, high_open=True)
    if data.val_cities is not None and (
        not data.val_cities or not all(CITY.fullmatch(city) for city in data.val_cities)
    ):
        problems.append(
            f"data.val_cities: expected a list of city names in lowercase (e.g. [ulm, zurich]), "
            f"got {_shown(data.val_cities)}"
        )
    problems += _range("data.rare_class_sampling", data.rare_class_sampling, 0, low_open=True)
    problems += _range("data.rare_class_min_pixels", data.rare_class_min_pixels, 0, MAX_SIDE**2)
    problems += _range("data.hflip", data.hflip, 0, 1)
    problems += _range("data.color_jitter", data.color_jitter, 0, 1, high_open=True)
    problems += _range("data.rotation", data.rotation, 0, 180)
    problems += _range("data.max_images", data.max_images, 1)
    problems += _range("data.max_val_images", data.max_val_images, 1)
    if data.workers != "auto":
        problems += _range("data.workers", data.workers, 0, 64)
    return problems


def _pixels(what: str, size: list[int]) -> list[str]:
    """``[what: too many pixels ...]`` when an image of ``size`` [H, W] passes the pixel limit
    every decoded image keeps (``CITYSEG_MAX_PIXELS``)."""
    limit = limits.max_pixels()
    if size[0] * size[1] <= limit:
        return []
    return [
        f"{what}: {size[0] * size[1]:,} pixels an image, more than the {limit:,} pixel limit; "
        "choose a smaller size, or raise CITYSEG_MAX_PIXELS"
    ]


def _check_model(config: Config) -> list[str]:
    model, loss, problems = config.model, config.loss, []
    if model.in_channels != IMAGE_CHANNELS:
        problems.append(
            f"model.in_channels={model.in_channels}: the training images are RGB; "
            f"set model.in_channels={IMAGE_CHANNELS}"
        )
    if model.num_classes != NUM_CLASSES:
        problems.append(
            f"model.num_classes={model.num_classes}: the data has the {NUM_CLASSES} Cityscapes "
            f"training classes (trainIds 0-18); set model.num_classes={NUM_CLASSES}"
        )
    if model.encoder == "unet" and model.encoder_weights not in (None, "none"):
        problems.append(
            f"model.encoder_weights={model.encoder_weights}: the plain U-Net (model.encoder=unet) "
            "has no pretrained weights; choose a pretrained model.encoder or leave it unset"
        )
    if model.decoder_widths is not None and (
        len(model.decoder_widths) != architectures.DECODER_BLOCKS or min(model.decoder_widths) < 1
    ):
        problems.append(
            f"model.decoder_widths: expected {architectures.DECODER_BLOCKS} positive widths "
            "(strides 16 to 1), "
            f"got {_shown(model.decoder_widths)}"
        )
    for name, largest in (("base_width", 1024), ("depth", 10), ("convs_per_block", 8)):
        problems += _range(f"model.{name}", getattr(model, name), 1, largest)
    for name in ("widths", "decoder_widths"):
        if max(getattr(model, name) or [0]) > MAX_WIDTH:
            widths = _shown(getattr(model, name))
            problems.append(f"model.{name}: widths above {MAX_WIDTH} channels, got {widths}")
    widest = model.base_width * 2 ** min(model.depth, 64)
    if model.encoder == "unet" and model.widths is None and widest > MAX_WIDTH:
        problems.append(
            f"model.base_width={model.base_width} and model.depth={model.depth}: the deepest level "
            f"would have {model.base_width} x 2^{model.depth} = {widest:,} channels, more than "
            f"{MAX_WIDTH}; choose a smaller model.base_width or model.depth"
        )
    problems += _range("model.dropout", model.dropout, 0, 1, high_open=True)
    if model.final_kernel not in architectures.FINAL_KERNELS:
        kernels = " or ".join(str(kernel) for kernel in architectures.FINAL_KERNELS)
        problems.append(f"model.final_kernel: expected {kernels}, got {_shown(model.final_kernel)}")
    depth = len(model.widths) - 1 if model.widths else model.depth
    side = min(config.data.training_size or [0])
    unet = model.encoder == architectures.PLAIN_UNET
    if unet and side and depth >= 1 and architectures.total_stride(model.encoder, depth) > side:
        problems.append(
            f"model.depth={depth}: the network halves the image {depth} times (to 1/{2**depth}), "
            f"more than the {side}-pixel side of the training images allows; choose "
            f"model.depth <= {int(math.log2(side))}"
        )
    if isinstance(loss.class_weights, list):
        if len(loss.class_weights) != model.num_classes:
            problems.append(
                f"loss.class_weights: {len(loss.class_weights)} weights given for "
                f"{model.num_classes} classes"
            )
        if min(loss.class_weights, default=0) < 0 or sum(loss.class_weights) <= 0:
            problems.append(
                "loss.class_weights: weights must be >= 0 and not all 0, "
                f"got {_shown(loss.class_weights)}"
            )
    problems += _range("loss.ohem_thresh", loss.ohem_thresh, 0, 1, low_open=True)
    problems += _range("loss.ohem_min_kept", loss.ohem_min_kept, 1)
    problems += _range("loss.label_smoothing", loss.label_smoothing, 0, 1, high_open=True)
    return problems


def _check_train(config: Config) -> list[str]:
    train, problems = config.train, []
    for name in ("epochs", "batch_size", "accumulate", "val_every", "log_every"):
        problems += _range(f"train.{name}", getattr(train, name), 1, 10**7)
    problems += _range("train.max_iterations", train.max_iterations, 1)
    problems += _range("train.lr", train.lr, 0, low_open=True)
    problems += _range("train.min_lr", train.min_lr, 0, train.lr, high_open=True)
    problems += _range("train.momentum", train.momentum, 0, 1, high_open=True)
    problems += _range("train.weight_decay", train.weight_decay, 0)
    problems += _range("train.warmup_iterations", train.warmup_iterations, 0)
    problems += _range("train.poly_power", train.poly_power, 0, low_open=True)
    problems += _range("train.plateau_factor", train.plateau_factor, 0, 1, True, True)
    problems += _range("train.plateau_patience", train.plateau_patience, 1)
    problems += _range("train.early_stopping", train.early_stopping, 1)
    problems += _range("train.clip_grad_norm", train.clip_grad_norm, 0, low_open=True)
    problems += _range("train.encoder_lr_mult", train.encoder_lr_mult, 0)
    problems += _range("train.freeze_encoder_epochs", train.freeze_encoder_epochs, 0)
    problems += _range("train.ema_decay", train.ema_decay, 0, 1, high_open=True)
    problems += _range("train.seed", train.seed, 0, 2**63 - 1)
    return problems


def _check_key(section: str, key: str, where: str) -> None:
    if section not in SECTIONS:
        raise ConfigError(
            f"{where}: unknown section {_shown(section)}; valid sections: {list(SECTIONS)}"
        )
    valid = [f.name for f in dataclasses.fields(SECTIONS[section])]
    if key not in valid:
        raise ConfigError(
            f"{where}: unknown key {section}.{_cut(str(key))}; valid keys of {section}: {valid}"
        )


def _section_from_dict(section: str, keys: dict, source: str, problems: list[str]) -> Any:
    cls = SECTIONS[section]
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in keys.items():
        if key not in valid:
            name = f"{section}.{_cut(str(key))}"
            problems.append(f"{source}: unknown key {name}; valid keys of {section}: {valid}")
            continue
        try:
            kwargs[key] = _coerce(value, hints[key])
        except (ValueError, OverflowError) as error:
            problems.append(f"{source}: {section}.{key}: expected {error}, got {_shown(value)}")
    return cls(**kwargs)


def _coerce(value: Any, kind: Any) -> Any:
    """Return ``value`` as type ``kind`` or raise ValueError describing what was expected."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (Union, types.UnionType):
        for member in args:
            try:
                return _coerce(value, member)
            except ValueError:
                pass
        raise ValueError(" or ".join(_describe(member) for member in args))
    if kind is type(None):
        if value is None:
            return None
    elif origin is Literal:
        if value in args:
            return value
    elif origin is list:
        if isinstance(value, (list, tuple)):
            return [_coerce(item, args[0]) for item in value]
    elif kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, int) and abs(value) > 2**1000:
                raise ValueError(_describe(kind))
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ValueError(_describe(kind))
    elif kind is str:
        if isinstance(value, str):
            return value
    raise ValueError(_describe(kind))


def _describe(kind: Any) -> str:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is type(None):
        return "null"
    if origin is Literal:
        return "one of " + ", ".join(repr(arg) for arg in args)
    if origin is list:
        plural = {int: "integers", float: "numbers", str: "strings"}.get(args[0], "values")
        return f"a list of {plural}"
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(member) for member in args)
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[kind]
