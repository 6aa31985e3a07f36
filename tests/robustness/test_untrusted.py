"""Untrusted and incompatible checkpoints: loaded with ``weights_only=True`` only, so a file that
would run code when unpickled is refused (and runs nothing); one made for another model or class
set is refused with a message that says what differs."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from cityseg.checkpoint.format import FORMAT
from cityseg.checkpoint.loading import load_model
from cityseg.errors import CheckpointError
from cityseg.labels import CLASS_NAMES
from tests.helpers import in_process, train_args, write_scenes


class RunsCode:
    """Unpickling this runs ``touch MARKER`` (what a malicious checkpoint would do)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A one-epoch run: (dataset, run folder)."""
    folder = tmp_path_factory.mktemp("trained")
    scenes = write_scenes(folder / "scenes", {"train": 8, "val": 2}, 32, 64)
    assert in_process(*train_args(scenes, folder / "run", "train.epochs=1")) == 0
    return scenes, folder / "run"


@pytest.fixture
def malicious(tmp_path):
    """A checkpoint that is a valid cityseg dict except for one code-running object."""
    marker = tmp_path / "pwned"
    path = tmp_path / "malicious.pt"
    torch.save({"format": FORMAT, "model": {}, "payload": RunsCode(str(marker))}, path)
    return path, marker


def test_the_payload_is_real(malicious):
    """The crafted file does run code when loaded unsafely: the refusal below is what stops it."""
    path, marker = malicious
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_malicious_checkpoint_is_refused_by_every_command(malicious, trained, tmp_path, capsys):
    path, marker = malicious
    scenes, run = trained
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(run / "config.yaml", resumed / "config.yaml")
    shutil.copy(path, resumed / "checkpoint_last.pt")
    photo = next(scenes.glob("leftImg8bit/val/*/*.png"))
    commands = {
        "evaluate": ["evaluate", str(path), "--data", str(scenes), "--out", str(tmp_path / "e")],
        "predict": ["predict", str(path), str(photo), "--out", str(tmp_path / "p")],
        "export": ["export", str(path), "--out", str(tmp_path / "m.onnx")],
        "train": ["train", "--resume", str(resumed)],
    }
    for name, args in commands.items():
        assert in_process(*args) == 2, name
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err
        assert "refused: it holds Python objects" in err and "posix.system" in err, err
    assert not marker.exists()


def test_resume_with_another_model_says_what_differs(trained, tmp_path, capsys):
    scenes, run = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    overrides = ("model.base_width=8", "model.dropout=0.2")
    assert in_process("train", "--resume", str(copy), *overrides) == 2
    err = capsys.readouterr().err
    assert "another model configuration" in err
    assert "model.base_width: checkpoint 4, now 8" in err and "model.dropout: checkpoint 0.1" in err


def test_weights_that_do_not_fit_their_configuration(trained, tmp_path):
    state = torch.load(trained[1] / "checkpoint_last.pt", weights_only=True)
    state["model_config"] = {**state["model_config"], "widths": [4, 8, 32]}
    path = tmp_path / "mismatched.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"do not fit.*shape: .*\(32, 8, 3, 3\)") as caught:
        load_model(path)
    assert "\n" not in str(caught.value)


def test_other_class_names_are_refused(trained, tmp_path):
    state = torch.load(trained[1] / "checkpoint_last.pt", weights_only=True)
    swapped = list(CLASS_NAMES)
    swapped[0], swapped[1] = swapped[1], swapped[0]
    path = tmp_path / "swapped.pt"
    torch.save({**state, "class_names": swapped}, path)
    with pytest.raises(CheckpointError, match="trainId 0: 'sidewalk' \\(expected 'road'\\)"):
        load_model(path)
    torch.save({**state, "class_names": list(CLASS_NAMES[:18])}, path)
    with pytest.raises(CheckpointError, match="18 class names for a model of 19 classes"):
        load_model(path)
    copy = tmp_path / "run"
    shutil.copytree(trained[1], copy)
    torch.save({**state, "class_names": swapped}, copy / "checkpoint_last.pt")
    with pytest.raises(CheckpointError, match="its classes .* differ"):
        from cityseg.config import load_config
        from cityseg.train.engine import train

        train(load_config(copy / "config.yaml"), copy, resume=True)
