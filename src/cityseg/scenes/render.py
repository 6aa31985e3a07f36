"""Render one generated street scene: photo, labelIds, instanceIds and polygons together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cityseg.labels import LABEL_COLORS
from cityseg.scenes.painter import draw
from cityseg.scenes.palette import calmer
from cityseg.scenes.scene import compose

MIN_SIZE = (32, 32)


@dataclass
class Scene:
    """A generated street scene with its ground truth in the official Cityscapes encodings.

    Attributes:
        image: RGB photo, uint8 (H, W, 3).
        label_ids: official labelIds, uint8 (H, W).
        instance_ids: official instanceIds, uint16 (H, W): ``labelId * 1000 + index`` on the
            classes with instances (person, rider, car, truck, bus, train, motorcycle, bicycle),
            the labelId elsewhere.
        polygons: the annotation objects in drawing order, ``{"label": name, "polygon": [[x, y],
            ...]}``; filling them in order with ``json2labelImg`` gives ``label_ids`` back.

    Example:
        >>> scene = render_scene(0, height=64, width=128)
        >>> scene.image.shape, scene.label_ids.dtype.name, scene.instance_ids.dtype.name
        ((64, 128, 3), 'uint8', 'uint16')
    """

    image: np.ndarray
    label_ids: np.ndarray
    instance_ids: np.ndarray
    polygons: list[dict]

    @property
    def height(self) -> int:
        return int(self.label_ids.shape[0])

    @property
    def width(self) -> int:
        return int(self.label_ids.shape[1])

    def annotation(self) -> dict:
        """The official ``*_gtFine_polygons.json`` content."""
        return {"imgHeight": self.height, "imgWidth": self.width, "objects": self.polygons}

    def color(self) -> np.ndarray:
        """The official ``*_gtFine_color.png`` content: each labelId's colour, RGB uint8."""
        return LABEL_COLORS[self.label_ids]


def render_scene(
    rng_or_seed: np.random.Generator | int | Sequence[int],
    height: int = 256,
    width: int = 512,
    variation: float = 1.0,
) -> Scene:
    """Generate one street scene: a random street laid out, then drawn at ``height`` x ``width``.

    The same seed always gives the same bytes; the scene's content does not depend on the size
    except for details too small to draw. ``variation`` in [0, 1] scales how much the photo
    varies beyond the layout: the lighting's colour cast, haze and shadows, the vignetting and
    the textures (1: full realism; lower: calmer pictures that a small model learns faster). The
    layout and the ground truth are the same for any ``variation``.
    """
    if not 0.0 <= variation <= 1.0:
        raise ValueError(f"variation {variation} is outside [0, 1]")
    if height < MIN_SIZE[0] or width < MIN_SIZE[1]:
        raise ValueError(f"scene size {height}x{width} is too small; use at least 32x32")
    rng = (
        rng_or_seed
        if isinstance(rng_or_seed, np.random.Generator)
        else (np.random.default_rng(rng_or_seed))
    )
    layout = compose(rng, height, width)
    layout.lighting = calmer(layout.lighting, variation)
    drawing = draw(layout, rng, variation)
    return Scene(drawing.image, drawing.label_ids, drawing.instance_ids, drawing.objects)
