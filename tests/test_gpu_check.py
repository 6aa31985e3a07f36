"""scripts/gpu_check.sh, the check run on a machine with a GPU: valid bash, every case defined,
its Python helper importable with every subcommand the script calls, and no cityseg option that
does not exist."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest
import torch

from cityseg.cli import build_parser

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
SCRIPT = SCRIPTS / "gpu_check.sh"


@pytest.fixture(scope="module")
def helper():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPTS / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def logical_lines() -> list[str]:
    return SCRIPT.read_text().replace("\\\n", " ").splitlines()


def test_the_script_is_valid_bash_and_defines_each_case():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    listing = subprocess.run(
        ["bash", "-c", f'source {SCRIPT}; for c in "${{CASES[@]}}"; do declare -F "case_$c"; done'],
        capture_output=True,
        text=True,
    )
    defined = listing.stdout.split()
    assert listing.returncode == 0 and len(defined) >= 26, listing.stderr
    assert "case_fp16_overflow_stops" in defined and "case_more_processes_than_gpus" in defined


def test_the_helper_has_every_subcommand_the_script_calls(helper):
    calls = [line for line in logical_lines() if not line.lstrip().startswith("export -f")]
    called = {name for line in calls for name in re.findall(r"\bhelper ([a-z][a-z0-9-]*)", line)}
    choices = helper.build_parser()._subparsers._group_actions[0].choices
    assert called and called <= set(choices), called - set(choices)


def test_the_helper_says_what_is_missing(helper, capsys):
    status = helper.main(["requirements"])
    out = capsys.readouterr().out
    if torch.cuda.is_available():
        assert "missing: a CUDA GPU" not in out
    else:
        assert status == 1 and "missing: a CUDA GPU visible to torch" in out


def cityseg_options() -> dict[str, set[str]]:
    """The options of each cityseg command ("data generate" for a data command)."""
    commands = {}
    for name, parser in build_parser()._subparsers._group_actions[0].choices.items():
        nested = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
        for sub, subparser in nested[0].choices.items() if nested else [("", parser)]:
            commands[f"{name} {sub}".strip()] = set(subparser._option_string_actions)
    return commands


def test_the_script_uses_only_options_cityseg_has():
    commands, used = cityseg_options(), 0
    invocation = re.compile(r"(?:^|\s)(?:cityseg|-m cityseg) (data \w+|\w+)(.*)")
    for line in logical_lines():
        if line.lstrip().startswith("export -f"):
            continue
        match = invocation.search(line)
        if line.strip().startswith("evaluate_case "):
            match = re.match(r"\s*evaluate_case \S+()(.*)", line)
            command = "evaluate"
        elif match:
            command = match.group(1)
        else:
            continue
        assert command in commands, line
        for option in re.findall(r"\s(--[a-z][a-z-]*)", match.group(2)):
            assert option in commands[command], f"cityseg {command} has no {option}: {line}"
            used += 1
    assert used > 20
