"""The documentation's shell commands, in the spirit of doctest: every `cityseg` command of a
```bash block in README.md and docs/*.md runs, in order, on tiny generated scenes, and exits 0;
every other command is skipped by one of the named rules below, and the skipped set is pinned, so
a command that falls into a rule without anyone deciding it is noticed.

How a documented command becomes a run (nothing else is changed):
- it runs as ``python -m cityseg`` (``.venv/bin/cityseg`` included) in a fresh folder where
  ``configs/`` is the repository's, with the environment of the other command-line tests;
- optional parts in brackets are taken in (``[--report]`` runs with ``--report``);
- the documentation's placeholders name the generated data and the run the commands made before
  (``PLACEHOLDERS``); the inputs it names (``photo.jpg``, ``photos/``, ``clip.mp4``, ...) are made
  from the same scenes, and ``archive.zip`` has the Kaggle archive's layout and file count;
- a few arguments are appended that only shrink the run (``SHRINK``): fewer and smaller images,
  a narrower plain U-Net, one epoch, no loader processes. They never change what is run.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from cityseg.config import Config, load_config
from cityseg.data.download import PAIRS_SIZE, PAIRS_SPLITS
from cityseg.scenes import generate_dataset
from tests.helpers.commands import cli_env
from tests.helpers.shell_blocks import Command, commands_in, with_optional_parts

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = (REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md")))


@dataclass(frozen=True)
class Rule:
    """Why a documented command is not run here."""

    name: str
    why: str
    applies: Callable[[Command], bool]


def _is_cityseg(command: Command) -> bool:
    return Path(command.words[0]).name == "cityseg"


def _program(name: str) -> Callable[[Command], bool]:
    return lambda command: command.words[0] == name


def _needs_network(command: Command) -> bool:
    """`data download` but from a zip, `hub push`, or a model on the Hugging Face Hub (hf:...)."""
    words = command.words
    download = words[1:3] == ("data", "download") and "--from-zip" not in words
    hub = words[1:3] == ("hub", "push") or any(w.split("=")[-1].startswith("hf:") for w in words)
    return _is_cityseg(command) and (download or hub)


REAL_DATA = ("data/cityscapes", "data/pairs")
"""Where the documentation keeps the real data sets (``cityseg data download ... --out`` them)."""


def _reads_real_data(command: Command) -> bool:
    """It reads a real data set, or its block's variable names one."""
    variables = command.block_variables.values()
    in_variables = any(
        v.rstrip("/") == p or v.startswith(p + "/") for v in variables for p in REAL_DATA
    )
    return _reads(command, set(REAL_DATA)) or in_variables


SKIP_RULES = (
    Rule("make", "installs .venv from the network, then the whole demo or suite", _program("make")),
    Rule("pip", "installs packages from the network", _program("pip")),
    Rule("export", "sets a download's credentials; runs nothing", _program("export")),
    Rule(
        "several processes",
        "torchrun starts N processes (DDP is tested with two gloo processes in tests/train)",
        _program("torchrun"),
    ),
    Rule("network", "downloads or uploads (`data download --from-zip` runs)", _needs_network),
    Rule(
        "real data", "reads data/cityscapes or data/pairs, or its block names one", _reads_real_data
    ),
    Rule("elided", "`...` stands for arguments left out", lambda c: "..." in c.words),
)
AFTER_SKIPPED = Rule(
    "after a skipped command",
    "reads what a skipped command of its file would have written (its --out)",
    lambda c: False,  # decided by ``classified``, which sees the commands before it
)

