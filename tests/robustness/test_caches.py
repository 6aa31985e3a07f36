"""The speed cache (``speed.json``): a damaged one counts as none, with one warning naming it; a
pipe or device in its place is never opened (it would block); it stays within its size bound;
and its folder never falls back to the root of the file system. The prepared data cache
(``data.cache``): a damaged index or a pipe among its arrays is one line naming the file."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from cityseg.data import cache as cache_module
from cityseg.data.cache import CachedDataset
from cityseg.data.prepare import prepare_cache
from cityseg.errors import DataError
from cityseg.runtime import speed_cache
from cityseg.runtime.speed_cache import MAX_CACHE_BYTES, cache_folder, read_cache
from cityseg.runtime.tuning import StepSetting, fastest_setting
from tests.helpers import cityseg, train_args, write_pairs, write_scenes

FAST, SLOW = StepSetting("fp32", False), StepSetting("fp32", True)


def steps(calls: list[StepSetting]):
    def make_step(setting: StepSetting):
        def step() -> None:
            calls.append(setting)
            time.sleep(0.001 if setting == FAST else 0.01)

        return step

    return make_step


def choose(folder: Path, timeout: float = 60) -> tuple[StepSetting, str]:
    """``fastest_setting`` in a thread: a test that would block fails instead of hanging."""
    result: list = []
    worker = threading.Thread(
        target=lambda: result.append(fastest_setting("net", [SLOW, FAST], steps([]), folder)),
        daemon=True,
    )
    worker.start()
    worker.join(timeout)
    assert result, f"fastest_setting blocked for {timeout} s on {folder / 'speed.json'}"
    return result[0]


DAMAGED = {
    "infinite threads": '{"k": {"setting": {"precision": "fp32", "channels_last": false, '
    '"threads": Infinity}}}',
    "NaN step": '{"k": {"setting": {"precision": "fp32", "channels_last": false}, '
    '"step_ms": {"a": NaN}}}',
    "deep nesting": "[" * 100_000 + "]" * 100_000,
    "a list": "[1, 2]",
    "threads as text": '{"k": {"setting": {"precision": "fp32", "channels_last": false, '
    '"threads": "2"}}}',
    "huge threads": '{"k": {"setting": {"precision": "fp32", "channels_last": false, '
    '"threads": 1e400}}}',
    "not UTF-8": b'{"k": "\xff\xfe"}',
    "truncated": '{"k": {"setting": {"precis',
    "too large": '{"k": "' + "x" * (MAX_CACHE_BYTES + 10) + '"}',
}


@pytest.mark.parametrize("content", DAMAGED.values(), ids=DAMAGED.keys())
def test_a_damaged_cache_counts_as_none_with_one_warning_naming_it(tmp_path, capsys, content):
    path = tmp_path / "speed.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    choice, note = choose(tmp_path)
    assert choice == FAST and f"remembered in {path}" in note
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: {path}: ")
    assert warnings[0].endswith("counted as no speed cache")
    assert read_cache(path) == (json.loads(path.read_text()), None)  # replaced by a sound one


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_pipe_at_the_cache_neither_blocks_nor_is_replaced(tmp_path, capsys):
    path = tmp_path / "speed.json"
    os.mkfifo(path)
    choice, note = choose(tmp_path)
    assert choice == FAST
    assert note.endswith(f"not remembered: {path} is not a regular file; remove it")
    warning = capsys.readouterr().err.strip()
    assert warning == (
        f"warning: {path}: not a regular file (a pipe, device or folder); counted as no speed cache"
    )
    assert path.is_fifo()  # not a file of cityseg's: left as it was


@pytest.mark.parametrize("target", ["/dev/zero", "folder"])
def test_a_device_or_folder_at_the_cache_is_not_read(tmp_path, capsys, target):
    if target == "folder":
        (tmp_path / "speed.json").mkdir()
    elif Path(target).exists():
        (tmp_path / "speed.json").symlink_to(target)
    else:
        pytest.skip(f"no {target}")
    choice, note = choose(tmp_path)
    assert choice == FAST and "not remembered" in note
    assert "not a regular file" in capsys.readouterr().err


def test_the_cache_stays_within_its_bound_dropping_the_oldest(tmp_path, monkeypatch):
    monkeypatch.setattr(speed_cache, "MAX_CACHE_BYTES", 4096)
    for index in range(40):
        assert speed_cache.write_cache(tmp_path / "speed.json", _entries(index + 1)) is None
    known, problem = read_cache(tmp_path / "speed.json")
    assert problem is None and 0 < len(known) < 40
    assert (tmp_path / "speed.json").stat().st_size <= 4096
    assert list(known)[-1] == "key 39"  # the newest kept, the oldest dropped
    assert list(known) == [f"key {i}" for i in range(40 - len(known), 40)]


def _entries(count: int) -> dict:
    setting = {"precision": "fp32", "channels_last": False, "threads": 0}
    return {f"key {i}": {"setting": setting, "step_ms": {"fp32": 1.5}} for i in range(count)}


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"HOME": ""}, None),
        ({"HOME": "relative/home"}, None),
        ({"HOME": "", "XDG_CACHE_HOME": "relative"}, None),
        ({"HOME": "/home/u", "XDG_CACHE_HOME": ""}, "/home/u/.cache/cityseg"),
        ({"HOME": "/home/u", "XDG_CACHE_HOME": "relative"}, "/home/u/.cache/cityseg"),
        ({"HOME": "", "XDG_CACHE_HOME": "/xdg"}, "/xdg/cityseg"),
        ({"HOME": "", "CITYSEG_CACHE_DIR": "/mine"}, "/mine"),
    ],
)
def test_the_cache_folder_ignores_an_empty_or_relative_home(monkeypatch, variables, expected):
    for name in ("HOME", "XDG_CACHE_HOME", "CITYSEG_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert cache_folder() == (Path(expected) if expected else None)


def test_without_a_cache_folder_the_measurement_holds_for_the_run(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for name in ("XDG_CACHE_HOME", "CITYSEG_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", "")
    choice, note = fastest_setting("net", [SLOW, FAST], steps([]), None)
    assert choice == FAST
    assert note.endswith("not remembered: no cache folder (HOME is empty or relative); set "
                         "CITYSEG_CACHE_DIR to a folder to remember it")  # fmt: skip
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_train_with_a_pipe_at_the_speed_cache_finishes(tmp_path):
    scenes = write_scenes(tmp_path / "scenes", {"train": 3}, 32, 64)
    cache = tmp_path / "cache"
    cache.mkdir()
    os.mkfifo(cache / "speed.json")
    result = cityseg(
        *train_args(scenes, tmp_path / "run", "train.max_iterations=1", "train.epochs=1"),
        "train.precision=auto",
        "train.channels_last=auto",
        "train.deterministic=false",  # (a deterministic run takes the rule's setting unread)
        timeout=300,
        CITYSEG_CACHE_DIR=str(cache),
    )
    assert result.returncode == 0, result.stderr
    assert f"warning: {cache / 'speed.json'}: not a regular file" in result.stderr
    assert "Traceback" not in result.stderr


# --- the prepared data cache (data.cache=CACHE): damaged is one line naming the file -----------


@pytest.fixture
def data_cache(tmp_path) -> Path:
    pairs = write_pairs(tmp_path / "pairs", 3, 32)
    prepare_cache(pairs, tmp_path / "cache", size=(16, 32), workers=1)
    return tmp_path / "cache"


def opened(cache: Path, timeout: float = 60):
    """``CachedDataset(cache, "train")`` in a thread: a test that would block fails instead."""
    result: list = []

    def open_it() -> None:
        try:
            result.append(CachedDataset(cache, "train"))
        except Exception as error:  # (handed to the test)
            result.append(error)

    worker = threading.Thread(target=open_it, daemon=True)
    worker.start()
    worker.join(timeout)
    assert result, f"opening {cache} blocked for {timeout} s"
    return result[0]


def _damage(index: dict, damage: str) -> str:
    if damage == "deep nesting":
        return "[" * 100_000 + "]" * 100_000
    if damage == "infinite size":
        return json.dumps(index).replace(json.dumps(index["size"]), "[Infinity, 32]")
    changed = {
        "size as text": {"size": ["16", "32"]},
        "count off": {"count": index["count"] + 5},
        "samples not a list": {"samples": {"a": 1}},
        "sample without image": {"samples": [{"frame_id": "x"}] * index["count"]},
        "no source": {"source": None},
    }[damage]
    return json.dumps({**index, **changed})


DAMAGES = [
    "deep nesting",
    "infinite size",
    "size as text",
    "count off",
    "samples not a list",
    "sample without image",
    "no source",
]


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_cache_index_is_one_line_naming_it(data_cache, damage):
    path = data_cache / "train" / "index.json"
    path.write_text(_damage(json.loads(path.read_text()), damage))
    error = opened(data_cache)
    assert isinstance(error, DataError), repr(error)
    (problem,) = error.problems
    assert problem.startswith(f"{path}: not a cityseg-cache-v1 index (corrupt or from another")


def test_an_oversized_cache_index_is_refused_before_reading(data_cache, monkeypatch):
    monkeypatch.setattr(cache_module, "MAX_INDEX_BYTES", 100)
    error = opened(data_cache)
    assert isinstance(error, DataError)
    assert "MiB limit" in error.problems[0] and "index.json" in error.problems[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_pipe_in_place_of_the_cached_images_does_not_block(data_cache):
    images = data_cache / "train" / "images.npy"
    images.unlink()
    os.mkfifo(images)
    error = opened(data_cache)
    assert isinstance(error, DataError)
    assert error.problems[0].startswith(f"{images}: missing, truncated or not uint8")


@pytest.mark.parametrize("damage", ["pipe", "deep nesting", "count off"])
def test_prepare_over_a_damaged_index_neither_blocks_nor_keeps_it(tmp_path, damage):
    """An index that is still recognisably cityseg's is rebuilt; one that is not (a pipe, not
    JSON) marks no split of cityseg's, which is left as it is, with one line."""
    pairs = write_pairs(tmp_path / "pairs", 3, 32)
    prepare_cache(pairs, tmp_path / "cache", size=(16, 32), workers=1)
    path = tmp_path / "cache" / "train" / "index.json"
    if damage == "pipe":
        path.unlink()
        os.mkfifo(path)
    else:
        path.write_text(_damage(json.loads(path.read_text()), damage))
    result: list = []

    def prepare() -> None:
        try:
            result.append(prepare_cache(pairs, tmp_path / "cache", size=(16, 32), workers=1))
        except DataError as error:
            result.append(error)

    worker = threading.Thread(target=prepare, daemon=True)
    worker.start()
    worker.join(120)
    assert result, "data prepare blocked on the index"
    if damage == "count off":
        assert not result[0][0].up_to_date  # rebuilt
        assert len(CachedDataset(tmp_path / "cache", "train")) == 3
    else:
        assert isinstance(result[0], DataError)
        assert result[0].problems[0].startswith(f"{path.parent}: exists and is not a cache split")


