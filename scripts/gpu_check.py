"""The checks of ``scripts/gpu_check.sh`` that need Python, one subcommand each.

Each subcommand prints what it found and exits 0 when its check holds, 1 when it does not, and 77
when this machine lacks what it needs (the case is then reported as skipped).

    python scripts/gpu_check.py requirements
    python scripts/gpu_check.py bf16-rule
    python scripts/gpu_check.py same-weights A.pt B.pt
    python scripts/gpu_check.py speed configs/cityscapes.yaml --batch 8
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

SKIP = 77


def requirements(args: argparse.Namespace) -> int:
    """Say what this machine lacks for the GPU check (a CUDA build of torch, a GPU, packages)."""
    missing = []
    for module in ("torch", "cityseg", "numpy", "cv2", "yaml", "onnx", "onnxruntime", "tqdm"):
        try:
            importlib.import_module(module)
        except ImportError as error:
            missing.append(f"the Python package {module} ({error})")
    if "torch" in sys.modules:
        import torch

        print(f"torch {torch.__version__}, CUDA build {torch.version.cuda}")
        if not torch.cuda.is_available():
            missing.append("a CUDA GPU visible to torch (a CPU-only torch, or no driver)")
        for index in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
            major, minor = torch.cuda.get_device_capability(index)
            print(f"cuda:{index} {torch.cuda.get_device_name(index)} (compute {major}.{minor})")
    if "cityseg" in sys.modules:
        print(f"cityseg from {Path(sys.modules['cityseg'].__file__).parent}")
    if "onnxruntime" in sys.modules:
        onnxruntime = sys.modules["onnxruntime"]
        print(f"onnxruntime {onnxruntime.__version__}: {onnxruntime.get_available_providers()}")
    for problem in missing:
        print(f"missing: {problem}")
    return 1 if missing else 0


def bf16_rule(args: argparse.Namespace) -> int:
    """The bf16 rule asks the GPU in use and counts only native bf16 (compute capability 8+),
    in training (choose_precision) and inference (the Predictor's precision) alike."""
    import torch

    from cityseg.inference.options import InferenceOptions
    from cityseg.inference.predictor import Predictor
    from cityseg.runtime.precision import choose_precision, cuda_bf16_support

    asked: list[int | None] = []
    real_device = torch.cuda.device

    class RecordingDevice(real_device):
        def __init__(self, device) -> None:
            asked.append(torch.device(device).index)
            super().__init__(device)

    torch.cuda.device = RecordingDevice
    failures = 0
    for index in range(torch.cuda.device_count()):
        device = torch.device("cuda", index)
        native = torch.version.hip is not None or torch.cuda.get_device_capability(index)[0] >= 8
        asked.clear()
        support = cuda_bf16_support(device)
        training = choose_precision("auto", device).name
        options = InferenceOptions(precision="auto")
        model = torch.nn.Conv2d(3, 19, 1)
        inference = Predictor(model, [0.5] * 3, [0.5] * 3, device, options).precision.name
        expected = "bf16" if native else "fp16"
        good = (support == "native") == native and training == inference == expected
        good = good and set(asked) == {index}
        failures += not good
        print(
            f"{'ok' if good else 'WRONG'}: cuda:{index} {torch.cuda.get_device_name(index)}: bf16 "
            f"{support} (expected {'native' if native else 'not native'}); auto: training "
            f"{training}, inference {inference} (expected {expected}); GPUs asked "
            f"{sorted(set(asked))}"
        )
    return 1 if failures else 0


def same_weights(args: argparse.Namespace) -> int:
    """Two checkpoints at the same step with bit-identical weights and optimiser moments."""
    import torch

    first = torch.load(args.first, map_location="cpu", weights_only=True)
    second = torch.load(args.second, map_location="cpu", weights_only=True)
    steps = [(state["epoch"], state["iteration"]) for state in (first, second)]
    largest, differing = 0.0, []
    for name, tensor in first["model"].items():
        other = second["model"][name]
        if not torch.equal(tensor, other):
            differing.append(name)
            if tensor.is_floating_point():
                largest = max(largest, (tensor - other).abs().max().item())
    for index, state in first["optimizer"]["state"].items():
        for key, value in state.items():
            if not torch.equal(value, second["optimizer"]["state"][index][key]):
                differing.append(f"optimizer {index} {key}")
    print(f"(epoch, step): {steps[0]} and {steps[1]}; {len(differing)} tensors differ", end="")
    print(f" (largest weight difference {largest:.3g}: {differing[:3]})" if differing else "")
    return 0 if steps[0] == steps[1] and not differing else 1


def widen_rng(args: argparse.Namespace) -> int:
    """Give a checkpoint the CUDA random states of ``count`` GPUs, as a job on that many GPUs
    saves them."""
    import torch

    from cityseg.checkpoint.io import load_checkpoint, save_checkpoint

    state = load_checkpoint(args.checkpoint)
    cuda = state["rng"]["cuda"]
    if not cuda:
        print(f"{args.checkpoint}: no CUDA random state (not trained on a GPU)")
        return 1
    state["rng"]["cuda"] = [cuda[0], *(torch.roll(cuda[0], k) for k in range(1, args.count))]
    save_checkpoint(args.checkpoint, state)
    print(f"{args.checkpoint}: now holds the CUDA random states of {args.count} GPUs")
    return 0


def checkpoint_precision(args: argparse.Namespace) -> int:
    """A checkpoint records its number format, and holds a gradient scaler's state iff fp16."""
    import torch

    state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    precision, scaler = state.get("precision"), state.get("scaler")
    print(f"{args.checkpoint}: precision {precision}, scaler {scaler}")
    return 0 if precision == args.expected and bool(scaler) == (args.expected == "fp16") else 1


def evaluation(args: argparse.Namespace) -> int:
    """An evaluation's metrics.json: an mIoU, computed on a GPU, in the expected number format."""
    import json

    metrics = json.loads(Path(args.metrics).read_text())
    inference = metrics.get("inference", {})
    print(
        f"mIoU {metrics.get('mean_iou')} on {metrics.get('device')}, mode {inference.get('mode')}, "
        f"precision {inference.get('precision')}, flip {inference.get('flip')}"
    )
    good = isinstance(metrics.get("mean_iou"), float) and 0 <= metrics["mean_iou"] <= 1
    good = good and str(metrics.get("device", "")).startswith("cuda")
    if args.precision == "auto-rule":
        import torch

        native = torch.cuda.get_device_capability(torch.device(metrics["device"]))[0] >= 8
        good = good and inference.get("precision") == ("bf16" if native else "fp16")
    return 0 if good else 1


def load_on_host(args: argparse.Namespace) -> int:
    """load_model reads the checkpoint into host memory and moves only the model to the GPU
    (the optimiser's moments never reach it); running out of memory is not called damage."""
    import torch

    from cityseg.checkpoint.loading import load_model
    from cityseg.errors import CheckpointError

    places, real_load = [], torch.load

    def recording_load(*positional, **keywords):
        places.append(keywords.get("map_location"))
        return real_load(*positional, **keywords)

    torch.load = recording_load
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    model, _ = load_model(args.checkpoint, "cuda")
    peak = torch.cuda.max_memory_allocated() - before
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    on_gpu = all(p.is_cuda for p in model.parameters())
    print(
        f"map_location {places}; model on the GPU: {on_gpu}; GPU peak {peak} B, weights {weights} B"
    )

    def out_of_memory(*positional, **keywords):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    torch.load = out_of_memory
    try:
        load_model(args.checkpoint, "cuda")
        reported = "nothing"
    except torch.OutOfMemoryError:
        reported = "OutOfMemoryError"
    except CheckpointError as error:
        reported = f"CheckpointError: {error}"
    print(f"out of memory while loading reported as: {reported}")
    good = places == ["cpu"] and on_gpu and peak <= 1.25 * weights + 2**16
    return 0 if good and reported == "OutOfMemoryError" else 1


def export_keeps_device(args: argparse.Namespace) -> int:
    """export_model exports a copy: the caller's model stays on the GPU, in training mode."""
    import torch

    from cityseg.export import export_model
    from cityseg.model import UNet
    from cityseg.normalization import IMAGENET_NORMALIZATION

    model = UNet(base_width=8, depth=3).cuda().train()
    result = export_model(model, Path(args.out), IMAGENET_NORMALIZATION)
    device = next(model.parameters()).device
    print(
        f"after export: model on {device}, training {model.training}; onnxruntime vs PyTorch "
        f"max |logit difference| {result.max_abs_logit_diff:.2e}"
    )
    good = device.type == "cuda" and model.training and result.max_abs_logit_diff < 1e-3
    return 0 if good and torch.cuda.is_available() else 1


def fp16_overflow(args: argparse.Namespace) -> int:
    """fp16 training whose gradients are always infinite stops with one line, instead of running
    to the end with every step skipped."""
    from cityseg.config import load_config
    from cityseg.errors import UserError
    from cityseg.train import engine
    from cityseg.train.step import TrainingStep

    forward_backward = TrainingStep.forward_backward

    def poisoned(self, *positional):
        loss = forward_backward(self, *positional)
        next(self.model.parameters()).grad.fill_(float("inf"))
        return loss

    TrainingStep.forward_backward = poisoned
    overrides = [*args.overrides, "train.precision=fp16", "train.device=cuda", "train.epochs=30"]
    try:
        engine.train(load_config(None, overrides), args.out)
    except UserError as error:
        message = " ".join(error.problems)
    else:
        print("the run ended without stopping, every step skipped")
        return 1
    print(message)
    return 0 if "training stalled" in message and "scale fell to 0.5" in message else 1


def ort_device(args: argparse.Namespace) -> int:
    """onnxruntime runs on the GPU asked for (device_id), leaves TensorRT out of auto, and gives
    the labels of the CPU session."""
    import numpy as np
    import onnxruntime

    from cityseg.predict import OnnxSegmenter

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        print(f"skipped: this onnxruntime has no CUDA ({onnxruntime.get_available_providers()})")
        return SKIP
    gpu = OnnxSegmenter(args.onnx, device="cuda:0")
    providers = gpu.session.get_providers()
    device_id = gpu.session.get_provider_options().get("CUDAExecutionProvider", {})
    device_id = device_id.get("device_id")
    auto = OnnxSegmenter(args.onnx, device="auto").session.get_providers()
    photo = np.random.default_rng(0).integers(0, 256, (96, 160, 3), dtype=np.uint8)
    agreement = np.mean(gpu.predict(photo) == OnnxSegmenter(args.onnx, "cpu").predict(photo))
    print(
        f"cuda:0 session providers {providers}, CUDA device_id {device_id}; auto {auto}; labels "
        f"agree with the CPU session on {100 * agreement:.3f}% of the pixels"
    )
    good = providers[0] == "CUDAExecutionProvider" and str(device_id) == "0"
    good = good and "TensorrtExecutionProvider" not in auto and agreement > 0.999
    return 0 if good else 1


def ort_available(args: argparse.Namespace) -> int:
    """Exit 0 when onnxruntime has CUDA here, 77 (skip) when not."""
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return 0
    print(f"skipped: this onnxruntime has no CUDA ({onnxruntime.get_available_providers()})")
    return SKIP


def encoder_weights(args: argparse.Namespace) -> int:
    """Write a weight file of the ``name`` encoder as its publisher lays one out (the encoder's
    parameter names, and a classifier that loading leaves out), with random values: a local file
    for ``model.encoder_weights`` without a download."""
    import torch

    from cityseg.model.encoders import ENCODERS
    from cityseg.model.factory import model_from_config

    encoder = model_from_config({"encoder": args.name}).encoder
    state = dict(encoder.state_dict())
    for prefix in ENCODERS[args.name].head:
        state[f"{prefix}weight"] = torch.zeros(2, 2)
    torch.save(state, args.out)
    print(f"{args.out}: {len(state)} tensors of {args.name} (its classifier included)")
    return 0


def averaged(args: argparse.Namespace) -> int:
    """A run with ``train.ema_decay`` saves the weight average as its model and the trained
    weights beside it, and the two differ."""
    import torch

    state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    if "trained_model" not in state or "weight_average" not in state:
        print(f"{args.checkpoint}: no weight average ({sorted(state)})")
        return 1
    differing = [
        name
        for name, tensor in state["model"].items()
        if tensor.is_floating_point() and not torch.equal(tensor, state["trained_model"][name])
    ]
    print(f"{args.checkpoint}: weight average saved; {len(differing)} tensors differ from training")
    return 0 if differing else 1


def only_gpu_used(args: argparse.Namespace) -> int:
    """A one-process training run on ``cuda:INDEX``, then an evaluation of it there, open a CUDA
    context on that GPU and no other (nvidia-smi lists the processes of each GPU)."""
    import os
    import shutil
    import subprocess

    import torch

    from cityseg.cli import main as cityseg_main
    from cityseg.config import load_config
    from cityseg.train.engine import train

    if torch.cuda.device_count() <= args.index:
        print(f"skipped: needs {args.index + 1} GPUs, {torch.cuda.device_count()} visible")
        return SKIP
    if shutil.which("nvidia-smi") is None:
        print("skipped: no nvidia-smi to list the processes of each GPU")
        return SKIP
    overrides = [*args.overrides, f"train.device=cuda:{args.index}", "train.epochs=1"]
    config = load_config(None, overrides)
    train(config, args.out)
    evaluation = [str(args.out / "checkpoint_last.pt"), "--data", str(config.data.root)]
    evaluation += ["--out", f"{args.out}_evaluation", "--device", f"cuda:{args.index}"]
    if cityseg_main(["evaluate", *evaluation, "--no-progress"]) != 0:
        return 1
    query = ["nvidia-smi", "--query-compute-apps=pid,gpu_uuid", "--format=csv,noheader"]
    listing = subprocess.run(query, capture_output=True, text=True, check=True).stdout
    mine = {
        line.split(",")[1].strip()
        for line in listing.splitlines()
        if line.split(",")[0].strip() == str(os.getpid())
    }
    if not mine:
        print(f"skipped: nvidia-smi lists no process {os.getpid()} (another PID namespace)")
        return SKIP
    wanted = f"GPU-{torch.cuda.get_device_properties(args.index).uuid}"
    print(f"process {os.getpid()} has contexts on {sorted(mine)}; its GPU is {wanted}")
    return 0 if mine == {wanted} else 1


def speed(args: argparse.Namespace) -> int:
    """Images per second of training steps of each configuration's network at its crop (or
    size), precision and layout: cityseg's training step (:mod:`cityseg.train.step`) on random
    uint8 images and labels, with the unweighted loss and the configuration's optimiser; one
    line per configuration."""
    for path in args.configs:
        print(training_speed(Path(path), args.batch, args.device, args.warmup, args.steps))
    return 0


def training_speed(path: Path, batch: int, device_name: str, warmup: int, steps: int) -> str:
    """The speed line of one configuration (see ``speed``)."""
    import time

    import torch

    from cityseg.config import load_config
    from cityseg.runtime.device import resolve_device
    from cityseg.runtime.normalize import Normalize
    from cityseg.runtime.precision import choose_precision
    from cityseg.train.build import build_model
    from cityseg.train.losses import SegmentationLoss
    from cityseg.train.schedules import build_optimizer
    from cityseg.train.step import TrainingStep

    config = load_config(path, [f"train.batch_size={batch}"])
    device = resolve_device(device_name)
    height, width = config.data.training_size or (1024, 2048)
    precision = choose_precision(config.train.precision, device)
    channels_last = config.train.channels_last in (True, "auto") and device.type == "cuda"
    model, _ = build_model(config.model, device, channels_last, pretrained=False)
    model.train()
    norm = model.normalization
    training_step = TrainingStep(
        model,
        SegmentationLoss(config.model.num_classes).to(device),
        build_optimizer(model, config.train),
        precision.grad_scaler(),
        precision,
        Normalize(norm["mean"], norm["std"], channels_last).to(device),
    )
    shape = (batch, height, width)
    images = torch.randint(0, 256, (*shape, 3), dtype=torch.uint8, device=device)
    labels = torch.randint(0, config.model.num_classes, shape, dtype=torch.uint8, device=device)

    def step() -> None:
        training_step(images, labels)

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        step()
    synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize()
    rate = batch * steps / (time.perf_counter() - started)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    layout_name = "channels_last" if channels_last else "NCHW"
    return (
        f"speed {path.name}: {rate:.1f} img/s training at batch {batch}, {height}x{width}, "
        f"{precision.name}, {layout_name}, {name}"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("requirements").set_defaults(run=requirements)
    commands.add_parser("bf16-rule").set_defaults(run=bf16_rule)
    command = commands.add_parser("same-weights")
    command.add_argument("first", type=Path)
    command.add_argument("second", type=Path)
    command.set_defaults(run=same_weights)
    command = commands.add_parser("widen-rng")
    command.add_argument("checkpoint", type=Path)
    command.add_argument("count", type=int)
    command.set_defaults(run=widen_rng)
    command = commands.add_parser("checkpoint-precision")
    command.add_argument("checkpoint", type=Path)
    command.add_argument("expected", choices=("fp32", "bf16", "fp16"))
    command.set_defaults(run=checkpoint_precision)
    command = commands.add_parser("evaluation")
    command.add_argument("metrics", type=Path)
    command.add_argument("--precision", choices=("auto-rule",))
    command.set_defaults(run=evaluation)
    command = commands.add_parser("load-on-host")
    command.add_argument("checkpoint", type=Path)
    command.set_defaults(run=load_on_host)
    command = commands.add_parser("export-keeps-device")
    command.add_argument("out", type=Path)
    command.set_defaults(run=export_keeps_device)
    command = commands.add_parser("fp16-overflow")
    command.add_argument("out", type=Path)
    command.add_argument("overrides", nargs="*")
    command.set_defaults(run=fp16_overflow)
    command = commands.add_parser("ort-device")
    command.add_argument("onnx", type=Path)
    command.set_defaults(run=ort_device)
    commands.add_parser("ort-available").set_defaults(run=ort_available)
    command = commands.add_parser("encoder-weights")
    command.add_argument("name")
    command.add_argument("out", type=Path)
    command.set_defaults(run=encoder_weights)
    command = commands.add_parser("averaged")
    command.add_argument("checkpoint", type=Path)
    command.set_defaults(run=averaged)
    command = commands.add_parser("only-gpu-used")
    command.add_argument("index", type=int)
    command.add_argument("out", type=Path)
    command.add_argument("overrides", nargs="*")
    command.set_defaults(run=only_gpu_used)
    command = commands.add_parser("speed")
    command.add_argument("configs", nargs="+")
    command.add_argument("--batch", type=int, default=8)
    command.add_argument("--device", default="cuda")
    command.add_argument("--warmup", type=int, default=3)
    command.add_argument("--steps", type=int, default=10)
    command.set_defaults(run=speed)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