EXPECTED_SKIPS = {
    ("make", "make demo"),
    ("make", "make test"),
    ("make", "make demo 'TORCH=torch --index-url https://download.pytorch.org/whl/cpu'"),
    ("make", "make demo 'TORCH=torch --index-url https://download.pytorch.org/whl/cu124'"),
    ("pip", "pip install torch '&&' pip install -e ."),
    ("export", "export CITYSCAPES_USERNAME=you@example.org CITYSCAPES_PASSWORD=..."),
    ("network", "cityseg data download cityscapes --out data/cityscapes"),
    (
        "network",
        "cityseg data download cityscapes --out data/cityscapes --packages gtFine_trainvaltest",
    ),
    ("network", "cityseg data download pairs --out data/pairs"),
    ("real data", "cityseg data check data/cityscapes"),
    ("real data", "cityseg data check data/pairs"),
    (
        "several processes",
        "torchrun --nproc_per_node 4 -m cityseg train --config configs/cityscapes.yaml "
        "--out runs/ddp data.root=CITYSCAPES",
    ),
    (
        "real data",
        "cityseg train --config configs/tiny.yaml --out runs/pairs300 "
        "data.root=data/pairs data.format=pairs data.max_images=300 "
        "data.max_val_images=null train.epochs=10",
    ),
    (
        "several processes",
        "torchrun --nnodes 2 --node_rank N --nproc_per_node 1 --rdzv_backend c10d "
        "--rdzv_endpoint HOST0:29400 --rdzv_id cityseg -m cityseg train --config configs/tiny.yaml "
        "--out RUN data.root=DATA train.device=cpu",
    ),
    (
        "several processes",
        "torchrun --nnodes 2 --node_rank N --nproc_per_node 1 --rdzv_backend c10d "
        "--rdzv_endpoint HOST0:29400 --rdzv_id cityseg -m cityseg train --resume RUN",
    ),
    (
        "after a skipped command",
        "cityseg evaluate RUN/checkpoint_best.pt --data DATA --device cpu",
    ),
    (
        "elided",
        "cityseg train ... model.encoder=resnet34 train.encoder_lr_mult=0.1 "
        "train.freeze_encoder_epochs=1",
    ),
    # docs/pretrained.md: the shipped model's recipe and its studies, on the real pairs photos
    ("real data", "cityseg data prepare data/pairs --out CACHE --size 128x256"),
    (
        "real data",
        "cityseg train --config configs/pretrained_pairs.yaml --out runs/pretrained_pairs "
        "data.root=data/pairs data.cache=CACHE",
    ),
    (
        "real data",
        "python scripts/make_pretrained.py heldout --config runs/pretrained_pairs/config.yaml "
        "--out HELDOUT",
    ),
    (
        "real data",
        "cityseg evaluate runs/pretrained_pairs/checkpoint_last.pt --data HELDOUT --split val "
        "--out runs/pretrained_pairs/eval_heldout '[--tta' --scales '1]'",
    ),
    (
        "real data",
        "python scripts/make_pretrained.py slim runs/pretrained_pairs/checkpoint_last.pt "
        "src/cityseg/pretrained/pairs.pt --metrics runs/pretrained_pairs/eval_heldout/metrics.json "
        "--minutes 78.8",
    ),
    # docs/pretrained.md: the studies on the held-out cities
    ("real data", "cityseg data prepare data/pairs --out CACHE256 --size 256x256"),
    (
        "real data",
        "cityseg train --config configs/pretrained_pairs.yaml --out runs/base data.root=data/pairs "
        "data.cache=CACHE train.epochs=9 data.rare_class_sampling=null loss.ohem_thresh=null",
    ),
    (
        "real data",
        "cityseg train --config configs/pretrained_pairs.yaml --out runs/rcs data.root=data/pairs "
        "data.cache=CACHE train.epochs=9 loss.ohem_thresh=null",
    ),
    (
        "real data",
        "cityseg train --config configs/pretrained_pairs.yaml --out runs/rcs256 "
        "data.root=data/pairs data.cache=CACHE256 train.epochs=5 'data.size=[256,256]' "
        "loss.ohem_thresh=null",
    ),
    (
        "real data",
        "cityseg train --config configs/pretrained_pairs.yaml --out runs/rcs_noweights "
        "data.root=data/pairs data.cache=CACHE train.epochs=9 loss.class_weights=none "
        "loss.ohem_thresh=null",
    ),
    (
        "real data",
        "cityseg train --config configs/pretrained_pairs.yaml --out runs/lite1 "
        "data.root=data/pairs data.cache=CACHE train.epochs=8 model.encoder=efficientnet-lite1 "
        "loss.ohem_thresh=null",
    ),
    (
        "real data",
        "cityseg train --config configs/pretrained_pairs.yaml --out runs/colour "
        "data.root=data/pairs data.cache=CACHE train.epochs=9 data.color_jitter=0.3 "
        "loss.ohem_thresh=null",
    ),
    (
        "real data",
        "cityseg train --config configs/pretrained_pairs.yaml --out runs/scale "
        "data.root=data/pairs data.cache=CACHE train.epochs=9 'data.scale=[0.5,1.5]' "
        "loss.ohem_thresh=null",
    ),
    (
        "real data",
        "cityseg train --config configs/pretrained_pairs.yaml --out runs/ohem "
        "data.root=data/pairs data.cache=CACHE train.epochs=9",
    ),
    (
        "real data",
        "cityseg train --config configs/pretrained_pairs.yaml --out runs/colour70 "
        "data.root=data/pairs data.cache=CACHE data.color_jitter=0.3",
    ),
    (
        "real data",
        "cityseg train --config configs/pretrained_pairs.yaml --out runs/no_ohem "
        "data.root=data/pairs data.cache=CACHE loss.ohem_thresh=null",
    ),
    (
        "real data",
        "cityseg train --config configs/pretrained_pairs.yaml --out runs/ft256 "
        "data.root=data/pairs data.cache=CACHE256 'data.size=[256,256]' train.epochs=8 "
        "train.lr=0.0003 train.init_from=runs/no_ohem/checkpoint_last.pt loss.ohem_thresh=null",
    ),
    (
        "real data",
        "cityseg train --config configs/pairs_unet.yaml --out runs/unet "
        "data.root=data/pairs data.cache=CACHE train.epochs=8",
    ),
    (
        "real data",
        "cityseg train --config configs/pairs_lite0.yaml --out runs/lite0 "
        "data.root=data/pairs data.cache=CACHE",
    ),
    (
        "real data",
        "cityseg train --config configs/pairs_lite0.yaml --out runs/none "
        "data.root=data/pairs data.cache=CACHE model.encoder_weights=none",
    ),
    # docs/deploy.md: the Hugging Face Hub, and int8 measured on the real pairs photos
    ("pip", "pip install 'cityseg[hub]'"),
    ("network", "cityseg predict --pretrained hf:USER/NAME photos/ --out pred/"),
    (
        "network",
        "cityseg hub push runs/tiny/checkpoint_best.pt --repo USER/NAME --eval runs/tiny/eval_val "
        "'[--private]'",
    ),
    ("network", "cityseg evaluate --pretrained hf:USER/NAME --data ROOT"),
    (
        "network",
        "cityseg train --config configs/pairs.yaml --out runs/tuned data.root=ROOT "
        "train.init_from=hf:USER/NAME",
    ),
    ("real data", "python scripts/int8_sets.py data/pairs --out /tmp/int8_sets"),
    (
        "after a skipped command",
        "cityseg export src/cityseg/pretrained/pairs.pt --out /tmp/int8/pairs_int8.onnx "
        "--quantize int8 --calibration /tmp/int8_sets/calibration --data /tmp/int8_sets/heldout "
        "--format pairs",
    ),
    (
        "after a skipped command",
        "cityseg evaluate --pretrained pairs --data /tmp/int8_sets/heldout --format pairs "
        "--out /tmp/int8/eval",
    ),
}
"""Every documented command that does not run here, by rule (as one line, comments dropped)."""

