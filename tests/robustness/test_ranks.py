"""Several processes (torchrun, gloo): when one rank fails, every rank exits promptly with the
failing rank's error, and the run can be resumed once the cause is fixed."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from torch.utils.data import DistributedSampler

from tests.helpers import TINY, cli_env, write_scenes

pytestmark = pytest.mark.slow


def torchrun(*args: str, timeout: float = 120) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
        + ["-m", "cityseg", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(CITYSEG_DIST_TIMEOUT="60"),
    )
    return result, time.monotonic() - started


def test_a_failing_rank_stops_the_job_and_it_resumes(tmp_path):
    scenes = write_scenes(tmp_path / "scenes", {"train": 8, "val": 2}, 32, 64)
    images = sorted(scenes.glob("leftImg8bit/train/*/*.png"))
    rank1_first = next(iter(DistributedSampler(range(8), num_replicas=2, rank=1, seed=0)))
    rank0_reads = set(DistributedSampler(range(8), num_replicas=2, rank=0, seed=0))
    assert rank1_first not in rank0_reads  # only rank 1 reads it (in the first epoch)
    bad = images[rank1_first]
    good_bytes = bad.read_bytes()
    bad.write_bytes(good_bytes[:200])
    run = tmp_path / "run"
    overrides = [f"data.root={scenes}", *TINY, "train.batch_size=4", "train.epochs=2"]
    overrides.remove("train.max_iterations=12")

    failed, seconds = torchrun("train", "--out", str(run), *overrides)
    assert failed.returncode != 0 and seconds < 60
    output = failed.stdout + failed.stderr
    assert f"cityseg train: error: {bad}: truncated file (no end marker)" in output
    assert "another process of this job stopped" in output  # rank 0: one line, no traceback
    assert "[rank0]: Traceback" not in output

    bad.write_bytes(good_bytes)
    resumed, _ = torchrun("train", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "starting it from the beginning" in resumed.stdout
    assert "epoch 2/2 | step 4 |" in resumed.stdout
