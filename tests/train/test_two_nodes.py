"""Two machines' worth of torchrun on this one: two launchers as two nodes (c10d rendezvous on
127.0.0.1, one process each, gloo) train configs/tiny.yaml at a tiny size, are stopped by SIGTERM
in the middle of an epoch (as a scheduler stops a job), resume and evaluate: the commands of the
README's section "Several machines"."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import cityseg, cli_env, write_scenes
from tests.helpers.ddp import free_port

pytestmark = pytest.mark.slow

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"
TINY = (
    "data.format=cityscapes",
    "data.size=[32,64]",
    "data.scale=[1,1]",
    "data.workers=0",
    "model.base_width=4",
    "model.depth=2",
    "train.epochs=2",
    "train.batch_size=2",
    "train.warmup_iterations=0",
    "train.device=cpu",
    "train.precision=fp32",
    "train.channels_last=false",
    "train.progress=false",
)
"""tiny.yaml shrunk: 8 training images, one per process and step: 4 steps an epoch."""


class Nodes:
    """``torchrun --nnodes 2`` started twice, as node 0 and node 1, each in its own session."""

    def __init__(self, logs: Path, arguments: list[str], **env: str) -> None:
        port = free_port()
        self.logs = [logs / f"node{rank}.log" for rank in range(2)]
        self.processes = []
        for rank, log in enumerate(self.logs):
            command = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--node_rank",
                str(rank),
                "--nproc_per_node",
                "1",
                "--rdzv_backend",
                "c10d",
                "--rdzv_endpoint",
                f"127.0.0.1:{port}",
                "--rdzv_id",
                "cityseg",
                "-m",
                "cityseg",
                "train",
                *arguments,
            ]
            with log.open("w") as output:
                self.processes.append(
                    subprocess.Popen(
                        command,
                        stdout=output,
                        stderr=subprocess.STDOUT,
                        env=cli_env(CITYSEG_DIST_TIMEOUT="120", **env),
                        start_new_session=True,
                    )
                )

    def output(self) -> str:
        return "".join(f"--- {log.name}\n{log.read_text()}" for log in self.logs)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not all(text in log.read_text() for log in self.logs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                self.kill()
                pytest.fail(f"{text!r} not in every node's output:\n{self.output()[-4000:]}")
            time.sleep(0.2)

    def wait(self, timeout: float) -> list[int | None]:
        deadline = time.monotonic() + timeout
        for process in self.processes:
            try:
                process.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        codes = [process.poll() for process in self.processes]
        self.kill()
        return codes

    def kill(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_two_nodes_train_are_stopped_resume_and_evaluate(tmp_path):
    data = write_scenes(tmp_path / "data", {"train": 8, "val": 2}, 32, 64)
    run = tmp_path / "run"
    arguments = ["--config", str(CONFIG), "--out", str(run), f"data.root={data}", *TINY]

    # Epoch 1 (4 steps) and a checkpoint, then both processes pause after step 6, in epoch 2.
    nodes = Nodes(tmp_path, arguments, CITYSEG_TEST_FAULT="pause:step:6")
    nodes.wait_for("CITYSEG_TEST_FAULT paused at step", timeout=300)
    for process in nodes.processes:
        process.send_signal(signal.SIGTERM)  # to each launcher, which passes it to its process
    codes = nodes.wait(timeout=180)
    out = nodes.output()
    assert all(code not in (None, 0) for code in codes), out[-4000:]
    assert "2 processes" in out and "stopped by SIGTERM in epoch 2" in out, out[-4000:]
    stopped = torch.load(run / "checkpoint_last.pt", weights_only=True)
    assert (stopped["epoch"], stopped["world_size"]) == (1, 2)
    assert stopped["iteration"] in (6, 7)  # the stop is agreed at the next step's check

    resumed = Nodes(tmp_path, ["--resume", str(run)])
    codes = resumed.wait(timeout=300)
    out = resumed.output()
    assert codes == [0, 0], out[-4000:]
    assert "epoch 2/2 |" in out
    state = torch.load(run / "checkpoint_last.pt", weights_only=True)
    assert (state["epoch"], state["iteration"], state["world_size"]) == (2, 8, 2)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in records] == [1, 2]

    evaluation = cityseg(
        "evaluate",
        str(run / "checkpoint_best.pt"),
        "--data",
        str(data),
        "--out",
        str(tmp_path / "evaluation"),
        "--device",
        "cpu",
        "--no-progress",
        timeout=300,
    )
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    metrics = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())
    assert 0 <= metrics["mean_iou"] <= 1 and metrics["device"] == "cpu"
