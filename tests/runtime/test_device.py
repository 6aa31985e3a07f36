"""The device a run uses is its only GPU: the current CUDA device is the run's, set before anything
that takes the current one (pinned memory) runs. Checked at the torch.cuda boundary: no GPU here."""

from __future__ import annotations

import torch

from cityseg.runtime.device import use_device
from cityseg.train import run
from cityseg.train.distributed import DistInfo
from tests.helpers import tiny_config, write_scenes


def test_use_device_makes_the_runs_gpu_the_current_one(monkeypatch):
    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    use_device(torch.device("cuda", 1))
    use_device(torch.device("cpu"))
    assert chosen == [torch.device("cuda", 1)]  # the CPU leaves CUDA alone (no context at all)


def test_training_takes_its_device_before_its_loaders_pin_memory(tmp_path, monkeypatch):
    calls = []
    build_loaders = run.build_loaders

    def recording_loaders(*positional, **keywords):
        calls.append(("loaders", keywords["pin_memory"]))
        return build_loaders(*positional, **keywords)

    monkeypatch.setattr(run, "use_device", lambda device: calls.append(("device", device)))
    monkeypatch.setattr(run, "build_loaders", recording_loaders)
    scenes = write_scenes(tmp_path / "scenes", {"train": 4, "val": 2}, 32, 64)
    config = tiny_config(scenes, "data.size=[32, 64]", "train.epochs=1")
    run.build_run(config, tmp_path / "run", DistInfo(), resume=False)
    assert calls == [("device", torch.device("cpu")), ("loaders", False)]
