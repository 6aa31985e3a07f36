"""The run history: metrics.jsonl, and curves.png drawn after validations (not every epoch)."""

from __future__ import annotations

import json

import cityseg.train.history as history_module
from cityseg.train.history import RunHistory


def record(epoch: int, mean_iou: float | None = None) -> dict:
    return {
        "epoch": epoch,
        "iteration": 10 * epoch,
        "train_loss": 1.0 / epoch,
        "mean_iou": mean_iou,
    }


def test_curves_are_drawn_after_validations_and_at_the_end(tmp_path, monkeypatch):
    drawings = []
    monkeypatch.setattr(
        history_module, "plot_curves", lambda records, path: drawings.append(len(records))
    )
    history = RunHistory(tmp_path)
    history.append(record(1))  # the first epoch: drawn at once
    history.append(record(2))  # no validation, drawn a moment ago: not drawn
    history.append(record(3, mean_iou=0.5))  # a validation: drawn
    history.append(record(4))
    assert drawings == [1, 3]
    history.drawn_at -= history_module.CURVES_EVERY_S  # as if half a minute had passed
    history.append(record(5))
    history.append(record(6))
    history.close()  # the end of the run draws what is left
    assert drawings == [1, 3, 5, 6]
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4, 5, 6]
