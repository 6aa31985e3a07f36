"""No host synchronisation inside the training step: the losses and counts stay on the device and
are read at the log intervals and the end of an epoch; validation reads its sums once.

On a CPU nothing waits, so the reads are counted: every op that makes a GPU wait for its queue
(``item``, ``bool``, ``float``, ``nonzero``, boolean indexing: ``aten._local_scalar_dense`` and
friends, seen by a dispatch mode) and every ``tolist``, ``numpy`` and ``cpu``.
"""

from __future__ import annotations

import functools

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from cityseg.runtime.normalize import Normalize
from cityseg.runtime.precision import Precision
from cityseg.train import engine
from cityseg.train.distributed import DistInfo
from cityseg.train.run import build_run
from cityseg.train.validation import validation_scores
from tests.helpers import tiny_config, write_scenes

SYNCING_OPS = {
    torch.ops.aten._local_scalar_dense.default,
    torch.ops.aten.is_nonzero.default,
    torch.ops.aten.nonzero.default,
    torch.ops.aten.masked_select.default,
    torch.ops.aten.unique_dim.default,
    torch.ops.aten._unique2.default,
}
HOST_COPIES = ("tolist", "numpy", "cpu")


class DeviceReads(TorchDispatchMode):
    """Counts, while active, the reads that would make the host wait for a GPU."""

    def __init__(self, seen: list[str]) -> None:
        super().__init__()
        self.seen = seen

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in SYNCING_OPS:
            self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.fixture
def reads(monkeypatch):
    """``reads(owner, name)``: the list of the reads made inside ``owner.name`` from now on."""
    active: list[list[str]] = []  # the lists of the functions running now
    for name in HOST_COPIES:
        original = getattr(torch.Tensor, name)

        def copy(self, *args, _original=original, _name=name, **kwargs):
            for seen in active:
                seen.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, copy)

    def watch(owner, name: str) -> list[str]:
        original, seen = getattr(owner, name), []

        @functools.wraps(original)
        def watched(*args, **kwargs):
            active.append(seen)
            try:
                with DeviceReads(seen):
                    return original(*args, **kwargs)
            finally:
                active.remove(seen)

        monkeypatch.setattr(owner, name, watched)
        return seen

    return watch


def test_the_counter_sees_a_read(reads):
    class Probe:
        @staticmethod
        def read(x: torch.Tensor) -> float:
            return float(x.sum()) + len(x.tolist()) + bool(x.any())

    seen = reads(Probe, "read")
    Probe.read(torch.ones(3))
    assert seen.count("tolist") == 1 and len(seen) == 3


@pytest.mark.parametrize(
    ("precision", "loss"),
    [("fp32", []), ("bf16", []), ("fp32", ["loss.ohem_thresh=0.7", "loss.ohem_min_kept=500"])],
)
def test_training_steps_read_nothing_back_between_log_intervals(tmp_path, reads, precision, loss):
    """Eight steps (two epochs) with accumulation, clipping and a weight average (and OHEM): no
    read inside a micro-step or an optimiser step; the log intervals (every 3 steps) read. (SGD:
    Adam keeps its step counts on the host by design, which reads no device.)"""
    scenes = write_scenes(tmp_path / "scenes", {"train": 16, "val": 2}, 32, 64)
    config = tiny_config(
        scenes,
        "data.size=[32, 64]",
        "train.epochs=2",
        "train.batch_size=4",
        "train.accumulate=2",
        "train.optimizer=sgd",
        "train.clip_grad_norm=1.0",
        "train.ema_decay=0.9",
        "train.log_every=3",
        f"train.precision={precision}",
        *loss,
    )
    trainer = engine.Trainer(build_run(config, tmp_path / "run", DistInfo(), resume=False))
    in_micro_steps = reads(engine.Trainer, "micro_step")
    in_steps = reads(engine.Trainer, "step")
    at_log_intervals = reads(engine.Trainer, "on_log_interval")
    trainer.fit()
    assert trainer.iteration == 8  # 2 epochs of 16 images, batch 4 in micro-batches of 2
    assert in_micro_steps == [] and in_steps == []
    assert at_log_intervals  # (steps 3 and 6 read the losses: the counter counts in this run)


def test_validation_reads_its_sums_once_whatever_the_batches(reads):
    """The confusion matrix and the loss sums stay on the device until every batch is done."""
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 19, 1).eval()
    normalize = Normalize([0.5] * 3, [0.25] * 3)
    precision = Precision("fp32", torch.device("cpu"))
    names = [f"class_{i}" for i in range(19)]

    def batches(count: int):
        generator = torch.Generator().manual_seed(1)
        for _ in range(count):
            images = torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8, generator=generator)
            targets = torch.randint(0, 19, (2, 8, 8), dtype=torch.uint8, generator=generator)
            yield images, targets

    class Validation:
        score = staticmethod(validation_scores)

    seen = reads(Validation, "score")
    counts = []
    for count in (1, 5):
        before = len(seen)
        Validation.score(model, batches(count), normalize, precision, names, DistInfo())
        counts.append(len(seen) - before)
    assert counts[0] == counts[1] > 0
