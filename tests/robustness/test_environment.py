"""Every environment variable cityseg reads is validated: a value it cannot use is one line naming
the variable and what it accepts (exit 2), never a traceback and never silently ignored; a
distributed job whose peer never joins ends with one line; a dataset too small for a batch is
reported before any step is measured."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cityseg import environment
from cityseg.data.download import base_url, download_cityscapes
from cityseg.errors import ConfigError
from cityseg.train import step_setting
from cityseg.train.distributed import DistInfo, job_from_environment, setup_distributed
from cityseg.train.failures import TrainingFailed
from tests.helpers import cityseg, in_process, train_args, write_scenes
from tests.helpers.ddp import free_port

TORCHRUN = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return write_scenes(tmp_path_factory.mktemp("scenes"), {"train": 4}, 32, 64)


@pytest.fixture
def clean_environment(monkeypatch):
    for name in (*TORCHRUN, "CITYSEG_DIST_TIMEOUT", "CITYSEG_MAX_PIXELS", "CITYSEG_TEST_FAULT"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


BAD = [
    ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two': not a whole number; give a whole number from 1"),
    ({"WORLD_SIZE": "0"}, "WORLD_SIZE='0': out of range; give a whole number from 1"),
    ({"WORLD_SIZE": "-2"}, "WORLD_SIZE='-2': not a whole number"),
    ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 but RANK is not set; start the job's processes with "),
    ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK='2': out of range; give a whole number from 0 to 1"),
    ({"WORLD_SIZE": "2", "RANK": "x"}, "RANK='x': not a whole number"),
    ({"WORLD_SIZE": "4", "RANK": "0", "LOCAL_WORLD_SIZE": "5"}, "LOCAL_WORLD_SIZE='5': out of"),
    ({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "2"}, "LOCAL_RANK='2': out of range"),
    ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_PORT": "99999"}, "MASTER_PORT='99999': out of"),
    ({"CITYSEG_DIST_TIMEOUT": "abc"}, "CITYSEG_DIST_TIMEOUT='abc': not a usable time; give a "),
    ({"CITYSEG_DIST_TIMEOUT": "-1"}, "CITYSEG_DIST_TIMEOUT='-1': not a usable time"),
    ({"CITYSEG_DIST_TIMEOUT": "nan"}, "CITYSEG_DIST_TIMEOUT='nan': not a usable time"),
    ({"CITYSEG_DIST_TIMEOUT": "inf"}, "CITYSEG_DIST_TIMEOUT='inf': not a usable time"),
    ({"CITYSEG_DIST_TIMEOUT": "1e30"}, "CITYSEG_DIST_TIMEOUT='1e30': not a usable time"),
    ({"CITYSEG_MAX_PIXELS": "abc"}, "CITYSEG_MAX_PIXELS='abc': not a whole number; give a "),
    ({"CITYSEG_MAX_PIXELS": "0"}, "CITYSEG_MAX_PIXELS='0': out of range"),
    ({"CITYSEG_MAX_PIXELS": "1e9"}, "CITYSEG_MAX_PIXELS='1e9': not a whole number"),
    ({"CITYSEG_TEST_FAULT": "explode:step"}, "CITYSEG_TEST_FAULT='explode:step': 'explode:step'"),
    ({"CITYSEG_TEST_FAULT": "pause:step:x"}, "CITYSEG_TEST_FAULT='pause:step:x': 'pause:step:x'"),
]


@pytest.mark.parametrize(("variables", "message"), BAD, ids=[str(v) for v, _ in BAD])
def test_a_variable_that_cannot_be_used_is_one_line_naming_it(
    scenes, tmp_path, clean_environment, capsys, variables, message
):
    for name, value in variables.items():
        clean_environment.setenv(name, value)
    assert in_process(*train_args(scenes, tmp_path / "run")) == 2
    err = capsys.readouterr().err
    (line,) = err.strip().splitlines()
    assert line.startswith(f"cityseg train: error: {message}"), line
    assert line.endswith("or unset it") or "torchrun" in line
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_an_empty_variable_counts_as_unset(clean_environment):
    for name in ("WORLD_SIZE", "CITYSEG_DIST_TIMEOUT", "CITYSEG_MAX_PIXELS"):
        clean_environment.setenv(name, "")
    assert job_from_environment() == DistInfo()
    assert environment.seconds("CITYSEG_DIST_TIMEOUT", 600, 10**6) == 600
    assert environment.whole_number("CITYSEG_MAX_PIXELS", 7, 1) == 7


def test_torchrun_variables_give_the_place_in_the_job():
    variables = {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    assert job_from_environment(variables) == DistInfo(3, 1, 4, 2)
    assert job_from_environment({"WORLD_SIZE": "1", "RANK": "junk"}) == DistInfo()


@pytest.mark.parametrize("value", ["12", " 12 ", "0.5", "604800"])
def test_usable_times_are_taken(value):
    assert environment.seconds("T", 600, 604800, {"T": value}) == float(value)


@pytest.mark.parametrize("value", ["١٢", "12abc", "1_000", "+3", "2.0"])
def test_only_plain_whole_numbers_are_taken(value):
    with pytest.raises(ConfigError, match=r"^N=.*: not a whole number; give .*, or unset it$"):
        environment.whole_number("N", 1, environ={"N": value})


@pytest.mark.parametrize("value", ["9" * 19, "9" * 5000])
def test_huge_whole_numbers_are_out_of_range(value):
    with pytest.raises(ConfigError, match=r"^N='9+': out of range; give a whole number of at"):
        environment.whole_number("N", 1, environ={"N": value})


def test_a_peer_that_never_joins_ends_the_job_with_one_line(scenes, tmp_path):
    started = time.monotonic()
    result = cityseg(
        *train_args(scenes, tmp_path / "run"),
        timeout=300,
        WORLD_SIZE="2",
        RANK="0",
        LOCAL_RANK="0",
        LOCAL_WORLD_SIZE="2",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(free_port()),
        CITYSEG_DIST_TIMEOUT="3",
    )
    assert time.monotonic() - started < 240
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "cityseg train: error: the job's 2 processes did not all join within 3 s "
        "(CITYSEG_DIST_TIMEOUT): rank 0 waited at 127.0.0.1:"
    )
    assert last.endswith("or raise CITYSEG_DIST_TIMEOUT")


def refuse_to_measure(*args, **kwargs):
    raise AssertionError("the step setting was measured before the data was checked")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("train.batch_size=8",), "3 training images, fewer than one batch of 8"),
        (
            ("train.batch_size=4", "train.accumulate=4"),
            "train.accumulate=4 is more than the 3 batches of an epoch",
        ),
    ],
)
def test_too_few_images_are_reported_before_the_step_setting_is_measured(
    scenes, tmp_path, monkeypatch, capsys, overrides, message
):
    monkeypatch.setattr(step_setting, "fastest_setting", refuse_to_measure)
    auto = ("train.precision=auto", "train.channels_last=auto", "train.deterministic=false")
    assert in_process(*train_args(scenes, tmp_path / "run", *auto, *overrides)) == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


def test_with_enough_images_the_same_run_measures_its_step_setting(scenes, tmp_path, monkeypatch):
    """(The control of the test above: its configuration is one that measures.)"""
    measured = []

    def first_setting(key, settings, make_step, folder=None, planned_steps=None):
        measured.append(settings)
        return settings[0], ""

    monkeypatch.setattr(step_setting, "fastest_setting", first_setting)
    auto = ("train.precision=auto", "train.channels_last=auto", "train.deterministic=false")
    auto += ("train.max_iterations=1",)
    assert in_process(*train_args(scenes, tmp_path / "run", *auto)) == 0
    assert len(measured) == 1 and len(measured[0]) > 1


@pytest.mark.parametrize("url", ["abc", "ftp://mirror", "https://", "www.example.com"])
def test_a_download_address_that_is_not_http_is_one_line_before_anything_is_made(
    monkeypatch, tmp_path, url
):
    monkeypatch.setenv("CITYSEG_CITYSCAPES_URL", url)
    with pytest.raises(ConfigError) as error:
        download_cityscapes(tmp_path / "out", session=object())
    assert error.value.problems == [
        f"CITYSEG_CITYSCAPES_URL={url!r}: not an http(s) address; give one such as "
        "https://www.cityscapes-dataset.com, or unset it"
    ]
    assert not (tmp_path / "out").exists()


def test_an_empty_download_address_is_the_official_site(monkeypatch):
    monkeypatch.setenv("CITYSEG_CITYSCAPES_URL", "")
    assert base_url() == "https://www.cityscapes-dataset.com"
    monkeypatch.setenv("CITYSEG_CITYSCAPES_URL", "http://127.0.0.1:8000/")
    assert base_url() == "http://127.0.0.1:8000"


@pytest.mark.parametrize(
    ("value", "raised"), [("1", True), ("yes", True), ("0", False), ("", False)]
)
def test_the_traceback_switch_is_off_at_zero(scenes, tmp_path, monkeypatch, capsys, value, raised):
    monkeypatch.setenv("CITYSEG_TRACEBACK", value)
    monkeypatch.setenv("CITYSEG_TEST_FAULT", "raise:forward")
    args = train_args(scenes, tmp_path / "run", "train.max_iterations=1")
    if raised:
        with pytest.raises(RuntimeError, match="fault injected at forward"):
            in_process(*args)
    else:
        assert in_process(*args) == 1
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert "internal error: RuntimeError: fault injected" in line
        Path(line.split("the full traceback is in ")[1].split(";")[0]).unlink()


def test_a_rank_that_finds_no_one_at_the_address_ends_with_one_line(clean_environment):
    port = free_port()  # nobody listens there
    for name, value in {
        "WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "CITYSEG_DIST_TIMEOUT": "2",
    }.items():  # fmt: skip
        clean_environment.setenv(name, value)
    with pytest.raises(TrainingFailed) as error:
        setup_distributed("cpu")
    (problem,) = error.value.problems
    assert problem.startswith(
        "the job's 2 processes did not all join within 2 s (CITYSEG_DIST_TIMEOUT): rank 1 "
        f"waited at 127.0.0.1:{port} ("
    )


def test_a_job_without_its_address_is_one_line(clean_environment):
    for name, value in {"WORLD_SIZE": "2", "RANK": "0"}.items():
        clean_environment.setenv(name, value)
    with pytest.raises(ConfigError, match="MASTER_ADDR expected, but not set; start the job with"):
        setup_distributed("cpu")


@pytest.mark.parametrize("home", ["", "relative/home"])
def test_imagenet_weights_never_go_to_a_folder_made_of_an_empty_home(monkeypatch, home):
    from cityseg.errors import ConfigError
    from cityseg.model.encoders.weights import imagenet_state_dict

    for name in ("TORCH_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", home)
    with pytest.raises(ConfigError, match="HOME is empty or relative.*set TORCH_HOME"):
        imagenet_state_dict("resnet18")  # a downloaded encoder's weights
