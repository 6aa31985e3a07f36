"""Inference modes: whole image, sliding window, flip and multi-scale TTA."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from cityseg.errors import ConfigError
from cityseg.inference.options import InferenceOptions
from cityseg.inference.predictor import Predictor
from cityseg.inference.windows import (
    sliding_window_probabilities,
    tile_origins,
    window_weights,
)
from cityseg.normalization import IMAGENET_NORMALIZATION

MEAN, STD = IMAGENET_NORMALIZATION["mean"], IMAGENET_NORMALIZATION["std"]
NUM_CLASSES = 5


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a shared machine they oversubscribe it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def context_model(hidden: int = 8, seed: int = 0) -> nn.Module:
    """A small network whose output depends on a 5x5 neighbourhood (so tiles matter)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, NUM_CLASSES, 3, padding=1)
    )


def flip_equivariant_model(seed: int = 0) -> nn.Module:
    """Convolutions with left-right symmetric kernels: model(flip(x)) == flip(model(x))."""
    model = context_model(seed=seed)
    with torch.no_grad():
        for conv in (model[0], model[2]):
            conv.weight.copy_((conv.weight + conv.weight.flip(-1)) / 2)
    return model


def random_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def predictor(model: nn.Module, **options) -> Predictor:
    return Predictor(model, MEAN, STD, "cpu", InferenceOptions(**options))


def test_probabilities_are_a_distribution_and_predict_gives_uint8_train_ids():
    image = random_image(40, 56)
    probs = predictor(context_model()).probabilities(image)
    assert probs.shape == (NUM_CLASSES, 40, 56) and probs.dtype == torch.float32
    torch.testing.assert_close(probs.sum(0), torch.ones(40, 56))
    train_ids = predictor(context_model()).predict(image)
    assert train_ids.dtype == torch.uint8 and train_ids.shape == (40, 56)
    assert torch.equal(train_ids, probs.argmax(0).to(torch.uint8))


def test_batch_gives_the_same_as_one_image_at_a_time():
    images = np.stack([random_image(36, 44, seed) for seed in range(3)])
    for mode in ("whole", "slide"):
        run = predictor(context_model(), mode=mode, tile=(32, 32))
        batch = run.probabilities(images)
        assert batch.shape == (3, NUM_CLASSES, 36, 44)
        torch.testing.assert_close(batch[1], run.probabilities(images[1]))


def test_slide_with_one_tile_covering_the_image_equals_whole_image():
    image = random_image(45, 70)
    whole = predictor(context_model()).probabilities(image)
    for window in ("uniform", "gaussian"):
        slide = predictor(context_model(), mode="slide", tile=(64, 96), window=window)
        torch.testing.assert_close(slide.probabilities(image), whole)


def test_slide_blends_overlapping_tiles_into_the_per_pixel_answer():
    pointwise = nn.Conv2d(3, NUM_CLASSES, 1)  # no context: every tile agrees on every pixel
    image = random_image(50, 77)
    whole = predictor(pointwise).probabilities(image)
    for window in ("uniform", "gaussian"):
        slide = predictor(pointwise, mode="slide", tile=(32, 32), stride=(20, 13), window=window)
        torch.testing.assert_close(slide.probabilities(image), whole)


def test_slide_with_small_tiles_differs_from_whole_for_a_model_with_context():
    image = random_image(50, 77)
    whole = predictor(context_model()).probabilities(image)
    slide = predictor(context_model(), mode="slide", tile=(32, 32)).probabilities(image)
    assert (slide - whole).abs().max() > 1e-4


def test_flip_tta_on_a_flip_equivariant_model_equals_no_tta():
    image = random_image(33, 61)
    for mode in ("whole", "slide"):
        plain = predictor(flip_equivariant_model(), mode=mode, tile=(32, 48)).probabilities(image)
        flipped = predictor(flip_equivariant_model(), mode=mode, tile=(32, 48), flip=True)
        torch.testing.assert_close(flipped.probabilities(image), plain)


def test_flip_tta_changes_the_answer_of_an_asymmetric_model():
    image = random_image(33, 61)
    plain = predictor(context_model()).probabilities(image)
    flipped = predictor(context_model(), flip=True).probabilities(image)
    assert (flipped - plain).abs().max() > 1e-4


def test_multi_scale_averages_the_probabilities_of_each_scale():
    image = random_image(48, 64)
    one_each = [
        predictor(context_model(), scales=(scale,)).probabilities(image) for scale in (0.75, 1.25)
    ]
    both = predictor(context_model(), scales=(0.75, 1.25)).probabilities(image)
    torch.testing.assert_close(both, (one_each[0] + one_each[1]) / 2)


@pytest.mark.parametrize(
    "options",
    [
        {"mode": "whole"},
        {"mode": "whole", "resize": (32, 48)},
        {"mode": "whole", "scale": 0.5, "flip": True, "scales": (0.75, 1.0, 1.25)},
        {"mode": "slide", "tile": (32, 32), "stride": (21, 21)},
        {"mode": "slide", "tile": (32, 40), "flip": True, "scales": (0.75, 1.25)},
    ],
)
def test_output_has_the_requested_odd_size(options):
    image = random_image(37, 53)
    run = predictor(context_model(), **options)
    assert run.probabilities(image).shape == (NUM_CLASSES, 37, 53)
    assert run.predict(image, output_size=(75, 107)).shape == (75, 107)


