"""Rare-class sampling: the class probabilities, the draws, their shards and resume, the counts
kept in the run folder, the configuration and a training run with it."""

from __future__ import annotations

import json
import math
import os
import signal

import numpy as np
import pytest
import torch

from cityseg import faults
from cityseg.config import load_config
from cityseg.data import loader
from cityseg.data.loader import RareClassSampler, build_loaders, open_splits, rare_class_sampler
from cityseg.data.prepare import prepare_cache
from cityseg.data.rare_classes import (
    COUNTS_FILE,
    class_probabilities,
    class_totals,
    count_table,
    counts_key,
    draw_epoch,
    load_counts,
    plan_sampling,
    save_counts,
)
from cityseg.errors import ConfigError, DataError
from cityseg.labels import NUM_CLASSES
from tests.helpers import in_process, same_weights, tiny_config, train_args, write_scenes
from tests.helpers.ddp import run_ranks

RCS = "data.rare_class_sampling=0.01"


def table(*rows: dict[int, int], pixels: int = 1000) -> np.ndarray:
    """A count table: one row per image, {class: pixels}, each image ``pixels`` pixels in all."""
    result = np.zeros((len(rows), NUM_CLASSES + 1), np.int64)
    for index, row in enumerate(rows):
        for label, count in row.items():
            result[index, label] = count
        result[index, -1] = pixels
    return result


def test_probabilities_follow_the_formula_on_a_hand_made_histogram():
    counts = table({0: 600, 1: 300}, {0: 500, 2: 80, 3: 20}, {1: 400, 2: 100})
    plan = plan_sampling(counts, temperature=0.1, min_pixels=0)
    total = 600 + 300 + 500 + 80 + 20 + 400 + 100
    shares = {0: 1100 / total, 1: 700 / total, 2: 180 / total, 3: 20 / total}
    assert plan.frequencies[:4] == pytest.approx(list(shares.values()))
    weights = {c: math.exp((1 - f) / 0.1) for c, f in shares.items()}
    expected = [weights[c] / sum(weights.values()) for c in range(4)]
    assert plan.probabilities[:4] == pytest.approx(expected)
    assert plan.probabilities[4:].sum() == 0  # classes no image holds are never drawn
    assert [held.tolist() for held in plan.images[:4]] == [[0, 1], [0, 2], [1, 2], [1]]
    assert plan.probabilities[3] > plan.probabilities[2] > plan.probabilities[1]


def test_a_tiny_temperature_does_not_overflow_and_a_large_one_is_uniform():
    frequencies = np.array([0.5, 0.3, 0.2])
    assert class_probabilities(frequencies, 1e-6).tolist() == [0.0, 0.0, 1.0]
    assert class_probabilities(frequencies, 1e6) == pytest.approx([1 / 3] * 3, abs=1e-6)


def test_min_pixels_leaves_out_label_noise_at_the_training_size():
    counts = table({0: 990, 5: 4}, {0: 900, 5: 100}, pixels=1000)
    held = plan_sampling(counts, 0.01, min_pixels=5, size=[10, 10]).images[5]
    assert held.tolist() == [1]  # 4 of 1000 pixels are 0.4 of 100: noise; 100 of 1000 are 10
    assert plan_sampling(counts, 0.01, min_pixels=3).images[5].tolist() == [0, 1]  # own size
    assert plan_sampling(counts, 0.01).images[5].tolist() == [0, 1]  # 0.4% > 0.15%
    assert plan_sampling(table({5: 1}, pixels=1000), 0.01).images[5].tolist() == []


def test_images_with_a_rare_class_are_drawn_more_often():
    common = [{0: 700, 1: 300}] * 9
    counts = table(*common, {0: 950, 12: 50})  # image 9 alone holds a rider
    plan = plan_sampling(counts, temperature=0.01)
    draws = np.concatenate([draw_epoch(plan, 10, seed=3, epoch=e) for e in range(500)])
    share = np.mean(draws == 9)
    expected = plan.probabilities[12] + plan.probabilities[0] / 10
    assert share == pytest.approx(expected, abs=0.03) and share > 0.9  # uniform: 0.1
    softer = plan_sampling(counts, temperature=1.0)
    draws = np.concatenate([draw_epoch(softer, 10, seed=3, epoch=e) for e in range(500)])
    assert 0.1 < np.mean(draws == 9) < share  # a higher temperature favours it less


