"""scripts/gpu_check.sh, the check run on a machine with a GPU, rehearsed on the CPU: valid bash,
every case listed, defined and planned within 5 minutes; a case the time did not reach fails; its
Python helper has every subcommand the script calls, and each call parses; every cityseg command
line uses options and configuration overrides that exist; the helpers that need no GPU run."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import torch

from cityseg.cli import build_parser
from cityseg.config import load_config

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


def bash(script: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``script`` in bash with gpu_check.sh sourced (its cases defined, nothing run)."""
    return subprocess.run(
        ["bash", "-c", f"source {SCRIPT}\n{script}"],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
    )


def case_names(quick: bool = False, table: str = "CASE_TABLE") -> list[str]:
    listing = bash(f'select_cases "${table}" {int(quick)}')
    assert listing.returncode == 0, listing.stderr
    return listing.stdout.split()


def test_the_script_is_valid_bash_and_defines_each_case():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    names = case_names() + case_names(table="BENCHMARK_TABLE")
    defined = bash("compgen -A function case_").stdout.split()
    assert sorted(f"case_{name}" for name in names) == sorted(defined)  # listed = defined
    assert len(names) == len(set(names)) >= 30


ISSUE_ITEMS = {
    "encoder_efficientnet_lite0": ("efficientnet-lite0 imagenet",),
    "encoder_resnet18": ("encoder-weights resnet18",),
    "encoder_mobilenet_v2": ("encoder-weights mobilenet_v2",),
    "train_ema": ("train.ema_decay=",),
    "train_compile": ("train.compile=true",),
    "sync_bn_two_gpus": ("train.sync_bn=true", "data.skip_bad_samples=true", "need_gpus 2"),
    "nccl_every_gpu": ('--nproc_per_node "$GPUS"', "need_gpus 2"),
    "only_gpu_used": ("only-gpu-used 1",),
    "resume_exact_after_ctrl_c": ("same-weights",),
    "predict_onnx_cuda": ("--device cuda:0",),
    "speed_recipes": ("pretrained_pairs.yaml", "cityscapes.yaml", "--batch 8"),
}


def case_body(name: str) -> str:
    listing = bash(f"declare -f case_{name}")
    assert listing.returncode == 0, name
    return listing.stdout


def test_the_cases_cover_the_gpu_paths():
    """Each encoder family in fp16 and bf16 with channels_last, the weight average, compile,
    SyncBatchNorm and NCCL on several GPUs, one GPU's context, exact resume, ONNX on CUDA, speed."""
    names = case_names()
    for name, needles in ISSUE_ITEMS.items():
        assert name in names, name
        for needle in needles:
            assert needle in case_body(name), (name, needle)
    encoder = bash("declare -f encoder_case").stdout
    for needle in ("for precision in fp16 bf16", "train.channels_last=true", "freeze_encoder"):
        assert needle in encoder


def test_the_plan_fits_five_minutes_on_one_gpu_and_quick_picks_the_most_important():
    every, quick = case_names(), case_names(quick=True)
    one_gpu = int(bash(f"planned_seconds 1 {' '.join(every)}").stdout)
    two_gpus = int(bash(f"planned_seconds 2 {' '.join(every)}").stdout)
    quick_plan = int(bash(f"planned_seconds 1 {' '.join(quick)}").stdout)
    assert 0 < quick_plan <= one_gpu / 2 + 15 and one_gpu <= 300 < two_gpus <= 400
    assert set(quick) < set(every)
    for needed in ("sync_bn_two_gpus", "nccl_every_gpu", "resume_exact_after_ctrl_c"):
        assert needed in quick
    # what a quick case reads was made by an earlier quick case
    order = {name: index for index, name in enumerate(quick)}
    assert order["generate_data"] == 0 and order["train_bf16_contiguous"] < order["export_onnx"]
    assert order["export_onnx"] < order["predict_onnx_cuda"]


