"""One source for the model rules: the encoder registry, the configuration and the networks all
agree with :mod:`cityseg.architectures`."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from cityseg import architectures
from cityseg.config import Config, DataConfig, ModelConfig, check_config
from cityseg.errors import ConfigError
from cityseg.model import ENCODER_NAMES, EncoderUNet, UNet
from cityseg.model.encoders import ENCODERS

SMALL_DECODER = [8, 8, 8, 8, 8]


def test_the_registry_builds_exactly_the_named_encoders_in_order():
    assert tuple(ENCODERS) == architectures.PRETRAINED_ENCODERS
    assert ENCODER_NAMES == architectures.ENCODER_NAMES
    assert ENCODER_NAMES == (architectures.PLAIN_UNET, *ENCODERS)


def test_the_configuration_offers_the_same_choices():
    hints = typing.get_type_hints(ModelConfig)
    assert typing.get_args(hints["encoder"]) == architectures.ENCODER_NAMES
    assert typing.get_args(hints["norm"]) == architectures.NORMS
    assert typing.get_args(hints["upsampling"]) == architectures.UPSAMPLINGS


@pytest.mark.parametrize("depth", [1, 3, 5, 6])
def test_a_unet_pads_to_and_needs_what_the_rules_say(depth):
    model = UNet(base_width=2, depth=depth)
    assert model.multiple == architectures.total_stride("unet", depth) == 2**depth
    assert model.min_size == architectures.min_input_side("unet", depth)
    assert model.min_size == max(architectures.MIN_SIZE, 2**depth)


def test_an_encoder_unet_pads_to_and_needs_what_the_rules_say():
    model = EncoderUNet("mobilenet_v2", decoder_widths=SMALL_DECODER)
    assert model.multiple == architectures.total_stride("mobilenet_v2") == 32
    assert model.min_size == architectures.min_input_side("mobilenet_v2") == 32
    assert len(model.decoder) == architectures.DECODER_BLOCKS


def test_the_default_decoder_and_the_configuration_agree():
    model = EncoderUNet("mobilenet_v2")
    assert model.config["decoder_widths"] == list(architectures.DEFAULT_DECODER_WIDTHS)


@pytest.mark.parametrize(("depth", "side"), [(5, 32), (6, 32), (6, 64), (7, 64), (7, 96)])
def test_the_configuration_refuses_a_depth_exactly_when_the_network_would(depth, side):
    config = Config(data=DataConfig(size=[side, 2 * side]), model=ModelConfig(depth=depth))
    network_refuses = UNet(base_width=2, depth=depth).min_size > side
    if network_refuses:
        with pytest.raises(ConfigError, match=f"model.depth={depth}: the network halves"):
            check_config(config)
    else:
        check_config(config)


@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_final_kernels_are_the_same_for_the_configuration_and_the_network(kernel):
    config = Config(model=ModelConfig(final_kernel=kernel))
    if kernel in architectures.FINAL_KERNELS:
        check_config(config)
        UNet(base_width=2, depth=1, final_kernel=kernel)
        return
    with pytest.raises(ConfigError, match="model.final_kernel: expected 1 or 3, got 5"):
        check_config(config)
    with pytest.raises(ValueError, match="final_kernel must be 1 or 3, got 5"):
        UNet(base_width=2, depth=1, final_kernel=kernel)


def test_an_unknown_encoder_names_every_choice():
    with pytest.raises(ValueError, match=r"encoder must be one of \['unet', 'efficientnet-lite0'"):
        EncoderUNet("vgg16")


@pytest.mark.parametrize(
    ("size", "crop", "expected"),
    [([64, 128], None, [64, 128]), ([64, 128], [32, 48], [32, 48]), (None, [32, 48], [32, 48])],
)
def test_the_training_size_is_the_crop_else_the_size(size, crop, expected):
    data = DataConfig(size=size, crop=crop)
    assert data.training_size == expected
    assert "training_size" not in dataclasses.asdict(data)  # not a key of the configuration
