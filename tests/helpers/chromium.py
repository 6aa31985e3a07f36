"""Headless Chromium for the report tests: a page opened as a browser shows it, or a skip."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=5000",
)


def run_chromium(page: Path, profile: Path, *extra: str) -> str:
    """Open ``page`` in headless Chromium (skip when absent) and return its stdout."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("chromium not installed (Debian: apt-get install chromium, or make sysdeps)")
    command = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout
