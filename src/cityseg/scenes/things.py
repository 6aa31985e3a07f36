"""What a scene is made of: annotated things, each painted with one or more coloured layers."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cityseg.scenes.geometry import clip_to_image, trace_outline


@dataclass
class Paint:
    """One layer of the photo: polygons filled with a colour, a texture and a vertical ramp.

    The polygons of one paint are filled together with the even-odd rule (a ring is an outer and an
    inner outline); they must not overlap otherwise. They may be a list of (N, 2) arrays or one
    (M, N, 2) array, float or already rounded to int32 pixels.

    Args:
        polygons: image polygons (see above).
        color: RGB at the top of the paint's extent.
        color_bottom: RGB at the bottom of its extent (None: same as ``color``).
        grain: amplitude of the fine pixel noise.
        blotch: amplitude of the low-frequency (leafy, stained) noise.
        depth: distance in metres, for the haze of far things.
        ground: whether shadows cast on the ground darken it.
    """

    polygons: list[np.ndarray] | np.ndarray
    color: np.ndarray
    color_bottom: np.ndarray | None = None
    grain: float = 3.0
    blotch: float = 2.0
    depth: float = 10.0
    ground: bool = False


@dataclass
class Thing:
    """An annotated object: a Cityscapes label, its outline polygon(s) and its paints.

    Args:
        label: a Cityscapes label name ("car", "traffic sign", ...).
        polygons: int32 (N, 2) annotation polygons, clipped to the image, drawn in order.
        paints: the layers that draw it in the photo, in order.
        depth: the nearest distance of the thing, for the far-to-near drawing order.
    """

    label: str
    polygons: list[np.ndarray]
    paints: list[Paint] = field(default_factory=list)
    depth: float = 0.0


def outlined(
    label: str, outlines: list[np.ndarray], paints: list[Paint], depth: float, size: tuple[int, int]
) -> Thing | None:
    """A thing annotated by given outlines (clipped to the image); None when none is visible."""
    height, width = size
    polygons = [p for p in (clip_to_image(o, width, height) for o in outlines) if p is not None]
    if not polygons:
        return None
    return Thing(label, polygons, paints, depth)


def traced(label: str, paints: list[Paint], depth: float, size: tuple[int, int]) -> Thing | None:
    """A thing annotated by one polygon around the union of its paints (people, vehicles).

    The paints' polygons are rounded to pixels here, once, for the outline and the painter alike.
    """
    height, width = size
    for paint in paints:
        paint.polygons = [np.rint(p).astype(np.int32) for p in paint.polygons]
    outline = trace_outline([p for paint in paints for p in paint.polygons], width, height)
    if outline is None:
        return None
    return Thing(label, [outline], paints, depth)
