"""Segment photos with a checkpoint in PyTorch: whole image, sliding window, flip and multi-scale
TTA, all from :mod:`cityseg.inference`. Shipped checkpoints are found by name with
:func:`~cityseg.pretrained.pretrained_path`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from cityseg import labels
from cityseg.checkpoint.loading import load_model
from cityseg.inference.options import InferenceOptions
from cityseg.inference.predictor import Predictor
from cityseg.normalization import IMAGENET_NORMALIZATION
from cityseg.predict.base import BaseSegmenter, check_batch, check_photo
from cityseg.pretrained import pretrained_path
from cityseg.runtime.device import resolve_device


class Segmenter(BaseSegmenter):
    """Segment RGB photos into Cityscapes trainIds with a trained network.

    Args:
        model: network mapping a normalised float batch (N, 3, H, W) to logits (N, 19, H, W).
        normalization: ``{"mean": [...], "std": [...]}`` on the 0..1 scale (default: ImageNet).
        device: "auto" (CUDA, then MPS, else CPU), "cpu", "cuda", "cuda:N", "mps".
        options: the inference mode and its settings (default: the whole image at the scale the
            network was trained at: resized to ``input_size`` if given, else at its own size);
            :meth:`InferenceOptions.from_flags` builds them as the commands do. Predictions always
            come back at the image's size.
        input_size: (height, width) the images were resized to in training: the size every
            image is resized to unless ``options.resize`` says otherwise.
        crop_size: (height, width) of the training crops, if any (the default sliding-window tile;
            with no ``input_size``, images run at their own size).
        class_names: names of the classes, indexed by trainId.
        palette: RGB colour of each class.

    Example:
        >>> import numpy as np
        >>> from cityseg.model import UNet
        >>> from cityseg.predict import Segmenter
        >>> segmenter = Segmenter(UNet(base_width=4, depth=2), device="cpu")
        >>> # usually: segmenter = Segmenter.from_checkpoint("runs/demo/best.pt"), or with
        >>> # options=InferenceOptions.from_flags("slide", tta=True)
        >>> train_ids = segmenter.predict(np.zeros((40, 70, 3), np.uint8))
        >>> train_ids.shape, train_ids.dtype
        ((40, 70), dtype('uint8'))
        >>> len(segmenter.predict_batch(np.zeros((2, 40, 70, 3), np.uint8)))
        2
    """

    def __init__(
        self,
        model,
        normalization: dict[str, Sequence[float]] | None = None,
        *,
        device: str = "auto",
        options: InferenceOptions | None = None,
        input_size: Sequence[int] | None = None,
        crop_size: Sequence[int] | None = None,
        class_names: Sequence[str] = labels.CLASS_NAMES,
        palette: Sequence[Sequence[int]] | np.ndarray = labels.PALETTE,
    ) -> None:
        self.input_size = tuple(input_size) if input_size else None
        self.crop_size = tuple(crop_size) if crop_size else None
        default = getattr(model, "normalization", IMAGENET_NORMALIZATION)
        self.normalization = dict(normalization or default)
        self.class_names = list(class_names)
        self.palette = np.asarray(palette, dtype=np.uint8)
        self.device = resolve_device(device)
        self.predictor = Predictor(
            model,
            self.normalization["mean"],
            self.normalization["std"],
            self.device,
            options,
            self.input_size,
            self.crop_size,
        )
        self.options = self.predictor.options
        self.scale_line = self.predictor.scale_line
        """The scale the network runs at, why, and how to change it (one line)."""

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str = "auto", options: InferenceOptions | None = None
    ) -> Segmenter:
        """A segmenter for a checkpoint written by ``cityseg train``.

        Args:
            path: the ``.pt`` file.
            device: "auto", "cpu", "cuda", "cuda:N", "mps".
            options: the inference options (default: the whole image at the scale the network
                was trained at, see :mod:`cityseg.inference.options`).

        Raises:
            CheckpointError: the file is missing or is not a cityseg checkpoint.
            ConfigError: an invalid inference option or device.
        """
        resolved = resolve_device(device)
        model, meta = load_model(path, resolved)
        palette = meta.get("palette")
        return cls(
            model,
            meta["normalization"],
            device=str(resolved),
            input_size=meta.get("input_size"),
            crop_size=meta.get("crop_size"),
            class_names=meta.get("class_names") or labels.CLASS_NAMES,
            palette=labels.PALETTE if palette is None else palette,
            options=options,
        )

    @classmethod
    def from_pretrained(
        cls, name: str, device: str = "auto", options: InferenceOptions | None = None
    ) -> Segmenter:
        """A segmenter for a checkpoint shipped with cityseg (``"pairs"``) or a model on the
        Hugging Face Hub (``"hf:USER/NAME"`` or ``"hf:USER/NAME@REVISION"``, cached after the first
        download; see :func:`pretrained_path`); like every checkpoint, it runs at the scale it was
        trained at unless ``options`` say otherwise.
        """
        return cls.from_checkpoint(pretrained_path(name), device, options)

    def predict(self, image: np.ndarray) -> np.ndarray:
        """TrainIds (H, W) uint8 of one RGB uint8 photo (H, W, 3)."""
        return self.predictor.predict(check_photo(image)).cpu().numpy()

    def predict_batch(
        self, images: Sequence[np.ndarray] | np.ndarray
    ) -> list[np.ndarray] | np.ndarray:
        if isinstance(images, np.ndarray) and images.ndim == 4:
            return self.predictor.predict(check_batch(images)).cpu().numpy()
        return super().predict_batch(images)

    def probabilities_batch(self, images: np.ndarray) -> np.ndarray:
        return self.predictor.probabilities(check_batch(images)).float().cpu().numpy()

    def smoothed_labels(self, smooth: float) -> DeviceProbabilityAverage:
        """TrainIds of consecutive frames whose class probabilities are averaged over time on
        this segmenter's device (``predict_video(smooth=...)``)."""
        return DeviceProbabilityAverage(self.predictor, smooth)


class DeviceProbabilityAverage:
    """:class:`~cityseg.predict.video.ProbabilityAverage` kept on the predictor's device: the
    float32 average never leaves it (at 1024x2048, 19 classes, 160 MB a frame); only each batch's
    uint8 trainIds are copied to the host, in one copy. The same operations in the same order as
    the numpy average, so on a CPU the same trainIds.
    """

    def __init__(self, predictor: Predictor, smooth: float) -> None:
        self.predictor, self.smooth = predictor, smooth
        self.average: torch.Tensor | None = None

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        """TrainIds (N, H, W) uint8 of the next frames (N, H, W, 3) of the sequence, in order."""
        labels = []
        for probabilities in self.predictor.probabilities(check_batch(images)).float():
            if self.average is None:
                self.average = probabilities
            else:
                self.average = self.smooth * probabilities + (1 - self.smooth) * self.average
            labels.append(self.average.argmax(dim=0).to(torch.uint8))
        return torch.stack(labels).cpu().numpy()
