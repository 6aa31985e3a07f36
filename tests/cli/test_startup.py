"""`cityseg --help` and `cityseg data check` start fast: torch is imported only where needed."""

from __future__ import annotations

import subprocess
import sys

from cityseg.scenes import generate_dataset

NO_TORCH = "assert 'torch' not in sys.modules, 'torch was imported'"


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_building_every_command_parser_imports_no_torch():
    run = run_python(
        f"import sys; from cityseg.cli import build_parser; build_parser(); {NO_TORCH}"
    )
    assert run.returncode == 0, run.stderr


def test_help_imports_no_torch():
    run = run_python(f"import sys; from cityseg.cli import main; assert main([]) == 0; {NO_TORCH}")
    assert run.returncode == 0, run.stderr
    assert "data" in run.stdout and "train" in run.stdout


def test_data_check_imports_no_torch(tmp_path):
    root = generate_dataset(tmp_path / "data", {"train": 2, "val": 1}, height=64, width=128)
    argv = ["data", "check", str(root), "--sample", "2"]
    run = run_python(
        f"import sys; from cityseg.cli import main; assert main({argv!r}) == 0; {NO_TORCH}"
    )
    assert run.returncode == 0, run.stderr