SCENES = "scenes"
"""The generated data set: the official layout, with the pairs format in ``scenes/pairs``."""
SCENE_SIZE = (64, 128)
"""Height and width of its frames."""

PLACEHOLDERS: dict[str, Callable[[str], str]] = {
    "PATH": lambda data_format: f"{SCENES}/pairs" if data_format == "pairs" else SCENES,
    "ROOT": lambda _: SCENES,
    "CITYSCAPES": lambda _: SCENES,
    "CKPT": lambda _: "runs/tiny/checkpoint_best.pt",  # the README's first training run
    "PRED_DIR": lambda _: "predictions",  # the val labelIds, as a submission would hold them
}
"""What each placeholder stands for: ``PATH`` is a data set of the format its command reads."""
_PLACEHOLDER = re.compile(r"\b(" + "|".join(PLACEHOLDERS) + r")\b")

SHRINK = {
    "generate": ("--train", "4", "--val", "2", "--test", "1", "--size", "32x64"),
    "train": (
        "data.size=[32, 64]",
        "data.crop=null",
        "data.max_images=4",
        "data.max_val_images=2",
        "data.workers=0",
        "train.epochs=1",
        "train.batch_size=2",
    ),
    "plain U-Net": ("model.base_width=4", "model.depth=2"),
    "resume": ("train.epochs=2",),  # one epoch more than the run resumed
}
"""Arguments appended to a command (the last of a repeated option wins) that only shrink it."""


