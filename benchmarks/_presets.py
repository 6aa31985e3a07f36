"""The training configurations the benchmarks compare, by name.

``tiny`` is configs/tiny.yaml's network and batch; ``unet64`` a width-64 U-Net (depth 4,
transposed convolutions, batch 1: the common reference U-Net's defaults) at 128x128,
``unet64-b8`` the same at batch 8;
``pairs`` the shipped model's network and batch (configs/pretrained_pairs.yaml) and ``demo-half``
the same at the demo's first, half-size stage. Each gives the network (ModelConfig fields), the
size and the batch.
"""

from __future__ import annotations

# The network of the shipped pairs model and of the demo (random weights: speed is the same).
LITE0 = {
    "encoder": "efficientnet-lite0",
    "encoder_weights": "none",
    "decoder_widths": [128, 64, 48, 32, 16],
}
UNET64 = {"base_width": 64, "depth": 4, "upsampling": "transpose"}
PRESETS = {
    "tiny": {"model": {"base_width": 16, "depth": 4}, "size": "128x256", "batch_size": 8},
    "unet64": {"model": UNET64, "size": "128x128", "batch_size": 1},
    "unet64-b8": {"model": UNET64, "size": "128x128", "batch_size": 8},
    "pairs": {"model": LITE0, "size": "128x256", "batch_size": 8},
    "demo-half": {"model": LITE0, "size": "64x128", "batch_size": 8},
}


SMOKE = {"model": {"base_width": 4}, "size": (32, 64), "batch_size": 1}


def preset_run(name: str, smoke: bool = False) -> tuple[dict, tuple[int, int], int]:
    """(network fields, (height, width), batch) of preset ``name``; a tiny one in smoke runs."""
    if smoke:
        return SMOKE["model"], SMOKE["size"], SMOKE["batch_size"]
    from _common import parse_size

    preset = PRESETS[name]
    return preset["model"], parse_size(preset["size"]), preset["batch_size"]


def model_config(fields: dict):
    """The cityseg ModelConfig of a preset's network."""
    from cityseg.config import ModelConfig

    return ModelConfig(**fields)


def describe_model(fields: dict) -> str:
    """The network in a few words."""
    if fields.get("encoder", "unet") != "unet":
        return f"U-Net on {fields['encoder']}, decoder {fields.get('decoder_widths')}"
    return (
        f"UNet width {fields.get('base_width', 32)} depth {fields.get('depth', 4)} "
        f"({fields.get('upsampling', 'bilinear')} upsampling)"
    )