def sampler(counts: np.ndarray, **kwargs) -> RareClassSampler:
    return RareClassSampler(plan_sampling(counts, 0.05), len(counts), **kwargs)


COUNTS = table(*[{0: 800, 1: 200}] * 6, {0: 900, 12: 100}, {0: 900, 17: 60, 18: 40})


def test_an_epoch_is_fixed_by_seed_and_epoch():
    first = sampler(COUNTS, seed=5)
    epoch_0 = list(first)
    assert len(epoch_0) == len(first) == 8 and all(0 <= i < 8 for i in epoch_0)
    again = sampler(COUNTS, seed=5)
    assert list(again) == epoch_0
    first.set_epoch(1)
    assert list(first) != epoch_0
    assert list(sampler(COUNTS, seed=6)) != epoch_0


def test_processes_share_an_epoch_out_without_overlap():
    counts = table(*[{0: 800, 1: 200}] * 9, {0: 900, 12: 100})  # 10 draws over 3 processes
    whole = draw_epoch(plan_sampling(counts, 0.05), 12, seed=2, epoch=4).tolist()
    shards = []
    for rank in range(3):
        shard = sampler(counts, num_replicas=3, rank=rank, seed=2)
        shard.set_epoch(4)
        shards.append(list(shard))
        assert len(shards[-1]) == len(shard) == 4  # ceil(10 / 3), as DistributedSampler
    # every draw of the epoch goes to exactly one process: rank r takes draws r, r + 3, ...
    assert [shards[k % 3][k // 3] for k in range(12)] == whole


def test_a_resumed_epoch_gives_the_same_remaining_indices():
    straight = sampler(COUNTS, seed=1)
    straight.set_epoch(2)
    expected = list(straight)
    resumed = sampler(COUNTS, seed=1)
    resumed.set_epoch(2)
    resumed.skip = 3  # what EpochCursor.begin sets from a checkpoint's epoch_progress
    assert list(resumed) == expected[3:]
    assert list(resumed) == expected  # the skip holds for one epoch only


def test_counts_come_back_only_for_the_same_images(tmp_path):
    path = tmp_path / COUNTS_FILE
    counts = table({0: 5}, {1: 7})
    save_counts(path, "key", counts)
    assert np.array_equal(load_counts(path, "key", 2, NUM_CLASSES), counts)
    assert load_counts(path, "other", 2, NUM_CLASSES) is None
    assert load_counts(path, "key", 3, NUM_CLASSES) is None
    path.write_text(path.read_text()[:-5])  # damaged: counted as none
    assert load_counts(path, "key", 2, NUM_CLASSES) is None
    path.write_text(json.dumps({"format": "x", "key": "key", "counts": [[1] * 999] * 99}))
    assert load_counts(path, "key", 2, NUM_CLASSES) is None  # larger than two rows can be
    assert not list(tmp_path.glob(".*"))
    save_counts(tmp_path / "missing" / COUNTS_FILE, "key", counts)  # unwritable: left unwritten


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return write_scenes(tmp_path_factory.mktemp("scenes"), {"train": 8, "val": 2}, 32, 64)


def data_config(root, *overrides):
    overrides = (f"data.root={root}", "data.size=[32,64]", "data.workers=0", RCS, *overrides)
    return load_config(None, list(overrides)).data


def test_counts_from_a_cache_match_the_labels_and_the_key_follows_the_images(scenes, tmp_path):
    cache = tmp_path / "cache"
    prepare_cache(scenes, cache, size=(32, 64), workers=0)
    config = data_config(scenes, f"data.cache={cache}", "data.max_images=6")
    train = open_splits(config, seed=0).train
    expected = count_table((train[i][1] for i in range(len(train))), NUM_CLASSES)
    assert np.array_equal(loader.class_counts(train, config), expected)
    assert loader.cached_labels(train) is not None  # read from the memory-mapped labels
    files = open_splits(data_config(scenes, "data.max_images=6"), seed=0).train
    assert loader.cached_labels(files) is None
    keys = {counts_key(train, NUM_CLASSES), counts_key(files, NUM_CLASSES)}
    keys.add(counts_key(open_splits(data_config(scenes), seed=0).train, NUM_CLASSES))
    assert len(keys) == 3


def test_the_sampler_keeps_its_counts_in_the_run_folder_once_the_epoch_starts(
    scenes, tmp_path, monkeypatch
):
    config = data_config(scenes)
    splits = open_splits(config, seed=0)
    run = tmp_path / "run"
    train, _ = build_loaders(splits, config, batch_size=2, seed=0, run_dir=run)
    assert isinstance(train.sampler, RareClassSampler)
    assert train.sampler.note.startswith("rare-class sampling on (temperature 0.01,")
    run.mkdir()  # (the trainer makes the folder after the loaders)
    assert not (run / COUNTS_FILE).exists()
    first = [targets.clone() for _, targets in train]
    assert (run / COUNTS_FILE).is_file()

    def no_counting(*args):
        raise AssertionError("counted again")

    monkeypatch.setattr(loader, "class_counts", no_counting)
    again, _ = build_loaders(splits, config, batch_size=2, seed=0, run_dir=run)
    assert all(torch.equal(a, b) for a, (_, b) in zip(first, again, strict=True))
    rank_1 = rare_class_sampler(splits.train, config, seed=0, rank=1, world_size=2, run_dir=run)
    assert rank_1.unsaved is None and len(rank_1) == 4


def test_class_weights_come_from_the_same_counts_in_one_pass_over_the_labels(
    scenes, tmp_path, monkeypatch, capsys
):
    from cityseg.train import build
    from cityseg.train.distributed import DistInfo
    from cityseg.train.losses import count_class_pixels

    config = data_config(scenes)
    splits = open_splits(config, seed=0)
    labels = [splits.train[i][1] for i in range(len(splits.train))]
    pixels, image_pixels = count_class_pixels(labels, NUM_CLASSES)
    totals = class_totals(count_table(labels, NUM_CLASSES))
    assert np.array_equal(totals[0], pixels) and np.array_equal(totals[1], image_pixels)

    train, _ = build_loaders(splits, config, batch_size=2, seed=0, run_dir=tmp_path / "run")
    assert train.sampler.counts.shape == (len(splits.train), NUM_CLASSES + 1)
    full = load_config(None, [f"data.root={scenes}", "loss.class_weights=auto"])
    info, cpu = DistInfo(), torch.device("cpu")
    separate = build.build_criterion(full, splits.train, info, cpu, None)[1]
    monkeypatch.setattr(build, "compute_class_weights", None)  # a second pass would fail
    shared = build.build_criterion(full, splits.train, info, cpu, None, train.sampler.counts)
    assert shared[1] == pytest.approx(separate)
    capsys.readouterr()


def test_unreadable_labels_stop_the_counting_unless_skipped(scenes, tmp_path):
    broken = write_scenes(tmp_path / "broken", {"train": 4}, 32, 64)
    next(broken.glob("gtFine/train/*/*_labelIds.png")).write_bytes(b"not a png")
    splits = open_splits(data_config(broken, "data.val_split=null", "data.val_fraction=0"), 0)
    with pytest.raises(DataError, match="labelIds.png"):
        loader.class_counts(splits.train, data_config(broken))
    counts = loader.class_counts(splits.train, data_config(broken, "data.skip_bad_samples=true"))
    assert counts.shape == (4, NUM_CLASSES + 1) and (counts.sum(axis=1) == 0).sum() == 1


def test_no_image_to_draw_is_one_line(scenes, monkeypatch):
    config = data_config(scenes, "data.rare_class_min_pixels=5000")
    with pytest.raises(DataError, match="no training image holds more than 5000 pixels of any"):
        rare_class_sampler(open_splits(config, seed=0).train, config, seed=0)
    config = data_config(scenes)
    train = open_splits(config, seed=0).train
    monkeypatch.setattr(loader, "class_counts", lambda *args: table(*[{}] * len(train)))
    with pytest.raises(DataError, match="more than 0.15% of its pixels of any class; lower"):
        rare_class_sampler(train, config, seed=0)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.rare_class_sampling=0", "data.rare_class_sampling: expected a value in (0, inf]"),
        ("data.rare_class_sampling=-0.01", "data.rare_class_sampling: expected a value in (0"),
        ("data.rare_class_sampling=.nan", "data.rare_class_sampling: must be a finite number"),
        ("data.rare_class_sampling=often", "data.rare_class_sampling: expected a number or null"),
        ("data.rare_class_min_pixels=-1", "data.rare_class_min_pixels: expected a value in [0,"),
        ("data.rare_class_min_pixels=1e12", "data.rare_class_min_pixels: expected an integer"),
    ],
)
def test_configuration_checks(override, message):
    with pytest.raises(ConfigError) as error:
        load_config(None, [override])
    assert message in str(error.value) and "\n" not in str(error.value).strip()