def _reads(command: Command, paths: set[str]) -> bool:
    """Whether ``command`` reads one of ``paths`` or a file in it (its own ``--out`` aside)."""
    words = command.words
    read = [w for i, w in enumerate(words) if i == 0 or words[i - 1] != "--out"]
    values = [word.split("=", 1)[-1] for word in read]
    return any(v == p or v.startswith(p.rstrip("/") + "/") for v in values for p in paths)


def classified(commands: list[Command]) -> list[tuple[Command, Rule | None]]:
    """The commands of one file, in order, each with the rule that skips it (None: it runs); a
    command that reads the ``--out`` of a skipped one (and not of a later one that ran) is
    skipped after it."""
    unwritten: set[str] = set()
    result = []
    for command in commands:
        rule = next((rule for rule in SKIP_RULES if rule.applies(command)), None)
        if rule is None and _reads(command, unwritten):
            rule = AFTER_SKIPPED
        words = command.words
        written = {words[i + 1] for i in range(len(words) - 1) if words[i] == "--out"}
        unwritten = unwritten | written if rule else unwritten - written
        result.append((command, rule))
    return result


def documented_commands() -> list[tuple[Command, Rule | None]]:
    """Every command of README.md and docs/*.md with the rule that skips it (None: it runs)."""
    return [
        classified_command
        for path in DOCUMENTS
        for classified_command in classified(commands_in(path, str(path.relative_to(REPO_ROOT))))
    ]


def _configured(words: list[str]) -> Config | None:
    """The configuration a `cityseg train --config FILE` command trains with (None without one)."""
    if "--config" not in words:
        return None
    chosen = [w for w in words if w.startswith(("data.format=", "model.encoder="))]
    return load_config(REPO_ROOT / words[words.index("--config") + 1], chosen)


def run_words(command: Command) -> list[str]:
    """The arguments of ``python -m cityseg`` that run ``command`` here."""
    words = with_optional_parts(command.words)[1:]
    config = _configured(words)
    data_format = config.data.format if config else "cityscapes"
    words = [_PLACEHOLDER.sub(lambda m: PLACEHOLDERS[m[1]](data_format), w) for w in words]
    if words[:2] == ["data", "generate"]:
        words += SHRINK["generate"]
    elif words[:1] == ["train"] and "--resume" in words:
        words += SHRINK["resume"]
    elif words[:1] == ["train"]:
        words += SHRINK["train"]
        words += SHRINK["plain U-Net"] if config and config.model.encoder == "unet" else ()
    return words


