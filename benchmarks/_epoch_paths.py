"""The epochs that bench_epoch.py compares, each run in its own process.

``run_path(args)`` (``args.path``: baseline, fp32, or cityseg with one of bench_epoch's switches)
trains one epoch on the first ``train_images`` pairs and validates on the next ``val_images``, and
returns the times: training (and, within it, the time spent waiting for the next batch),
validation (and, within it, the time spent computing the metrics), the system CPU time and peak
memory of the process, and the mIoU.
"""

from __future__ import annotations

import random
import time

import numpy as np
from _common import parse_size, resolve_device, synchronize

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def run_path(args) -> dict:
    import torch

    device = resolve_device(args.device, args.threads)
    torch.manual_seed(0)
    random.seed(0)
    size = parse_size(args.size)
    if args.path.startswith("cityseg"):  # the default's threads, or the switch's
        switch, threads = args.path.partition("+")[2], args.setting.get("threads", 0)
        threads = {"threads1": 1, "threads-all": 0}.get(switch, threads)
        if threads:
            torch.set_num_threads(threads)
    run = run_baseline if args.path == "baseline" else run_cityseg
    result = run(args, device, size)
    result.update(process_costs())
    return result


def process_costs() -> dict:
    """System CPU time of this process and its finished children, and its peak resident memory."""
    import resource

    system = sum(
        resource.getrusage(who).ru_stime for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return {"system_seconds": system, "peak_rss_mib": peak_memory_mib()}


def peak_memory_mib() -> float | None:
    """This process's peak resident memory (VmHWM: its own, not what it forked from)."""
    try:
        for line in open("/proc/self/status").read().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def build_network(args):
    from cityseg.config import ModelConfig
    from cityseg.model import model_from_config

    return model_from_config(ModelConfig(**args.model).model_kwargs())


# --- the baseline, as the seed notebooks write it -------------------------------------------------


class NotebookPairs:
    """PIL decode, PIL resize, nearest-colour loop, float32 normalised tensors, random flip."""

    def __init__(self, files, size, flip: bool) -> None:
        self.files, self.size, self.flip = files, size, flip

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        import torch
        from PIL import Image

        pair = np.array(Image.open(self.files[index]).convert("RGB"))
        half = pair.shape[1] // 2
        height, width = self.size
        photo = Image.fromarray(pair[:, :half]).resize((width, height), Image.BILINEAR)
        label = Image.fromarray(pair[:, half:]).resize((width, height), Image.NEAREST)
        train_ids = nearest_colour_train_ids(np.array(label))
        image = torch.from_numpy(np.array(photo)).float().permute(2, 0, 1) / 255.0
        image = (image - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
        target = torch.from_numpy(train_ids).long()
        if self.flip and random.random() < 0.5:
            image, target = image.flip(-1), target.flip(-1)
        return image, target


def nearest_colour_train_ids(label_rgb: np.ndarray) -> np.ndarray:
    from cityseg.labels import LABEL_COLORS, LABEL_ID_TO_TRAIN_ID

    pixels = label_rgb.reshape(-1, 3).astype(np.float32)
    best = np.full(len(pixels), np.inf, dtype=np.float32)
    label_ids = np.zeros(len(pixels), dtype=np.int64)
    for label_id, colour in enumerate(LABEL_COLORS):
        distance = ((pixels - colour.astype(np.float32)) ** 2).sum(axis=1)
        closer = distance < best
        best[closer] = distance[closer]
        label_ids[closer] = label_id
    return LABEL_ID_TO_TRAIN_ID[label_ids].reshape(label_rgb.shape[:2])


def run_baseline(args, device, size) -> dict:
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from cityseg.data import PairsDataset

    files = [s.image_path for s in PairsDataset(args.root, "train").samples]
    files = files[: args.train_images + args.val_images]
    train = DataLoader(NotebookPairs(files[: args.train_images], size, True), args.batch_size, True)
    val = DataLoader(NotebookPairs(files[args.train_images :], size, False), args.batch_size)
    model = build_network(args).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def train_step(images, targets):  # the notebooks' own step, timed against cityseg's
        loss = F.cross_entropy(model(images.to(device)), targets.to(device), ignore_index=255)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def validate(images, targets, totals):
        predictions = model(images.to(device)).argmax(1).cpu().numpy()
        started = time.perf_counter()
        ground_truth = targets.numpy()
        for c in range(19):
            totals[0][c] += ((predictions == c) & (ground_truth == c)).sum()
            totals[1][c] += ((predictions == c) | (ground_truth == c)).sum()
        return time.perf_counter() - started

    def mean_iou(totals) -> float:
        ious = [i / u for i, u in zip(*totals, strict=True) if u > 0]
        return float(np.mean(ious)) if ious else 0.0

    totals = [[0] * 19, [0] * 19]
    return run_epoch(model, train, val, train_step, validate, totals, mean_iou, device)


# --- cityseg ----------------------------------------------------------------------------------


def run_cityseg(args, device, size) -> dict:
    import torch

    from cityseg.config import DataConfig, ModelConfig, TrainConfig
    from cityseg.data.cache import CachedDataset
    from cityseg.data.loader import Splits, SubsetDataset, build_loaders, set_epoch
    from cityseg.metrics.confusion import ConfusionMatrix
    from cityseg.metrics.summary import summarize
    from cityseg.runtime.device import configure_determinism
    from cityseg.runtime.normalize import Normalize, batch_to_device
    from cityseg.runtime.precision import Precision
    from cityseg.train.build import build_model
    from cityseg.train.losses import SegmentationLoss
    from cityseg.train.schedules import build_optimizer
    from cityseg.train.step import TrainingStep

    cached = CachedDataset(args.cache, "train", args.root, size, "pairs")
    count = args.train_images + args.val_images
    splits = Splits(
        SubsetDataset(cached, range(args.train_images)),
        SubsetDataset(cached, range(args.train_images, count)),
        "pairs",
        "",
    )
    switch = args.path.partition("+")[2]
    workers = {"workers0": 0, "workers1": 1}.get(switch, "auto")
    # The cache named as `cityseg train data.cache=...` names it: the loaders then read it the way
    # the trainer's do (validation in this process).
    data = DataConfig(
        root=args.root,
        size=list(size),
        scale=[1.0, 1.0],
        hflip=0.5,
        workers=workers,
        cache=str(args.cache),
    )
    # As the trainer sets them: pinned batches on CUDA, cuDNN's autotuner (deterministic=False).
    configure_determinism(TrainConfig().deterministic, device)
    pin_memory = device.type == "cuda"
    train, val = build_loaders(
        splits, data, args.batch_size, seed=0, pin_memory=pin_memory, cpu=device.type == "cpu"
    )
    set_epoch(train, 0)
    name, channels_last = args.setting["precision"], args.setting["channels_last"]
    if args.path == "fp32":  # the network's speed-ups off: float32, contiguous
        name, channels_last = "fp32", False
    name = switch if switch in ("fp32", "bf16") else name
    channels_last = {"contiguous": False, "channels_last": True}.get(switch, channels_last)
    model, _ = build_model(ModelConfig(**args.model), device, channels_last, pretrained=False)
    precision = Precision(name, device)
    scaler = precision.grad_scaler()
    optimizer = build_optimizer(model, TrainConfig(lr=1e-3))
    criterion = SegmentationLoss(19).to(device)
    norm = model.normalization
    normalize = Normalize(norm["mean"], norm["std"], channels_last=channels_last).to(device)

    train_step = TrainingStep(model, criterion, optimizer, scaler, precision, normalize)

    def validate(images, targets, confusion):
        images, targets = batch_to_device(images, targets, normalize)
        with precision.autocast():
            predictions = model(images).argmax(1)
        synchronize(device)  # the forward pass ends here, not inside the metric time
        started = time.perf_counter()
        confusion.update(predictions, targets)
        synchronize(device)
        return time.perf_counter() - started

    def mean_iou(confusion) -> float:
        from cityseg.labels import CLASS_NAMES

        matrix = confusion.matrix.cpu().numpy()
        return float(summarize(matrix, list(CLASS_NAMES))["mean_iou"] or 0.0)

    confusion = ConfusionMatrix(19, device=device)
    result = run_epoch(model, train, val, train_step, validate, confusion, mean_iou, device)
    layout = "channels_last" if channels_last else "contiguous"
    result["setup"] = (
        f"precision {name}, {layout}, {train.num_workers} loader worker(s), "
        f"{torch.get_num_threads()} thread(s), allocator {describe_allocator()}"
    )
    return result


def describe_allocator() -> str:
    from cityseg.runtime.allocator import describe_allocator as allocator

    return allocator()


# --- shared -----------------------------------------------------------------------------------


def run_epoch(model, train, val, train_step, validate, state, mean_iou, device) -> dict:
    """Time one pass over ``train`` and one over ``val``."""
    import torch

    model.train()
    started, waited = time.perf_counter(), 0.0
    batches = iter(train)
    while True:
        wait_start = time.perf_counter()
        try:
            images, targets = next(batches)
        except StopIteration:
            break
        waited += time.perf_counter() - wait_start
        train_step(images, targets)
    synchronize(device)
    train_seconds = time.perf_counter() - started
    model.eval()
    started, metric_seconds = time.perf_counter(), 0.0
    with torch.no_grad():
        for images, targets in val:
            metric_seconds += validate(images, targets, state)
    synchronize(device)
    val_seconds = time.perf_counter() - started
    return {
        "train_seconds": train_seconds,
        "data_wait_seconds": waited,
        "val_seconds": val_seconds,
        "metric_seconds": metric_seconds,
        "epoch_seconds": train_seconds + val_seconds,
        "mean_iou": mean_iou(state),
    }
