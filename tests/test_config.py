"""Configuration: YAML files, section.key=value overrides, and the errors a user sees."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cityseg.config import Config, config_from_dict, config_to_dict, load_config, save_config
from cityseg.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_defaults_without_a_file():
    config = load_config(None)
    assert config == Config()
    assert config.train.precision == "auto" and config.data.format == "auto"


@pytest.mark.parametrize("name", ["tiny", "pairs", "cityscapes", "unet_cityscapes"])
def test_shipped_configs_load(name):
    config = load_config(CONFIGS / f"{name}.yaml")
    assert config.train.batch_size >= 1


def test_unet_recipe_matches_the_published_one():
    config = load_config(CONFIGS / "unet_cityscapes.yaml")
    assert config.data.crop == [512, 1024] and config.train.batch_size == 16
    assert (config.train.optimizer, config.train.lr, config.train.momentum) == ("sgd", 0.01, 0.9)
    assert config.train.weight_decay == 5e-4 and config.train.schedule == "poly"
    assert config.train.max_iterations == 160_000


def test_overrides_are_read_as_yaml():
    config = load_config(
        CONFIGS / "tiny.yaml",
        [
            "train.lr=1e-3",  # YAML 1.1 reads this as a string: still a number here
            "data.size=[64, 96]",
            "train.max_iterations=null",
            "train.channels_last=false",
            "data.workers=0",
            "loss.class_weights=auto",
            "data.root=/some/where",
        ],
    )
    assert config.train.lr == 0.001 and isinstance(config.train.lr, float)
    assert config.data.size == [64, 96]
    assert config.train.max_iterations is None
    assert config.train.channels_last is False
    assert config.data.workers == 0
    assert config.loss.class_weights == "auto"
    assert config.data.root == "/some/where"


def test_integer_given_for_a_float_is_accepted():
    assert load_config(None, ["train.lr=1"]).train.lr == 1.0


def test_unknown_key_names_it_and_lists_the_valid_ones():
    with pytest.raises(ConfigError) as error:
        load_config(None, ["train.learning_rate=0.1"])
    message = str(error.value)
    assert "train.learning_rate" in message
    assert "'lr'" in message and "'batch_size'" in message


def test_unknown_section_lists_sections():
    with pytest.raises(ConfigError, match="valid sections.*'data'.*'train'"):
        load_config(None, ["optim.lr=0.1"])


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.epochs=many", "an integer"),
        ("train.epochs=1.5", "an integer"),
        ("train.channels_last=yesplease", "true or false"),
        ("train.precision=fp8", "one of 'auto', 'fp32', 'bf16', 'fp16'"),
        ("data.size=[128, abc]", "a list of integers"),
        ("train.lr=fast", "a number"),
    ],
)
def test_wrong_types_are_config_errors(override, expected):
    with pytest.raises(ConfigError) as error:
        load_config(None, [override])
    key = override.split("=")[0]
    assert key in str(error.value) and expected in str(error.value)


def test_malformed_override():
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, ["lr=0.1"])
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, ["train.lr"])


def test_values_that_cannot_work_together():
    with pytest.raises(ConfigError, match="data.size"):
        load_config(None, ["data.size=[128]"])
    with pytest.raises(ConfigError, match="both null"):
        load_config(None, ["data.size=null"])
    with pytest.raises(ConfigError, match="loss.class_weights"):
        load_config(None, ["loss.class_weights=[1.0, 2.0]"])


def test_yaml_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: 0.1\n  bogus: 1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*train.bogus"):
        load_config(bad)


def test_resolved_config_round_trips(tmp_path):
    config = load_config(CONFIGS / "pairs.yaml", ["train.epochs=3", "data.root=/data"])
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config
    assert config_from_dict(yaml.safe_load((tmp_path / "config.yaml").read_text())) == config
    assert config_to_dict(config)["train"]["epochs"] == 3


def test_model_section_gives_unet_arguments():
    assert "widths" not in load_config(None).model.model_kwargs()
    kwargs = load_config(None, ["model.widths=[8, 16, 32]"]).model.model_kwargs()
    assert kwargs["widths"] == [8, 16, 32] and "base_width" not in kwargs and "depth" not in kwargs
