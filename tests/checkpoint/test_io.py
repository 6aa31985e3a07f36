"""Checkpoints: atomic writes, safe loading, clear errors, random generator states."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from cityseg.checkpoint import io as ckpt
from cityseg.checkpoint import random_state
from cityseg.checkpoint.format import FORMAT
from cityseg.checkpoint.loading import load_model
from cityseg.errors import CheckpointError
from cityseg.labels import CLASS_NAMES
from cityseg.model import UNet


def minimal_state(model: UNet) -> dict:
    return {
        "format": FORMAT,
        "model_config": model.config,
        "model": model.state_dict(),
        "class_names": list(CLASS_NAMES),
        "optimizer": {"state": {}},
        "rng": random_state.capture_rng_state(),
    }


def test_save_then_load_model_with_weights_only(tmp_path):
    model = UNet(base_width=4, depth=2).eval()
    path = tmp_path / "checkpoint.pt"
    ckpt.save_checkpoint(path, minimal_state(model))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary left
    torch.load(path, weights_only=True)  # loadable without unpickling code
    loaded, meta = load_model(path)
    assert not loaded.training and "model" not in meta and "optimizer" not in meta
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(loaded(x), model(x))
    (tmp_path / "checkpoint.pt").rename(tmp_path / "checkpoint_last.pt")
    assert load_model(tmp_path)[1]["format"] == FORMAT  # a run folder works too


def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    ckpt.save_checkpoint(path, {"format": FORMAT, "epoch": 1})

    def crash(state, file):
        file.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        ckpt.save_checkpoint(path, {"format": FORMAT, "epoch": 2})
    monkeypatch.undo()
    assert ckpt.load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_missing_corrupt_and_foreign_files_are_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="corrupt.pt: not a readable cityseg checkpoint"):
        load_model(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="foreign.pt: not a cityseg checkpoint"):
        load_model(foreign)
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"format": FORMAT, "thing": object()}, unsafe)
    with pytest.raises(CheckpointError, match="unsafe.pt"):
        load_model(unsafe)
    mismatched = tmp_path / "mismatched.pt"
    state = minimal_state(UNet(base_width=4, depth=2))
    state["model_config"] = UNet(base_width=8, depth=2).config
    ckpt.save_checkpoint(mismatched, state)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(mismatched)


def test_error_messages_are_one_line(tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 broken zip")
    with pytest.raises(CheckpointError) as error:
        ckpt.load_checkpoint(corrupt)
    assert len(error.value.problems) == 1 and "\n" not in error.value.problems[0]


def test_random_states_round_trip_through_a_safe_checkpoint(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    np.random.normal()  # leaves a cached gaussian in numpy's legacy state
    path = tmp_path / "rng.pt"
    ckpt.save_checkpoint(path, {"format": FORMAT, "rng": random_state.capture_rng_state()})
    expected = (torch.rand(3), np.random.rand(3), np.random.normal(), random.random())
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    random_state.restore_rng_state(torch.load(path, weights_only=True)["rng"])
    again = (torch.rand(3), np.random.rand(3), np.random.normal(), random.random())
    assert torch.equal(expected[0], again[0])
    np.testing.assert_array_equal(expected[1], again[1])
    assert expected[2:] == again[2:]


def test_random_states_of_more_gpus_go_back_to_those_visible(monkeypatch):
    """A run saved by a 4-GPU job resumes where one GPU is visible (CUDA_VISIBLE_DEVICES)."""
    state = random_state.capture_rng_state()
    state["cuda"] = [torch.full((16,), index, dtype=torch.uint8) for index in range(4)]
    restored = {}

    def set_rng_state(new_state, device="cuda"):
        index = device if isinstance(device, int) else torch.device(device).index or 0
        if index >= 1:  # as torch does for a GPU that is not there
            raise IndexError("list index out of range")
        restored[index] = new_state

    def set_rng_state_all(new_states):
        for index, new_state in enumerate(new_states):
            set_rng_state(new_state, index)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", set_rng_state)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", set_rng_state_all)
    random_state.restore_rng_state(state)
    assert list(restored) == [0] and torch.equal(restored[0], state["cuda"][0])


def test_load_model_reads_on_the_host_and_moves_only_the_model(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    ckpt.save_checkpoint(path, minimal_state(UNet(base_width=4, depth=2)))
    places = []
    real_load = torch.load

    def recording_load(*args, **kwargs):
        places.append(kwargs.get("map_location"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    model, _ = load_model(path, "meta")  # (a device other than the CPU)
    assert places == ["cpu"] and next(model.parameters()).device.type == "meta"


def test_out_of_memory_while_loading_is_not_a_damaged_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    ckpt.save_checkpoint(path, minimal_state(UNet(base_width=4, depth=2)))

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(torch, "load", out_of_memory)
    with pytest.raises(torch.OutOfMemoryError):
        load_model(path)