def test_whole_image_resize_runs_the_network_at_the_requested_size():
    seen = []
    model = context_model()
    model.register_forward_hook(lambda module, args, out: seen.append(tuple(args[0].shape)))
    predictor(model, resize=(32, 64), scales=(1.0, 0.5)).probabilities(random_image(100, 150))
    assert seen == [(1, 3, 32, 64), (1, 3, 16, 32)]


class LargestTensor(TorchDispatchMode):
    """Records the number of elements of the largest tensor any operation produces."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self.largest = max(self.largest, leaf.numel())
        return out


def test_slide_memory_is_bounded_by_the_probability_buffer_and_one_tile_batch():
    hidden, height, width, tile, tile_batch = 64, 96, 160, (32, 48), 2
    image = random_image(height, width)
    bound = max(NUM_CLASSES * height * width, tile_batch * hidden * tile[0] * tile[1])
    runs = {
        mode: predictor(context_model(hidden), mode=mode, tile=tile, tile_batch=tile_batch)
        for mode in ("slide", "whole")
    }
    largest = {}
    for mode, run in runs.items():
        with LargestTensor() as tracker:
            run.predict(image)
        largest[mode] = tracker.largest
    assert largest["slide"] <= bound
    assert largest["whole"] > bound  # the check can fail: full-resolution features exceed it


def test_sliding_window_processes_tiles_in_batches_of_the_given_size():
    shapes = []

    def logits_fn(tiles: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(tiles.shape))
        return tiles[:, :2]

    x = torch.randn(1, 3, 64, 96)
    probs = sliding_window_probabilities(logits_fn, x, (32, 32), (32, 32), tile_batch=4)
    assert probs.shape == (1, 2, 64, 96)
    assert shapes == [(4, 3, 32, 32), (2, 3, 32, 32)]  # 2 rows x 3 columns of tiles


def test_tile_origins_cover_the_axis_and_end_flush():
    assert tile_origins(100, 32, 21) == [0, 21, 42, 63, 68]
    assert tile_origins(20, 32, 21) == [0]
    assert tile_origins(64, 32, 32) == [0, 32]


def test_gaussian_window_peaks_in_the_centre_and_stays_positive():
    weights = window_weights((32, 48), "gaussian")
    assert weights.shape == (32, 48) and weights.min() > 0.01
    assert weights[0, 24] > 0.1 and weights[16, 0] > 0.1
    assert weights[15:17, 23:25].min() > 0.99 and weights[0, 0] < weights[16, 24]
    assert torch.equal(window_weights((4, 5), "uniform"), torch.ones(4, 5))


def test_bf16_and_channels_last_agree_with_fp32():
    image = random_image(40, 64)
    reference = predictor(context_model()).probabilities(image)
    for options in ({"precision": "bf16"}, {"precision": "auto"}, {"channels_last": True}):
        probs = predictor(context_model(), **options).probabilities(image)
        assert probs.dtype == torch.float32
        torch.testing.assert_close(probs, reference, atol=0.05, rtol=0)


def test_invalid_options_are_user_errors():
    with pytest.raises(ConfigError, match="mode"):
        InferenceOptions(mode="tiles")
    with pytest.raises(ConfigError, match="stride"):
        predictor(context_model(), mode="slide", tile=(32, 32), stride=(40, 10))
    with pytest.raises(ConfigError, match="fp16"):
        predictor(context_model(), precision="fp16")
    with pytest.raises(ValueError, match="uint8"):
        predictor(context_model()).probabilities(np.zeros((8, 8, 3), np.float32))


def test_a_network_trained_on_crops_runs_at_the_scale_it_saw(tmp_path):
    """``resize="train"`` is the size the images were resized to, not the crop; the crop is the
    default tile; trained on crops of images at their own size, "train" keeps the image's size."""
    from tests.helpers.checkpoints import save_tiny_checkpoint

    scaled = save_tiny_checkpoint(tmp_path / "scaled.pt", (128, 256), 0, 8, 3, "data.crop=[64, 96]")
    meta = torch.load(scaled, weights_only=True)
    assert meta["input_size"] == [128, 256] and meta["crop_size"] == [64, 96]
    whole = Predictor.from_checkpoint(scaled, "cpu", InferenceOptions(resize="train"))
    assert whole.options.resize == (128, 256)
    slide = Predictor.from_checkpoint(scaled, "cpu", InferenceOptions(mode="slide"))
    assert slide.tile == (64, 96)

    native = tmp_path / "native.pt"
    save_tiny_checkpoint(native, (64, 64), 0, 8, 3, "data.size=null", "data.crop=[64, 96]")
    meta = torch.load(native, weights_only=True)
    assert meta["input_size"] is None and meta["crop_size"] == [64, 96]
    own_size = Predictor.from_checkpoint(native, "cpu", InferenceOptions(resize="train"))
    assert own_size.options.resize is None
    image = random_image(70, 110)
    assert own_size.predict(image).shape == (70, 110)