def make_workspace(folder: Path) -> Path:
    """The folder the commands run in: ``configs/``, the generated scenes and the inputs the
    documentation names, all made from the scenes."""
    folder.mkdir(parents=True)
    (folder / "configs").symlink_to(REPO_ROOT / "src" / "cityseg" / "configs")
    scenes = generate_dataset(
        folder / SCENES, {"train": 6, "val": 2, "test": 2}, *SCENE_SIZE, pairs=True, color=False
    )
    tests = sorted(scenes.glob("leftImg8bit/test/*/*.png"))
    vals = sorted(scenes.glob("leftImg8bit/val/*/*.png"))
    for name, sources in {"photos": tests, "frames": vals}.items():
        (folder / name).mkdir()
        for source in sources:
            shutil.copy(source, folder / name / source.name)
    (folder / "more").mkdir()
    cv2.imwrite(str(folder / "more" / "street.jpg"), cv2.imread(str(vals[0])))
    cv2.imwrite(str(folder / "photo.jpg"), cv2.imread(str(tests[0])))
    codec, size = cv2.VideoWriter_fourcc(*"mp4v"), SCENE_SIZE[::-1]
    video = cv2.VideoWriter(str(folder / "clip.mp4"), codec, 17, size)
    for frame in (*tests, *vals):
        video.write(cv2.imread(str(frame)))
    video.release()
    (folder / "predictions").mkdir()
    for label in scenes.glob("gtFine/val/*/*_labelIds.png"):
        shutil.copy(label, folder / "predictions" / label.name)
    _write_pairs_archive(folder / "archive.zip")
    return folder


def _write_pairs_archive(path: Path) -> None:
    """A zip laid out as the Kaggle pairs archive (its nested duplicate folder, its file count and
    image size), every JPEG a plain grey picture."""
    jpeg = cv2.imencode(".jpg", np.full((*PAIRS_SIZE, 3), 128, np.uint8))[1].tobytes()
    with zipfile.ZipFile(path, "w") as archive:
        for split, count in PAIRS_SPLITS.items():
            for index in range(1, count + 1):
                archive.writestr(f"cityscapes_data/cityscapes_data/{split}/{index}.jpg", jpeg)


def _runnable(path: Path) -> list[Command]:
    commands = commands_in(path, str(path.relative_to(REPO_ROOT)))
    return [command for command, rule in classified(commands) if rule is None]


def test_every_documented_command_runs_or_is_skipped_by_a_named_rule():
    commands = documented_commands()
    unknown = [c for c, rule in commands if rule is None and not _is_cityseg(c)]
    assert not unknown, "neither cityseg nor skipped by a rule:\n" + "\n".join(
        f"{c.source}: {c.text}" for c in unknown
    )
    skipped = {(rule.name, c.text) for c, rule in commands if rule}
    assert skipped - EXPECTED_SKIPS == set(), "newly skipped: run them, or add them knowingly"
    assert EXPECTED_SKIPS - skipped == set(), "no longer documented, or now run: drop them"
    # the README runs about twenty: a parser that finds only a few has lost some
    assert sum(rule is None for _, rule in commands) >= 15


