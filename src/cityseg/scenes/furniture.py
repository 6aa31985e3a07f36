"""Street furniture and trees: poles, street lights, traffic signs and lights, bins, trees.

Each is flat and upright at its depth (see ``geometry.upright``); things mounted on a pole are a
hair nearer than the pole, so that they are drawn over it.
"""

from __future__ import annotations

import numpy as np

from cityseg.scenes import palette
from cityseg.scenes.geometry import (
    Camera,
    blob,
    ellipse,
    ground_quad,
    rectangle,
    segment_quad,
    upright,
)
from cityseg.scenes.things import Paint, Thing, outlined

MOUNTED_GAP = 0.01


def _thing(label, camera, x, z, shapes_and_colors, depth, size, grain=3.0, blotch=2.0):
    """An upright thing from (local shape, colour) pairs; the first shapes are its outline."""
    outlines, paints = [], []
    for shape, color, is_outline in shapes_and_colors:
        polygon = upright(camera, x, z, shape)
        if is_outline:
            outlines.append(polygon)
        paints.append(Paint([polygon], color, None, grain, blotch, z))
    return outlined(label, outlines, paints, depth, size)


def pole(
    rng,
    camera: Camera,
    x: float,
    z: float,
    height: float,
    size,
    arm: float = 0.0,
    lamp: bool = True,
    width: float | None = None,
) -> Thing | None:
    """A metal pole, optionally with an arm reaching ``arm`` metres sideways and a lamp head."""
    width = rng.uniform(0.2, 0.3) if width is None else width
    color = palette.pick(rng, palette.METAL, spread=6.0)
    parts = [
        (
            np.array(
                [[-width / 2, 0], [width / 2, 0], [width * 0.35, height], [-width * 0.35, height]]
            ),
            color,
            True,
        )
    ]
    if arm:
        parts.append((segment_quad((0, height - 0.2), (arm, height + 0.3), 0.12), color, True))
    if arm and lamp:
        head = rectangle(
            arm - 0.35 * np.sign(arm), height + 0.12, arm + 0.25 * np.sign(arm), height + 0.35
        )
        parts.append((head, palette.shade(color, 0.8), True))
    return _thing("pole", camera, x, z, parts, z, size)


def traffic_sign(rng, camera: Camera, x: float, z: float, mount: float, size) -> Thing | None:
    """A sign plate centred ``mount`` metres up: round, triangular, square or octagonal."""
    radius = rng.uniform(0.35, 0.5)
    center = (0.0, mount)
    shape = rng.choice(("round", "triangle", "square", "octagon", "rectangle"))
    if shape == "round":
        outer = ellipse(center, radius, radius, 16)
        border, face = (
            (palette.SIGN_RED, palette.SIGN_WHITE)
            if rng.random() < 0.6
            else (palette.SIGN_BLUE, palette.SIGN_BLUE)
        )
    elif shape == "triangle":
        sign = 1 if rng.random() < 0.7 else -1
        outer = np.array([[-1, -0.6 * sign], [1, -0.6 * sign], [0, 1.1 * sign]]) * radius + center
        border, face = palette.SIGN_RED, palette.SIGN_WHITE
    elif shape == "octagon":
        outer = _octagon(center, radius)
        border, face = palette.SIGN_WHITE, palette.SIGN_RED
    else:
        wide = 1.6 if shape == "rectangle" else 1.0
        outer = rectangle(-radius * wide, mount - radius, radius * wide, mount + radius)
        border, face = (
            palette.SIGN_WHITE,
            (palette.SIGN_BLUE, palette.SIGN_YELLOW)[int(rng.random() < 0.3)],
        )
    inner = (outer - center) * 0.78 + center
    if rng.random() < 0.15:
        parts = [(outer, palette.jitter(rng, palette.SIGN_BACK), True)]
    else:
        parts = [
            (outer, palette.jitter(rng, border), True),
            (inner, palette.jitter(rng, face), False),
        ]
        symbol = rectangle(
            -radius * 0.3, mount - radius * 0.15, radius * 0.3, mount + radius * 0.15
        )
        parts.append((symbol, palette.jitter(rng, (30, 30, 30)), False))
    return _thing("traffic sign", camera, x, z, parts, z - MOUNTED_GAP, size, 2.0, 1.0)


def _octagon(center, radius: float) -> np.ndarray:
    angles = np.arange(8) * np.pi / 4 + np.pi / 8
    return np.stack([center[0] + radius * np.cos(angles), center[1] + radius * np.sin(angles)], 1)