def test_a_case_the_time_did_not_reach_fails_and_a_skip_says_why(tmp_path):
    """The runner on the CPU with stand-in cases: PASS, SKIP (exit 77), FAIL, a case over its
    limit FAILS, and once the budget is spent the cases left FAIL as not run."""
    script = f"""
        setup {tmp_path}
        plan_of() {{ echo 1; }}
        case_good() {{ echo fine; }}
        case_skipped() {{ GPUS=1; need_gpus 2; }}
        case_bad() {{ false; }}
        case_slow() {{ sleep 60; }}
        export -f case_good case_skipped case_bad case_slow need_gpus
        BUDGET=3
        run_case good; run_case skipped; run_case bad; run_case slow; run_case good
        print_table; echo "status $?"
    """
    result = bash(script)
    assert "status 1" in result.stdout, result.stdout + result.stderr
    rows = re.findall(r"^\| (\w+) +\| (\w+) ", result.stdout, flags=re.M)
    assert rows[1:] == [
        ("good", "PASS"),
        ("skipped", "SKIP"),
        ("bad", "FAIL"),
        ("slow", "FAIL"),
        ("good", "FAIL"),
    ]
    assert "skipped: needs 2 GPUs, 1 visible" in (tmp_path / "logs/skipped.log").read_text()
    assert "timed out after" in (tmp_path / "logs/slow.log").read_text()
    assert "not run: the budget of 3 s ran out" in (tmp_path / "logs/good.log").read_text()
    assert "2 passed" not in result.stdout and "1 passed, 3 failed, 1 skipped" in result.stdout


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


DRY_RUN = """
    setup {work}
    GPUS=2
    calls={work}/calls
    record() {{ printf '%s\\x1f' "$@" >>"$calls"; printf '\\n' >>"$calls"; }}
    cityseg() {{ record cityseg "$@"; }}
    torchrun() {{ record torchrun "$@"; }}
    helper() {{ record helper "$@"; }}
    bench() {{ record bench "$@"; }}
    python_stand_in() {{ record python "$@"; }}
    set() {{ builtin set -f; }}  # every command of a case runs, none stops it
    export PYTHON=python_stand_in
    export -f record cityseg torchrun helper bench python_stand_in set
    for name in $(select_cases "$CASE_TABLE" 0); do (case_$name) >/dev/null 2>&1; done
"""
"""Every case run with stand-ins for cityseg, torchrun, the helper and Python that record their
arguments as bash expanded them (on a machine with 2 GPUs)."""


def recorded_calls(work: Path) -> list[list[str]]:
    result = bash(DRY_RUN.format(work=work), cwd=work)  # anything written lands in work
    assert result.returncode == 0, result.stderr
    lines = (work / "calls").read_text().splitlines()
    return [line.split("\x1f")[:-1] for line in lines if line]


def overrides_of(arguments: list[str]) -> list[str]:
    return [a for a in arguments if re.match(r"^[a-z_]+\.[a-z_]+=", a)]


def test_every_command_of_every_case_is_valid(tmp_path, helper):
    """The dry run: each cityseg command line parses and its configuration overrides load; each
    helper call parses; torchrun runs cityseg."""
    calls = recorded_calls(tmp_path)
    kinds = [call[0] for call in calls]
    assert kinds.count("cityseg") >= 20 and kinds.count("torchrun") >= 4
    assert kinds.count("helper") >= 15
    commands = build_parser()
    trainings = 0
    for kind, *arguments in calls:
        if kind == "torchrun":
            assert "-m" in arguments and arguments[arguments.index("-m") + 1] == "cityseg", (
                arguments
            )
            arguments = arguments[arguments.index("-m") + 2 :]
        if kind == "python" and arguments[:2] == ["-m", "cityseg"]:
            kind, arguments = "cityseg", arguments[2:]
        if kind in ("cityseg", "torchrun"):
            try:
                parsed = commands.parse_args(arguments)
            except SystemExit:
                pytest.fail(f"cityseg {shlex.join(arguments)}: does not parse")
            if arguments[0] == "train":
                trainings += 1
                load_config(parsed.config, parsed.overrides)  # a ConfigError fails the test
        elif kind == "helper":
            try:
                parsed = helper.build_parser().parse_args(arguments)
            except SystemExit:
                pytest.fail(f"gpu_check.py {shlex.join(arguments)}: does not parse")
            if overrides_of(arguments):
                load_config(None, overrides_of(arguments))
    assert trainings >= 15


