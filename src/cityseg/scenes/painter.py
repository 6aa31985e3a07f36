"""Draw a laid-out scene: the labelIds and instanceIds masks from the annotation polygons, and the
photo from the paints, with textures, shadows and the scene's lighting.

The masks are drawn from the annotation polygons with PIL's ``ImageDraw.polygon``, in order, the
very way the official ``json2labelImg`` and ``json2instanceImg`` rasterise the saved json, so the
json reproduces them pixel for pixel. The photo is drawn with ``cv2.fillPoly`` as a map of paint
indices first; colours, ramps and noise are then looked up per pixel in one pass, which is what
makes a frame take milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from cityscapesscripts.helpers.labels import name2label
from PIL import Image, ImageDraw

from cityseg.scenes.palette import Lighting
from cityseg.scenes.scene import Layout
from cityseg.scenes.things import Paint

NOISE_MARGIN = 64


@dataclass
class Drawing:
    """The rasterised scene: photo, masks and the annotation objects in drawing order."""

    image: np.ndarray
    label_ids: np.ndarray
    instance_ids: np.ndarray
    objects: list[dict]


class _PaintTable:
    """One entry per paint (entry 0: nothing painted): colours, ramp rows, textures, flags."""

    def __init__(self) -> None:
        black = np.zeros(3)
        self.tops, self.bottoms = [black], [black]
        self.styles: list[tuple[float, float, float, float, float, float]] = [(0, 1, 0, 0, 0, 0)]

    def add(self, paint: Paint, top: float, bottom: float) -> int:
        self.tops.append(paint.color)
        self.bottoms.append(paint.color if paint.color_bottom is None else paint.color_bottom)
        self.styles.append((top, bottom, paint.grain, paint.blotch, paint.ground, paint.depth))
        return len(self.styles) - 1

    def arrays(self, lighting: Lighting, variation: float = 1.0) -> tuple[np.ndarray, ...]:
        """Per paint, with the scene's light applied: colour at row 0 and its change per row (both
        (3, K), one plane per channel), grain and blotch (scaled by ``variation``), and whether it
        is ground (K,)."""
        top, bottom, grain, blotch, ground, depth = np.array(self.styles, dtype=np.float64).T
        if variation != 1.0:
            grain, blotch = grain * variation, blotch * variation
        haze = (1.0 - np.exp(-depth / lighting.haze_distance))[:, None] * 0.7
        colors = []
        for color in (np.array(self.tops, dtype=np.float64), np.array(self.bottoms, np.float64)):
            faded = color * (1.0 - haze) + lighting.haze * haze
            grey = faded.mean(axis=1, keepdims=True)
            colors.append((grey + (faded - grey) * lighting.saturation) * lighting.gain)
        slope = (colors[1] - colors[0]) / np.maximum(bottom - top, 1.0)[:, None]
        offset = colors[0] - slope * top[:, None]
        return tuple(
            np.ascontiguousarray(a, dtype=np.float32)
            for a in (offset.T, slope.T, grain, blotch, ground)
        )


def draw(layout: Layout, rng: np.random.Generator, variation: float = 1.0) -> Drawing:
    """Rasterise ``layout``; ``rng`` only varies the noise, never the geometry; ``variation``
    scales the textures and the vignetting (1: as painted, 0: flat colours)."""
    camera = layout.camera
    height, width = camera.height, camera.width
    things_image = Image.new("I", (width, height), 0)
    pen = ImageDraw.Draw(things_image)
    paint_index = np.zeros((height, width), dtype=np.uint16)
    thing_label_ids, thing_instance_ids = [0], [0]
    table = _PaintTable()
    objects = []
    instances: dict[str, int] = {}
    for thing in layout.things:
        label = name2label[thing.label]
        value = label.id
        if label.hasInstances:
            value = label.id * 1000 + instances.get(thing.label, 0)
            instances[thing.label] = instances.get(thing.label, 0) + 1
        thing_label_ids.append(label.id)
        thing_instance_ids.append(value)
        for polygon in thing.polygons:
            points = polygon.tolist()
            pen.polygon(points, fill=len(thing_label_ids) - 1)
            objects.append({"label": thing.label, "polygon": points})
        for paint in thing.paints:
            if len(paint.polygons) == 0:
                continue
            polygons, top, bottom = _rounded(paint.polygons, paint.color_bottom is not None)
            cv2.fillPoly(paint_index, polygons, table.add(paint, top, bottom))
    thing_index = np.frombuffer(things_image.tobytes(), dtype=np.int32).reshape(height, width)
    label_ids = np.take(np.array(thing_label_ids, dtype=np.uint8), thing_index)
    instance_ids = np.take(np.array(thing_instance_ids, dtype=np.uint16), thing_index)
    image = _shade(table.arrays(layout.lighting, variation), paint_index, layout, rng, variation)
    return Drawing(image, label_ids, instance_ids, objects)


def _rounded(polygons, ramp: bool) -> tuple[list[np.ndarray] | np.ndarray, float, float]:
    """Polygons on integer pixels, and (for a colour ramp) their top and bottom rows."""
    if isinstance(polygons, np.ndarray):
        rounded = np.rint(polygons).astype(np.int32)
    elif polygons[0].dtype == np.int32:
        rounded = polygons
    else:
        rounded = [np.rint(p).astype(np.int32) for p in polygons]
    if not ramp:
        return rounded, 0.0, 1.0
    if isinstance(rounded, np.ndarray):
        rows = rounded[..., 1]
    else:
        rows = rounded[0][:, 1] if len(rounded) == 1 else np.concatenate([p[:, 1] for p in rounded])
    return rounded, float(rows.min()), float(rows.max())


def _shade(tables, paint_index: np.ndarray, layout: Layout, rng, variation: float) -> np.ndarray:
    """Colour every pixel from its paint: ramp colour, fine and coarse noise, light and shadow.

    The colour is computed one channel plane at a time, (3, H, W), which numpy does fastest.
    """
    offset, slope, grain, blotch, ground = tables
    height, width = paint_index.shape
    fine, coarse = (_window(field, height, width, rng) for field in _noise(height, width))
    planes = np.take(slope, paint_index, axis=1)
    planes *= np.arange(height, dtype=np.float32)[:, None]
    planes += np.take(offset, paint_index, axis=1)
    planes *= _light(layout, ground, paint_index, rng, variation)
    texture = np.take(grain, paint_index) * fine
    texture += np.take(blotch, paint_index) * coarse
    planes += texture
    np.clip(planes, 0.0, 255.0, out=planes)
    image = cv2.merge(list(planes.astype(np.uint8)))
    return cv2.GaussianBlur(image, (3, 3), 0.6)


def _light(layout: Layout, ground: np.ndarray, paint_index: np.ndarray, rng, variation: float):
    """Per-pixel brightness: vignetting (scaled by ``variation``), and the shadows cast on the
    ground."""
    height, width = paint_index.shape
    vignetting = rng.uniform(0.0, 0.35) * variation
    light = 1.0 - np.float32(vignetting) * _vignette(height, width)
    strength = layout.lighting.shadow
    if layout.shadows and strength > 0:
        shadow = np.zeros((height, width), dtype=np.uint8)
        for polygon in layout.shadows:  # one by one: overlapping shadows must not cancel out
            cv2.fillPoly(shadow, [np.rint(polygon).astype(np.int32)], 255)
        shadow = cv2.blur(shadow, (5, 5)).astype(np.float32)
        shadow *= np.float32(strength / 255.0)
        shadow *= _ground_mask(ground, paint_index)
        light -= shadow
    return light


def _ground_mask(ground: np.ndarray, paint_index: np.ndarray) -> np.ndarray:
    """Which pixels show ground. The ground is drawn right after the sky, so its paints usually
    form one run of indices, and two comparisons are cheaper than a table lookup."""
    indices = np.flatnonzero(ground)
    if len(indices) == 0:
        return np.zeros(paint_index.shape, dtype=bool)
    first, last = int(indices[0]), int(indices[-1])
    if last - first + 1 == len(indices):
        return (paint_index >= first) & (paint_index <= last)
    return np.take(ground > 0, paint_index)


@lru_cache(maxsize=8)
def _vignette(height: int, width: int) -> np.ndarray:
    rows = (np.arange(height, dtype=np.float32)[:, None] / height - 0.5) * 2
    columns = (np.arange(width, dtype=np.float32)[None, :] / width - 0.5) * 2
    return (rows**2 + columns**2) / 2


def _window(field: np.ndarray, height: int, width: int, rng) -> np.ndarray:
    """A randomly placed and flipped image-sized view of a noise field."""
    dy, dx = (int(v) for v in rng.integers(0, NOISE_MARGIN, 2))
    flip_rows, flip_columns = rng.random(2) < 0.5
    window = field[dy : dy + height, dx : dx + width]
    return window[:: -1 if flip_rows else 1, :: -1 if flip_columns else 1]


@lru_cache(maxsize=8)
def _noise(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed noise fields a little larger than the image; each frame reads a shifted window."""
    rng = np.random.default_rng(20240610)
    shape = (height + NOISE_MARGIN, width + NOISE_MARGIN)
    fine = rng.standard_normal(shape, dtype=np.float32)
    coarse = cv2.GaussianBlur(
        rng.standard_normal(shape, dtype=np.float32), (0, 0), max(1.0, width / 300)
    )
    coarse /= coarse.std()
    for field in (fine, coarse):
        field.flags.writeable = False
    return fine, coarse
