"""Contract testers: what every dataset, every network and every segmenter of cityseg promises,
written once and run for each implementation by subclassing (as segmentation_models_pytorch's
model tester is).

A test module subclasses a contract as ``TestXxx(DatasetContract)`` and gives the fixture the
contract asks for; pytest then runs every ``test_*`` of the contract against that implementation.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from cityseg import labels
from cityseg.export import export_model
from cityseg.inference.options import InferenceOptions
from cityseg.model import SegmentationModel, model_from_config

VALID_TRAIN_IDS = np.isin(np.arange(256), [*range(labels.NUM_CLASSES), labels.IGNORE_INDEX])


class DatasetContract:
    """Every dataset (official layout, pairs, prepared cache) yields ``(image, target)``: an RGB
    uint8 photo (H, W, 3) and its uint8 trainIds (H, W), 255 = ignore; lists its files as
    ``samples`` and ``frame_ids``; takes ``max_images`` and ``transform``; and survives being
    pickled into a DataLoader worker.

    Subclasses give the fixture ``open_split``: a function ``open_split(**options)`` that opens
    one labelled split of at least three images with those options.
    """

    @pytest.fixture
    def dataset(self, open_split: Callable):
        return open_split()

    def test_an_item_is_a_photo_and_its_train_ids(self, dataset):
        image, target = dataset[0]
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert target.dtype == np.uint8 and target.shape == image.shape[:2]
        assert VALID_TRAIN_IDS[np.unique(target)].all()
        assert dataset.has_labels

    def test_samples_frame_ids_and_length_agree(self, dataset):
        assert len(dataset) >= 3
        assert len(dataset.samples) == len(dataset.frame_ids) == len(dataset)
        assert dataset.frame_ids == [sample.frame_id for sample in dataset.samples]
        assert len(set(dataset.frame_ids)) == len(dataset)

    def test_negative_indices_count_from_the_end(self, dataset):
        np.testing.assert_array_equal(dataset[-1][0], dataset[len(dataset) - 1][0])
        with pytest.raises(IndexError):
            dataset[len(dataset)]

    def test_max_images_keeps_the_first_ones(self, dataset, open_split):
        first = open_split(max_images=2)
        assert len(first) == 2 and first.frame_ids == dataset.frame_ids[:2]
        np.testing.assert_array_equal(first[1][1], dataset[1][1])

    def test_a_transform_receives_every_item(self, dataset, open_split):
        flipped = open_split(transform=lambda image, target: (image[:, ::-1], target[:, ::-1]))
        image, target = dataset[1]
        np.testing.assert_array_equal(flipped[1][0], image[:, ::-1])
        np.testing.assert_array_equal(flipped[1][1], target[:, ::-1])

    def test_it_survives_pickling_into_a_worker(self, dataset):
        copy = pickle.loads(pickle.dumps(dataset))
        assert len(copy) == len(dataset)
        np.testing.assert_array_equal(copy[0][1], dataset[0][1])

    def test_it_names_its_format(self, dataset):
        assert dataset.format in ("cityscapes", "pairs")


def photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A random RGB uint8 photo."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


class SegmenterContract:
    """Every segmenter (PyTorch checkpoint, exported ONNX model) turns RGB uint8 photos of any size
    into trainIds of that size, one photo, an array batch or a list of photos of several sizes,
    gives class probabilities that sum to one, reads files, and names its classes.

    Subclasses give the fixture ``make``: a function ``make(options=None)`` that opens the
    implementation on the CPU for a model of the 19 Cityscapes classes trained at 64x128, with
    those :class:`InferenceOptions` (None: the defaults).
    """

    @pytest.fixture
    def segmenter(self, make: Callable):
        return make()

    def test_predict_gives_train_ids_of_the_photo_size(self, segmenter):
        train_ids = segmenter.predict(photo(37, 50))
        assert train_ids.shape == (37, 50) and train_ids.dtype == np.uint8
        assert train_ids.max() < labels.NUM_CLASSES

    def test_a_batch_array_or_a_list_of_sizes(self, segmenter):
        batch = np.stack([photo(40, 56, 1), photo(40, 56, 2)])
        predicted = segmenter.predict_batch(batch)
        assert isinstance(predicted, np.ndarray) and predicted.shape == (2, 40, 56)
        assert np.mean(predicted[1] == segmenter.predict(batch[1])) > 0.999
        mixed = segmenter.predict_batch([photo(40, 56), photo(33, 47)])
        assert [m.shape for m in mixed] == [(40, 56), (33, 47)]

    def test_probabilities_sum_to_one_and_give_the_prediction(self, segmenter):
        batch = np.stack([photo(40, 56, 3)])
        probabilities = segmenter.probabilities_batch(batch)
        assert probabilities.shape == (1, labels.NUM_CLASSES, 40, 56)
        assert probabilities.dtype == np.float32
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
        agreement = np.mean(probabilities[0].argmax(axis=0) == segmenter.predict(batch[0]))
        assert agreement > 0.999

    def test_what_is_not_an_rgb_uint8_photo_is_refused(self, segmenter):
        for wrong in (photo(20, 30).astype(np.float32), photo(20, 30)[..., 0]):
            with pytest.raises(ValueError, match="uint8"):
                segmenter.predict(wrong)

    def test_predict_file_reads_a_photo(self, segmenter, tmp_path):
        picture = photo(36, 52, 4)
        cv2.imwrite(str(tmp_path / "photo.png"), picture[..., ::-1])
        np.testing.assert_array_equal(
            segmenter.predict_file(tmp_path / "photo.png"), segmenter.predict(picture)
        )

    def test_it_names_its_classes_and_their_colours(self, segmenter):
        assert list(segmenter.class_names) == list(labels.CLASS_NAMES)
        np.testing.assert_array_equal(np.asarray(segmenter.palette), labels.PALETTE)

    def test_resize_to_the_training_size_and_tta_keep_the_photo_size(self, make):
        segmenter = make(InferenceOptions.from_flags(resize="train", tta=True))
        assert segmenter.input_size == (64, 128)
        assert segmenter.predict(photo(45, 70)).shape == (45, 70)


def with_trained_statistics(model: SegmentationModel) -> SegmentationModel:
    """``model`` in eval mode after one training-mode forward, so that its BatchNorm running
    statistics are not the defaults (an identity)."""
    model.train()
    with torch.no_grad():
        model(torch.randn(2, model.in_channels, 64, 64))
    return model.eval()


class ModelContract:
    """Every network (the plain U-Net, the U-Net on each pretrained encoder) gives logits of its
    input's height and width at any size it accepts, padding inside to a multiple of its total
    stride and cropping back; names the nearest valid shape for an input it cannot take; passes
    gradients to every parameter; is rebuilt exactly from its config dict and state dict (as a
    checkpoint stores them); and exports to ONNX with the same logits.

    Subclasses give the fixture ``model_config``: the config dict of a tiny instance (for
    :func:`cityseg.model.model_from_config`).
    """

    SIZES = ((64, 64), (33, 47), (37, 100))
    """A multiple of every total stride, and two odd sizes that are none."""

    @pytest.fixture
    def model(self, model_config: dict[str, Any]) -> SegmentationModel:
        torch.manual_seed(0)
        return model_from_config(model_config)

    def test_logits_have_the_input_size_at_any_size(self, model):
        for height, width in self.SIZES:
            with torch.no_grad():
                logits = model(torch.randn(2, model.in_channels, height, width))
            assert logits.shape == (2, model.num_classes, height, width)
            assert torch.isfinite(logits).all()

    def test_a_multiple_of_the_stride_runs_as_it_is(self, model):
        model = with_trained_statistics(model)
        side = -(-model.min_size // model.multiple) * model.multiple
        x = torch.randn(2, model.in_channels, 2 * side, 3 * side)
        with torch.no_grad():
            assert torch.equal(model(x), model.forward_padded(x))

    def test_an_odd_size_is_replicate_padded_then_cropped(self, model):
        model = with_trained_statistics(model)
        height, width = model.min_size + 1, model.min_size + 15
        x = torch.randn(1, model.in_channels, height, width)
        padded_height = -(-height // model.multiple) * model.multiple
        padded_width = -(-width // model.multiple) * model.multiple
        padded = F.pad(x, (0, padded_width - width, 0, padded_height - height), mode="replicate")
        with torch.no_grad():
            expected = model.forward_padded(padded)[:, :, :height, :width]
            torch.testing.assert_close(model(x), expected, atol=1e-6, rtol=1e-5)

    def test_an_input_it_cannot_take_names_the_nearest_valid_shape(self, model):
        side, channels = model.min_size, model.in_channels
        for shape, nearest in [
            ((1, channels, side - 1, side + 18), (1, channels, side, side + 18)),
            ((2, channels + 1, 2 * side, side - 1), (2, channels, 2 * side, side)),
        ]:
            with pytest.raises(ValueError, match=f"H, W >= {side}") as error:
                model(torch.randn(*shape))
            assert f"the nearest valid shape is {nearest}" in str(error.value)
        with pytest.raises(ValueError, match="4-D input") as error:
            model(torch.randn(channels, side + 8, side + 8))
        assert f"add the batch dimension: {(1, channels, side + 8, side + 8)}" in str(error.value)

    def test_gradients_reach_the_input_and_every_parameter(self, model):
        x = torch.randn(2, model.in_channels, 33, 47, requires_grad=True)
        model.train()(x).square().mean().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
        for name, parameter in model.named_parameters():
            assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name

    def test_config_and_state_dict_rebuild_it_exactly(self, model, tmp_path):
        model = with_trained_statistics(model)
        config = json.loads(json.dumps(model.config))
        assert yaml.safe_load(yaml.safe_dump(model.config)) == config
        torch.save({"model_config": config, "model": model.state_dict()}, tmp_path / "model.pt")
        saved = torch.load(tmp_path / "model.pt", weights_only=True)
        rebuilt = model_from_config(saved["model_config"])
        rebuilt.load_state_dict(saved["model"], strict=True)
        rebuilt.eval()
        assert type(rebuilt) is type(model) and rebuilt.config == model.config
        assert type(model)(**model.config).config == model.config
        x = torch.randn(2, model.in_channels, 37, 100)
        with torch.no_grad():
            assert torch.equal(rebuilt(x), model(x))

    @pytest.mark.slow
    def test_onnx_export_agrees_with_pytorch(self, model, tmp_path):
        model = with_trained_statistics(model)
        result = export_model(model, tmp_path / "model.onnx", model.normalization, verify=True)
        assert result.path.is_file()
        assert result.max_abs_logit_diff < 1e-3 and result.label_agreement > 0.9999