def test_configuration_defaults_leave_it_off():
    data = load_config(None).data
    assert data.rare_class_sampling is None and data.rare_class_min_pixels is None
    data = load_config(None, [RCS, "data.rare_class_min_pixels=40"]).data
    assert (data.rare_class_sampling, data.rare_class_min_pixels) == (0.01, 40)


def test_training_with_it_stopped_mid_epoch_resumes_exactly(scenes, tmp_path, monkeypatch, capsys):
    straight = tmp_path / "straight"
    assert in_process(*train_args(scenes, straight, RCS)) == 0
    out = capsys.readouterr().out
    assert "rare-class sampling on (temperature 0.01" in out and "rarest: " in out
    assert (straight / COUNTS_FILE).is_file()

    run = tmp_path / "run"
    calls = {"step": 0}
    real_reached = faults.reached

    def interrupt_at_step_6(point: str):
        calls[point] = calls.get(point, 0) + 1
        if point == "step" and calls[point] == 6:  # the 2nd step of epoch 2
            os.kill(os.getpid(), signal.SIGINT)
        return real_reached(point)

    monkeypatch.setattr(faults, "reached", interrupt_at_step_6)
    assert in_process(*train_args(scenes, run, RCS)) == 130
    saved = torch.load(run / "checkpoint_last.pt", weights_only=True)
    assert saved["epoch_progress"]["batches"] == 3
    monkeypatch.undo()

    def no_counting(*args):
        raise AssertionError("counted again")

    monkeypatch.setattr(loader, "class_counts", no_counting)
    assert in_process("train", "--resume", str(run)) == 0
    same_weights(straight / "checkpoint_last.pt", run / "checkpoint_last.pt")


