"""The torch versions the README states are the ones the project declares: the minimum in
pyproject.toml, the version the tests run on in the Makefile's pin."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_states_the_declared_minimum_and_the_tested_version():
    (minimum,) = re.findall(r'^\s*"torch>=([\d.]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    pin = re.search(r"^TORCH\s*\?=\s*torch==([\d.]+)", (ROOT / "Makefile").read_text(), re.M)
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"The tests run on torch {pin.group(1)}; the minimum is torch {minimum}," in readme