def test_the_helpers_that_need_no_gpu_run_on_the_cpu(helper, tmp_path, capsys):
    """The local encoder weight files load into their encoders; the speed line of a recipe."""
    from cityseg.model.factory import init_encoder, model_from_config

    for name in ("resnet18", "mobilenet_v2"):
        path = tmp_path / f"{name}.pth"
        assert helper.main(["encoder-weights", name, str(path)]) == 0
        model = model_from_config({"encoder": name})
        assert init_encoder(model, str(path)) == f"encoder {name}: {path} weights"
    tiny = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
    arguments = ["speed", str(tiny), "--batch", "1", "--device", "cpu", "--warmup", "0"]
    assert helper.main([*arguments, "--steps", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^speed tiny.yaml: [\d.]+ img/s training at batch 1, ", out, flags=re.M)


@pytest.mark.parametrize("listed, expected", [("GPU-run", 0), ("GPU-other", 1)])
def test_only_gpu_used_rehearsed_on_the_cpu(helper, tmp_path, monkeypatch, listed, expected):
    """The case's helper with the CPU standing in for cuda:1 and nvidia-smi's listing given:
    it trains, evaluates, and passes only when this process holds a context on the run's GPU
    alone."""
    import os
    import shutil
    import types

    import cityseg.cli
    import cityseg.config
    from tests.helpers import write_scenes

    data = write_scenes(tmp_path / "data", {"train": 4, "val": 2}, 32, 64)
    load_config, cli_main, run = cityseg.config.load_config, cityseg.cli.main, subprocess.run

    def on_the_cpu(values):
        return [value.replace("cuda:1", "cpu") for value in values]

    def nvidia_smi(command, **keywords):
        if command[0] != "nvidia-smi":
            return run(command, **keywords)
        return types.SimpleNamespace(stdout=f"{os.getpid()}, {listed}\n")

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid="run")
    )
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(subprocess, "run", nvidia_smi)
    monkeypatch.setattr(cityseg.config, "load_config", lambda p, o: load_config(p, on_the_cpu(o)))
    monkeypatch.setattr(cityseg.cli, "main", lambda argv: cli_main(on_the_cpu(argv)))
    overrides = [f"data.root={data}", "data.size=[32,64]", "data.workers=0", "model.depth=2"]
    overrides += ["model.base_width=4", "train.batch_size=2", "train.precision=fp32"]
    overrides += ["train.progress=false"]
    assert helper.main(["only-gpu-used", "1", str(tmp_path / "run"), *overrides]) == expected
    assert (tmp_path / "run_evaluation" / "metrics.json").is_file()


def test_averaged_rehearsed_on_the_cpu(helper, tmp_path, capsys):
    """The weight-average check passes on a run with train.ema_decay, fails on one without."""
    from cityseg.train.engine import train
    from tests.helpers import tiny_config, write_scenes

    data = write_scenes(tmp_path / "data", {"train": 4, "val": 2}, 32, 64)
    small = ("data.size=[32, 64]", "train.epochs=1", "model.base_width=4")
    train(tiny_config(data, *small, "train.ema_decay=0.9"), tmp_path / "ema")
    train(tiny_config(data, *small), tmp_path / "plain")
    assert helper.main(["averaged", str(tmp_path / "ema" / "checkpoint_last.pt")]) == 0
    assert helper.main(["averaged", str(tmp_path / "plain" / "checkpoint_last.pt")]) == 1
    assert "no weight average" in capsys.readouterr().out