def traffic_light(rng, camera: Camera, x: float, z: float, mount: float, size) -> Thing | None:
    """A signal head (dark box, three lamps with one lit) whose bottom is ``mount`` metres up."""
    width, height = rng.uniform(0.45, 0.6), rng.uniform(1.1, 1.4)
    housing = palette.pick(rng, palette.LIGHT_HOUSING, spread=5.0)
    box = rectangle(-width / 2, mount, width / 2, mount + height)
    parts = [(box, housing, True)]
    if rng.random() < 0.8:
        lit = int(rng.integers(3))
        for lamp in range(3):
            center = (0.0, mount + height * (0.82 - 0.32 * lamp))
            color = (
                palette.LAMP_ON[lamp] if lamp == lit else palette.shade(palette.LAMP_ON[lamp], 0.25)
            )
            parts.append(
                (
                    ellipse(center, width * 0.32, width * 0.32, 10),
                    palette.jitter(rng, color, 0.05, 4.0),
                    False,
                )
            )
    return _thing("traffic light", camera, x, z, parts, z - MOUNTED_GAP, size, 2.0, 1.0)


def tree(rng, camera: Camera, x: float, z: float, size) -> Thing | None:
    """A street tree: a trunk and a leafy crown with lighter and darker clumps."""
    trunk_height, radius = rng.uniform(1.8, 3.5), rng.uniform(1.4, 3.2)
    trunk_width = rng.uniform(0.25, 0.45)
    trunk = np.array(
        [
            [-trunk_width / 2, 0],
            [trunk_width / 2, 0],
            [trunk_width * 0.35, trunk_height + radius * 0.5],
            [-trunk_width * 0.35, trunk_height + radius * 0.5],
        ]
    )
    center = np.array([rng.normal(0.0, 0.2), trunk_height + radius * 0.85])
    crown = blob(rng, center, radius, radius * rng.uniform(0.85, 1.15), 16, 0.2)
    foliage = palette.pick(rng, palette.FOLIAGE, spread=8.0)
    outlines = [upright(camera, x, z, trunk), upright(camera, x, z, crown)]
    paints = [
        Paint([outlines[0]], palette.pick(rng, palette.BARK), None, 5.0, 4.0, z),
        Paint([outlines[1]], palette.shade(foliage, 1.15), palette.shade(foliage, 0.8), 10, 18, z),
    ]
    for _ in range(int(rng.integers(2, 4))):
        offset = rng.uniform(-0.25, 0.25, 2) * radius
        clump = blob(rng, center + offset, radius * 0.3, radius * 0.3, 10, 0.25)
        color = palette.shade(foliage, rng.choice((0.75, 1.3)))
        paints.append(Paint([upright(camera, x, z, clump)], color, None, 10.0, 14.0, z))
    return outlined("vegetation", outlines, paints, z, size)


def tree_pit(rng, camera: Camera, x: float, z: float, size) -> Thing | None:
    """The square of soil and grass around a tree planted in the sidewalk."""
    half = rng.uniform(0.6, 0.9)
    quad = ground_quad(camera, x - half, x + half, z - half, z + half)
    color = palette.pick(rng, palette.GRASS)
    paint = Paint([quad], color, None, 9.0, 10.0, z, ground=True)
    return outlined("terrain", [quad], [paint], z, size)


def static_object(rng, camera: Camera, x: float, z: float, size) -> Thing | None:
    """Void street clutter: a bin, a bollard, an advertising column or a bench."""
    kind = rng.choice(("bin", "bollard", "column", "box"))
    width, height = {
        "bin": (0.6, 1.0),
        "bollard": (0.18, 0.9),
        "column": (1.2, 2.8),
        "box": (0.8, 1.3),
    }[kind]
    color = palette.pick(rng, palette.STATIC, spread=10.0)
    parts = [(rectangle(-width / 2, 0.0, width / 2, height), color, True)]
    if kind == "column":
        parts.append(
            (
                rectangle(-width / 2, height * 0.2, width / 2, height * 0.85),
                palette.pick(rng, palette.TOP_CLOTHES, spread=20.0),
                False,
            )
        )
    return _thing("static", camera, x, z, parts, z, size)


def shadow_of_tree(camera: Camera, x: float, z: float, radius: float, sun_side: int) -> np.ndarray:
    """The image polygon of a round shadow on the ground next to a tree."""
    angles = np.linspace(0.0, 2 * np.pi, 12, endpoint=False)
    center_x = x - sun_side * radius
    points = np.stack(
        [
            center_x + radius * np.cos(angles),
            np.zeros(12),
            np.maximum(z + radius * np.sin(angles), 0.6),
        ],
        axis=1,
    )
    return camera.project(points)
