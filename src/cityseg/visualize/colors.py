"""Colour masks, overlays, error maps and the legend of the classes a mask holds.

Everything here is numpy only; ``color_mask_with_legend`` imports matplotlib when it is called.

Example:
    >>> import numpy as np
    >>> from cityseg.visualize import colorize, overlay
    >>> mask = np.array([[0, 13], [255, 10]], dtype=np.uint8)
    >>> colorize(mask)[0, 1].tolist()  # car
    [0, 0, 142]
    >>> overlay(np.zeros((2, 2, 3), np.uint8), mask, alpha=0.5)[1, 0].tolist()  # ignore: photo kept
    [0, 0, 0]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cityseg.labels import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES, PALETTE, colorize

__all__ = [
    "CORRECT_DIM",
    "ERROR_COLOR",
    "IGNORE_COLOR",
    "color_mask_with_legend",
    "colorize",
    "error_map",
    "legend_entries",
    "overlay",
]

ERROR_COLOR = (255, 0, 0)
"""Wrongly predicted pixels in an error map."""
IGNORE_COLOR = (160, 160, 160)
"""Pixels whose ground truth is ignore (255) in an error map."""
CORRECT_DIM = 0.4
"""Brightness kept by correctly predicted pixels (shown as a dimmed greyscale) in an error map."""


def _check_mask(train_ids: np.ndarray, name: str = "train_ids") -> np.ndarray:
    mask = np.asarray(train_ids)
    if mask.ndim != 2:
        raise ValueError(f"{name} must be a (H, W) trainId mask, got shape {mask.shape}")
    if not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"{name} must hold integer trainIds, got dtype {mask.dtype}")
    return mask


def _check_image(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != shape:
        raise ValueError(f"image must be RGB of shape {(*shape, 3)}, got {image.shape}")
    return image


def _lookup(train_ids: np.ndarray) -> np.ndarray:
    """Colour any integer mask: values outside 0..255 are treated as ignore."""
    mask = train_ids if train_ids.dtype == np.uint8 else np.clip(train_ids, 0, 255).astype(np.uint8)
    return colorize(mask)


def overlay(image: np.ndarray, train_ids: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend the colour mask over the photo; ignore (255) pixels keep the photo unchanged.

    Args:
        image: RGB uint8 (H, W, 3).
        train_ids: trainId mask (H, W), 255 = ignore.
        alpha: weight of the colour mask, 0 (photo only) to 1 (mask only).

    Returns:
        RGB uint8 (H, W, 3).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be within [0, 1], got {alpha}")
    mask = _check_mask(train_ids)
    image = _check_image(image, mask.shape)
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * _lookup(mask).astype(np.float32)
    out = np.rint(blended).astype(np.uint8)
    labelled = mask < NUM_CLASSES
    return np.where(labelled[..., None], out, image.astype(np.uint8))


def _greyscale(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def error_map(
    prediction: np.ndarray, target: np.ndarray, image: np.ndarray | None = None
) -> np.ndarray:
    """Show where a prediction is wrong: red errors, grey ignore, correct pixels dimmed.

    Correct pixels show the photo (or, without one, the ground-truth colours) in dimmed greyscale,
    so that the red errors stand out while the scene stays recognisable.

    Args:
        prediction: predicted trainIds (H, W).
        target: ground-truth trainIds (H, W), 255 = ignore.
        image: optional RGB uint8 photo (H, W, 3) shown dimmed under correct pixels.

    Returns:
        RGB uint8 (H, W, 3).
    """
    prediction = _check_mask(prediction, "prediction")
    target = _check_mask(target, "target")
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {prediction.shape} and target {target.shape} differ in shape")
    background = _lookup(target) if image is None else _check_image(image, target.shape)
    dimmed = np.rint(CORRECT_DIM * _greyscale(background)).astype(np.uint8)
    out = np.repeat(dimmed[..., None], 3, axis=2)
    ignored = target == IGNORE_INDEX
    out[(prediction != target) & ~ignored] = ERROR_COLOR
    out[ignored] = IGNORE_COLOR
    return out


def legend_entries(*masks: np.ndarray) -> list[tuple[int, str, tuple[int, int, int]]]:
    """The classes present in one or more trainId masks, in trainId order.

    Returns:
        ``(train_id, class_name, (r, g, b))`` for each class present; ignore is not listed.
    """
    counts = np.zeros(256, dtype=np.int64)
    for mask in masks:
        counts += np.bincount(np.clip(_check_mask(mask), 0, 255).ravel(), minlength=256)
    present = np.flatnonzero(counts[:NUM_CLASSES])
    return [(int(i), CLASS_NAMES[i], tuple(int(c) for c in PALETTE[i])) for i in present]


def color_mask_with_legend(
    train_ids: np.ndarray,
    path: str | Path,
    image: np.ndarray | None = None,
    alpha: float = 0.5,
    title: str | None = None,
) -> Path:
    """Save a PNG of the colour mask (or its overlay on ``image``) with a legend of its classes.

    Args:
        train_ids: trainId mask (H, W), 255 = ignore (black, or the bare photo in an overlay).
        path: where to write the PNG; parent folders are created.
        image: optional RGB photo; when given the mask is blended over it with ``alpha``.
        alpha: mask weight of the overlay.
        title: optional figure title.

    Returns:
        The path written.
    """
    # Loaded on first use: the colour helpers serve `cityseg predict`, which draws no legend.
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    mask = _check_mask(train_ids)
    picture = _lookup(mask) if image is None else overlay(image, mask, alpha)
    handles = [
        Patch(facecolor=np.array(rgb) / 255, edgecolor="0.3", label=name)
        for _, name, rgb in legend_entries(mask)
    ]
    if image is None and np.any(mask >= NUM_CLASSES):
        handles.append(Patch(facecolor="black", edgecolor="0.3", label="ignore"))

    height, width = mask.shape
    figure = Figure(figsize=(8 + 2.2, 8 * height / width + 0.6), layout="constrained")
    axes = figure.add_subplot()
    axes.imshow(picture, interpolation="nearest")
    axes.set_axis_off()
    if title:
        axes.set_title(title)
    if handles:
        figure.legend(handles=handles, loc="outside right center", frameon=False, fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path