def _drawing_rank(rank: int, root, run, record) -> None:
    """Train on the tiny configuration with rare-class sampling, writing the indices this
    process's sampler gives in each epoch to ``record/rank<r>.json``."""
    from cityseg.train import engine

    iterate, drawn = RareClassSampler.__iter__, []

    def recording_iter(self):
        indices = list(iterate(self))
        drawn.append(indices)
        (record / f"rank{rank}.json").write_text(json.dumps(drawn))
        return iter(indices)

    RareClassSampler.__iter__ = recording_iter
    overrides = ("data.size=[32, 64]", "train.batch_size=2", "model.base_width=4", RCS)
    engine.train(tiny_config(root, *overrides), run)


def test_two_processes_share_the_draws_of_one_process(scenes, tmp_path):
    run = tmp_path / "run"
    assert run_ranks(_drawing_rank, (scenes, run, tmp_path), timeout=150) == [0, 0]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 2  # train.epochs=2 of tiny_config
    config = data_config(scenes)
    alone = rare_class_sampler(open_splits(config, seed=0).train, config, seed=0)
    for epoch in range(2):
        alone.set_epoch(epoch)
        first, second = ranks[0][epoch], ranks[1][epoch]
        assert len(first) == len(second) == 4
        assert [pair[k] for pair in zip(first, second, strict=True) for k in (0, 1)] == list(alone)
    assert (run / COUNTS_FILE).is_file() and not list(run.glob(".class_pixels*"))
