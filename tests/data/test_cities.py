"""Validation by city: the city of every image (official layout and pairs numbering), and
``data.val_cities`` holding out whole cities."""

from __future__ import annotations

import doctest
from pathlib import Path
from types import SimpleNamespace

import pytest

import cityseg.data.cities as cities_module
from cityseg.config import load_config
from cityseg.data.cities import PAIRS_CITIES, city_of
from cityseg.data.loader import held_out_cities, open_splits
from cityseg.data.sample import Sample
from cityseg.errors import ConfigError, DataError
from cityseg.scenes import generate_dataset


def test_the_docstring_examples_run():
    assert doctest.testmod(cities_module).failed == 0


def test_the_official_splits_add_up():
    assert sum(count for _, count in PAIRS_CITIES["train"]) == 2975
    assert sum(count for _, count in PAIRS_CITIES["val"]) == 500


@pytest.mark.parametrize(
    ("number", "city"),
    [(1, "aachen"), (174, "aachen"), (175, "bochum"), (270, "bochum"), (271, "bremen"),
     (2975, "zurich"), (2976, None), (0, None)],
)  # fmt: skip
def test_pairs_numbers_follow_the_official_order(number, city):
    assert city_of(str(number), "pairs", "train") == city


def test_a_pairs_file_not_named_by_a_number_has_no_city():
    assert city_of("photo", "pairs", "train") is None
    assert city_of("12", "pairs", "test") is None


def pairs_like(count: int) -> SimpleNamespace:
    samples = [Sample(Path(f"{n}.jpg"), Path(f"{n}.jpg"), str(n), "pairs") for n in range(1, count)]
    return SimpleNamespace(samples=samples, root=Path("pairs"))


def test_held_out_cities_are_whole_cities():
    dataset = pairs_like(400)  # aachen 1-174, bochum 175-270, bremen 271-399
    held_out = held_out_cities(dataset, "pairs", "train", ["bochum"])
    assert held_out == list(range(174, 270))  # indices of files 175 ... 270


def test_a_city_the_split_does_not_hold_is_one_line():
    with pytest.raises(DataError, match=r"no image of \['zurich'\].*its cities: \['aachen'"):
        held_out_cities(pairs_like(100), "pairs", "train", ["zurich"])


def test_val_cities_must_be_city_names():
    for bad in ("[]", "[Ulm]", "[1]", "ulm"):
        with pytest.raises(ConfigError, match="data.val_cities"):
            load_config(None, [f"data.val_cities={bad}"])


def test_training_holds_out_the_named_cities(tmp_path):
    root = generate_dataset(
        tmp_path, {"train": 6}, 32, 64, cities={"train": ("ulm", "jena", "zurich")}, color=False
    )
    overrides = [f"data.root={root}", "data.val_cities=[jena]", "data.size=[32,64]"]
    config = load_config(None, overrides)
    splits = open_splits(config.data, seed=0)
    assert len(splits.train) == 4 and len(splits.val) == 2
    frames = [splits.val.dataset.samples[i].frame_id for i in splits.val.indices]
    assert {frame.split("_")[0] for frame in frames} == {"jena"}
    assert "cities jena held out of 'train'" in splits.description