@pytest.mark.slow
@pytest.mark.parametrize("document", [p for p in DOCUMENTS if _runnable(p)], ids=lambda p: p.name)
def test_documented_commands_run_on_generated_scenes(document, tmp_path):
    workspace = make_workspace(tmp_path / "work")
    for command in _runnable(document):
        words = run_words(command)
        result = subprocess.run(
            [sys.executable, "-m", "cityseg", *words],
            cwd=workspace,
            capture_output=True,
            text=True,
            input=command.stdin,
            timeout=300,
            env=cli_env(CITYSEG_TRACEBACK="1"),
        )
        assert result.returncode == 0, (
            f"{command.source}: {command.text}\nran as: cityseg {shlex.join(words)}\n"
            f"exit status {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )


def test_every_skip_rule_is_used():
    assert {rule.name for rule in (*SKIP_RULES, AFTER_SKIPPED)} == {n for n, _ in EXPECTED_SKIPS}


def test_bash_blocks_give_commands_joined_without_comments_with_variables(tmp_path):
    markdown = tmp_path / "guide.md"
    markdown.write_text(
        "Text `cityseg inline` is no command.\n"
        "```python\nprint('```bash is text here')\n```\n"
        "```bash\n"
        "DATA=data/pairs   # or generated\n"
        "cityseg train --out 'runs/a b' data.root=$DATA \\\n"
        "    train.epochs=2   # a comment\n"
        "\n"
        "# a line of comment only\n"
        "cityseg predict CKPT 'more/*.jpg' --out pred/ [--mode slide]\n"
        "```\n"
        "```\ncityseg plain-fence\n```\n"
        "```sh\ncityseg evaluate ${DATA}/x\n"
        "python - <<'EOF'\nprint('not a command') \\\nEOF\ncityseg score P\n```\n"
    )
    commands = commands_in(markdown)
    assert [(c.source, c.block, c.text) for c in commands] == [
        (
            "guide.md:7",
            0,
            "cityseg train --out 'runs/a b' data.root=data/pairs train.epochs=2",
        ),
        ("guide.md:11", 0, "cityseg predict CKPT 'more/*.jpg' --out pred/ '[--mode' 'slide]'"),
        ("guide.md:17", 1, "cityseg evaluate data/pairs/x"),
        ("guide.md:18", 1, "python - '<<EOF'"),
        ("guide.md:21", 1, "cityseg score P"),
    ]
    assert commands[3].stdin == "print('not a command') \\\n" and commands[4].stdin is None
    assert commands[1].words[3:5] == ("more/*.jpg", "--out")
    assert commands[0].block_variables == {"DATA": "data/pairs"}
    assert commands[2].block_variables == {}


def test_optional_parts_are_taken_in_and_bracketed_values_kept():
    words = ("predict", "[--mode", "slide]", "[--tta]", "data.size=[32,64]", "[")
    assert with_optional_parts(words) == [
        "predict",
        "--mode",
        "slide",
        "--tta",
        "data.size=[32,64]",
        "[",
    ]


def _command(text: str) -> Command:
    return Command("README.md:1", tuple(shlex.split(text)), 0)


def test_placeholders_name_generated_data_and_the_shrink_is_only_appended():
    tiny = (
        "cityseg train --config configs/tiny.yaml --out runs/tiny data.root=PATH data.format=pairs"
    )
    assert run_words(_command(tiny)) == [
        *shlex.split(tiny.replace("PATH", "scenes/pairs"))[1:],
        *SHRINK["train"],
        *SHRINK["plain U-Net"],
    ]
    demo = "cityseg train --config configs/demo.yaml --out runs/ft data.root=PATH"
    assert run_words(_command(demo)) == [
        *shlex.split(demo.replace("PATH", "scenes"))[1:],
        *SHRINK["train"],
    ]
    resume = "cityseg train --resume runs/tiny train.epochs=20"
    assert run_words(_command(resume)) == [*shlex.split(resume)[1:], *SHRINK["resume"]]
    evaluate = ".venv/bin/cityseg evaluate CKPT --data ROOT [--report]"
    assert run_words(_command(evaluate)) == [
        "evaluate", "runs/tiny/checkpoint_best.pt", "--data", "scenes", "--report"
    ]  # fmt: skip
    assert run_words(_command("cityseg score PRED_DIR --gt CITYSCAPES_X")) == [
        "score", "predictions", "--gt", "CITYSCAPES_X"
    ]  # fmt: skip


def test_a_command_reading_what_a_skipped_one_writes_is_skipped_after_it():
    commands = [
        _command("torchrun -m cityseg train --config configs/tiny.yaml --out RUN"),
        _command("cityseg data download pairs --out data/kaggle"),
        _command("cityseg data download pairs --out data/kaggle --from-zip archive.zip"),
        _command("cityseg evaluate RUN/checkpoint_best.pt --data ROOT"),
        _command("cityseg train --resume RUN"),
        _command("cityseg train --config configs/tiny.yaml --out runs/x data.root=data/kaggle/"),
        _command("cityseg evaluate RUNS/checkpoint_best.pt --data ROOT"),
        _command("cityseg hub push CKPT --repo USER/NAME"),
        _command("cityseg train --out runs/y train.init_from=hf:USER/NAME"),
    ]
    rules = [rule.name if rule else None for _, rule in classified(commands)]
    after, network = AFTER_SKIPPED.name, ["network"] * 2
    assert rules == ["several processes", "network", None, after, after, None, None, *network]
