"""Every benchmark runs in its seconds-long smoke form and prints its markdown table and ratios.

Not timed: the numbers of a smoke run mean nothing; only that the scripts still work.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = [
    "bench_train_step.py",
    "bench_loader.py",
    "bench_epoch.py",
    "bench_inference.py",
    "bench_profile.py",
    "bench_layers.py",
    "bench_train_command.py",
]


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_smoke_form_runs(script):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--smoke", "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    out = completed.stdout
    assert "\n|---" in out, out  # a markdown table
    assert "Ratios (same run):" in out and "- CPU:" in out, out
    assert "failed" not in out, out


def test_onnx_sliding_window_tiles_as_cityseg_does():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import bench_inference
    finally:
        sys.path.remove(str(BENCHMARKS))
    from cityseg.inference.windows import tile_origins, window_weights

    for length, tile in [(1024, 512), (2048, 1024), (100, 64), (64, 64), (50, 64)]:
        stride = max(1, 2 * tile // 3)
        assert bench_inference.tile_origins(length, tile) == tile_origins(length, tile, stride)
    expected = window_weights((48, 80), "gaussian").numpy()
    np.testing.assert_allclose(bench_inference.gaussian_window(48, 80), expected, rtol=1e-6)


def test_score_benchmark_smoke_form_runs(cityscapes_root):
    """bench_score.py builds its frames from the real aachen frames; 4 frames is its smoke form."""
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_score.py"), "--frames", "4", "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "speed-up" in completed.stdout and "largest difference" in completed.stdout
