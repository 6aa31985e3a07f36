"""The blank micro-step of a process whose images were all unreadable (data.skip_bad_samples): the
passes of a normal step in training mode, over no images, changing nothing."""

from __future__ import annotations

import pytest
import torch

from cityseg.train import engine
from cityseg.train.distributed import DistInfo
from cityseg.train.guards import blank_forward_backward
from cityseg.train.run import build_run
from tests.helpers import tiny_config, write_scenes


@pytest.mark.parametrize("encoder", ["unet", "mobilenet_v2"])
def test_the_blank_step_trains_nothing_and_keeps_every_statistic(tmp_path, encoder):
    scenes = write_scenes(tmp_path / "scenes", {"train": 4, "val": 2}, 32, 64)
    model = ["model.encoder=mobilenet_v2", "model.encoder_weights=none"] * (encoder != "unet")
    config = tiny_config(scenes, "data.size=[32, 64]", "model.dropout=0.1", *model)
    run = build_run(config, tmp_path / "run", DistInfo(), resume=False)
    engine.Trainer(run)._start_epoch()
    buffers = {name: b.clone() for name, b in run.raw_model.named_buffers()}
    modes = [module.training for module in run.raw_model.modules()]
    seen = []
    hooks = [
        module.register_forward_pre_hook(lambda m, inputs: seen.append((m.training, inputs[0])))
        for module in run.raw_model.modules()
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm)
    ]
    blank_forward_backward(run.model, run.raw_model, run.scaler, run.channels_last)
    for hook in hooks:
        hook.remove()
    assert seen and all(training and x.shape[0] == 0 for training, x in seen)  # as in training
    assert [module.training for module in run.raw_model.modules()] == modes
    for name, buffer in run.raw_model.named_buffers():
        assert torch.equal(buffer, buffers[name]), name
    gradients = [p.grad for p in run.raw_model.parameters() if p.requires_grad]
    assert gradients and all(g is not None and not g.any() for g in gradients)