def test_a_pipe_at_a_run_folders_history_is_one_line(tmp_path):
    from cityseg.errors import ConfigError
    from cityseg.train.history import RunHistory

    os.mkfifo(tmp_path / "metrics.jsonl")
    with pytest.raises(ConfigError, match="metrics.jsonl: not a regular file"):
        RunHistory(tmp_path, resume_epoch=1)  # would block on its first append


# --- the one bounded JSON reader of every cache, marker and model folder ------------------------


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"[" + b"1," * 200 + b"1]", "more than the 256 bytes limit"),
        (b"[NaN]", "not valid JSON (NaN is not a JSON number)"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"[" * 200 + b"]" * 200, None),  # within the bound: nested, but fine
    ],
)
def test_read_json_is_bounded_and_says_why(tmp_path, content, reason):
    from cityseg.limits import read_json

    path = tmp_path / "file.json"
    path.write_bytes(content)
    if reason is None:
        assert read_json(path, 1024) is not None
        path.write_bytes(b"[" * 100_000 + b"]" * 100_000)
        with pytest.raises(ValueError, match="nested too deeply"):
            read_json(path, 10**6)
        return
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        read_json(path, 256)


def test_read_json_never_opens_a_pipe_or_folder_for_reading(tmp_path):
    from cityseg.limits import read_json

    os.mkfifo(tmp_path / "pipe.json")
    for path in (tmp_path / "pipe.json", tmp_path):
        with pytest.raises(ValueError, match="not a regular file"):
            read_json(path, 1024)  # returns at once: nothing waits on a writer
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "missing.json", 1024)
