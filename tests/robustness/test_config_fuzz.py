"""Configuration files and overrides of any shape (random bytes, encodings, types, nesting) give
a ConfigError of one line per problem, never a traceback."""

from __future__ import annotations

import string

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cityseg.config import SECTIONS, load_config
from cityseg.errors import ConfigError

KEYS = [
    f"{section}.{field}" for section, cls in SECTIONS.items() for field in cls.__dataclass_fields__
]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                    HealthCheck.function_scoped_fixture])  # fmt: skip

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
    st.sampled_from(["nan", ".inf", "-.inf", "1e999", "auto", "imagenet", "[", "{a: 1}"]),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def load_or_refuse(path, overrides=()) -> None:
    try:
        load_config(path, list(overrides))
    except ConfigError as error:
        assert error.problems and all("\n" not in problem for problem in error.problems)


@SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes_as_a_config_file(tmp_path, data):
    path = tmp_path / "config.yaml"
    path.write_bytes(data)
    load_or_refuse(path)


@SETTINGS
@given(st.dictionaries(st.sampled_from([*SECTIONS, "other"]), values, max_size=4))
def test_random_structures_as_a_config_file(tmp_path, document):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    load_or_refuse(path)


@SETTINGS
@given(st.sampled_from(KEYS), values)
def test_random_values_for_every_key_in_a_file(tmp_path, key, value):
    section, name = key.split(".")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({section: {name: value}}))
    load_or_refuse(path)


@SETTINGS
@given(st.sampled_from(KEYS), st.text(alphabet=string.printable, max_size=30))
def test_random_override_text_for_every_key(key, text):
    load_or_refuse(None, [f"{key}={text}"])


@SETTINGS
@given(st.text(max_size=40))
def test_random_override_strings(text):
    load_or_refuse(None, [text])


@pytest.mark.parametrize(
    "text",
    [
        b"\xff\xfe\x00d\x00a\x00t\x00a\x00",  # UTF-16
        b"\x89PNG\r\n\x1a\n\x00\x00",
        b"data: [1, 2]\n",
        b"data: 5\n",
        b"train: !!python/object:os.system {}\n",
        b"[" * 5000,
        b"train:\n  lr: 1e999\n",
        b"model:\n  base_width: 1" + b"0" * 320 + b"\n",
    ],
)
def test_named_bad_files(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_bytes(text)
    with pytest.raises(ConfigError):
        load_config(path, ["data.cache=x"])


def test_a_section_that_is_not_a_mapping_with_an_override(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("data: [1, 2]\n")
    with pytest.raises(ConfigError, match="section 'data' of the file is not a mapping"):
        load_config(path, ["data.size=[64, 64]"])
