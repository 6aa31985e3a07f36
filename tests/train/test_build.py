"""Starting a run from the weights of another (train.init_from)."""

from __future__ import annotations

import pytest
import torch

from cityseg.errors import CheckpointError, ConfigError
from cityseg.model import UNet, model_from_config
from cityseg.pretrained import pretrained_path
from cityseg.train.build import initialize_from


def test_init_from_a_file_copies_every_weight(tiny_checkpoint):
    torch.manual_seed(1)
    model = UNet(base_width=8, depth=3)
    note = initialize_from(model, str(tiny_checkpoint))
    saved = torch.load(tiny_checkpoint, weights_only=True)["model"]
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, saved[name], rtol=0, atol=0)
    assert str(tiny_checkpoint) in note and "random" not in note


def test_init_from_other_classes_keeps_the_classifier_random(tiny_checkpoint):
    torch.manual_seed(1)
    model = UNet(base_width=8, depth=3, num_classes=5)
    head_before = model.outc.state_dict()
    note = initialize_from(model, str(tiny_checkpoint))
    assert "2 classifier tensors left random" in note
    for name, tensor in model.outc.state_dict().items():
        torch.testing.assert_close(tensor, head_before[name], rtol=0, atol=0)
    saved = torch.load(tiny_checkpoint, weights_only=True)["model"]
    torch.testing.assert_close(
        model.inc.state_dict(),
        {name[len("inc.") :]: tensor for name, tensor in saved.items() if name.startswith("inc.")},
    )


def shipped_network():
    """A random network of the shipped pairs model's architecture."""
    config = torch.load(pretrained_path("pairs"), weights_only=True)["model_config"]
    return model_from_config(config)


def test_init_from_a_shipped_name_reads_the_shipped_file():
    model = shipped_network()
    note = initialize_from(model, "pairs")
    shipped = torch.load(pretrained_path("pairs"), weights_only=True)["model"]
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, shipped[name].to(tensor.dtype), msg=name)
    assert "pairs.pt" in note


def test_a_shipped_name_wins_over_a_folder_without_a_checkpoint(tmp_path, monkeypatch):
    (tmp_path / "pairs").mkdir()  # e.g. the Kaggle pairs data in the working directory
    monkeypatch.chdir(tmp_path)
    assert "pairs.pt" in initialize_from(shipped_network(), "pairs")


def test_init_from_says_what_is_wrong(tiny_checkpoint, tmp_path):
    with pytest.raises(
        ConfigError, match=r"train.init_from=nothing: no such file.*shipped: .*pairs"
    ):
        initialize_from(UNet(base_width=8, depth=3), "nothing")
    with pytest.raises(ConfigError, match=r"another architecture \(model.widths: checkpoint"):
        initialize_from(UNet(base_width=16, depth=3), str(tiny_checkpoint))
    with pytest.raises(CheckpointError, match="checkpoint_best.pt: checkpoint not found"):
        initialize_from(UNet(base_width=8, depth=3), str(tmp_path))  # a folder without a run
