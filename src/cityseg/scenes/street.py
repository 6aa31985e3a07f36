"""The street itself: its layout, and the sky, ground surfaces and ego vehicle drawn from it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cityseg.scenes import palette
from cityseg.scenes.geometry import NEAREST_DEPTH, Camera, blob, ground_quad, ground_quads
from cityseg.scenes.palette import Lighting
from cityseg.scenes.things import Paint, Thing, outlined

FAR_SIDE = 90.0
"""Metres from the street axis at which cross streets and the far row of buildings stop."""


@dataclass(frozen=True)
class Side:
    """One side of the street, from the kerb outwards: grass strip, sidewalk, front yard, facades.

    Args:
        sign: -1 for the left side, +1 for the right side.
        kerb: x of the road edge.
        lawn: width of the grass strip between road and sidewalk (0: none).
        sidewalk: width of the sidewalk.
        yard: width of the front yard between sidewalk and facades (0: none).
        border: what separates the yard from the sidewalk: "wall", "fence", "hedge" or "".
        cross_street: (near, far) depths of a side street opening on this side, or None.
    """

    sign: int
    kerb: float
    lawn: float
    sidewalk: float
    yard: float
    border: str
    cross_street: tuple[float, float] | None

    def x(self, distance: float) -> float:
        """x of the line ``distance`` metres outwards from the kerb."""
        return self.kerb + self.sign * distance

    @property
    def sidewalk_span(self) -> tuple[float, float]:
        return self.x(self.lawn), self.x(self.lawn + self.sidewalk)

    @property
    def facade(self) -> float:
        return self.x(self.lawn + self.sidewalk + self.yard)


@dataclass(frozen=True)
class Street:
    """The layout of a straight street seen from a car driving on it.

    Args:
        lane_width: metres.
        lanes: number of driving lanes.
        oncoming: how many of them, from the left, carry oncoming traffic.
        lanes_left: x of the left edge of the leftmost lane.
        parking: (left, right) whether a parking strip lines the lanes on that side.
        left: the left side.
        right: the right side.
        end: depth where a row of buildings or trees closes the view.
        crosswalk: depth of a zebra crossing, or None.
        tram_lane: the lane with tram rails, or None.
    """

    lane_width: float
    lanes: int
    oncoming: int
    lanes_left: float
    parking: tuple[bool, bool]
    left: Side
    right: Side
    end: float
    crosswalk: float | None
    tram_lane: int | None
    sides: tuple[Side, Side] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sides", (self.left, self.right))

    def lane_center(self, lane: int) -> float:
        return self.lanes_left + (lane + 0.5) * self.lane_width


PARKING_WIDTH = 2.2


def sample_street(rng: np.random.Generator) -> Street:
    lanes = int(rng.choice((2, 2, 3, 4)))
    lane_width = rng.uniform(3.0, 3.5)
    oncoming = lanes // 2 if rng.random() < 0.8 else 0
    ego_lane = oncoming + int(rng.integers(lanes - oncoming))
    lanes_left = -(ego_lane + 0.5) * lane_width + rng.normal(0.0, 0.3)
    parking = (bool(rng.random() < 0.35), bool(rng.random() < 0.45))
    kerbs = (
        lanes_left - PARKING_WIDTH * parking[0],
        lanes_left + lanes * lane_width + PARKING_WIDTH * parking[1],
    )
    sides = tuple(_sample_side(rng, sign, kerb) for sign, kerb in zip((-1, 1), kerbs, strict=True))
    crosswalk = rng.uniform(8.0, 30.0) if rng.random() < 0.3 else None
    tram_lane = int(rng.integers(lanes)) if rng.random() < 0.35 else None
    return Street(
        lane_width,
        lanes,
        oncoming,
        lanes_left,
        parking,
        *sides,
        end=rng.uniform(110, 200),
        crosswalk=crosswalk,
        tram_lane=tram_lane,
    )


def _sample_side(rng: np.random.Generator, sign: int, kerb: float) -> Side:
    lawn = rng.uniform(1.0, 2.5) if rng.random() < 0.35 else 0.0
    yard = rng.uniform(2.0, 6.0) if rng.random() < 0.4 else 0.0
    border = str(rng.choice(("wall", "fence", "hedge", ""), p=(0.3, 0.3, 0.2, 0.2))) if yard else ""
    near = rng.uniform(14.0, 45.0)
    cross_street = (near, near + rng.uniform(10.0, 16.0)) if rng.random() < 0.25 else None
    return Side(sign, kerb, lawn, rng.uniform(2.5, 6.0), yard, border, cross_street)


def sky(rng: np.random.Generator, lighting: Lighting, size: tuple[int, int], horizon: float):
    """The whole image as sky (everything else is drawn over it), with a gradient and clouds."""
    height, width = size
    if lighting.kind == "sunny":
        top, bottom = palette.jitter(rng, (70, 130, 212), 0.1), palette.jitter(rng, (178, 206, 236))
    else:
        top = palette.jitter(rng, (172, 178, 190), 0.15)
        bottom = palette.jitter(rng, (214, 216, 220), 0.08)
    frame = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], float)
    scale = max(horizon, 1.0) / (height - 1)
    paints = [Paint([frame], top, bottom + (bottom - top) * (1 / scale - 1), 1.0, 3.0, 0.0)]
    for _ in range(int(rng.integers(0, 5))):
        center = (rng.uniform(0, width), rng.uniform(-0.1, 0.6) * horizon)
        radius = rng.uniform(0.05, 0.2) * width
        cloud = palette.mix(bottom, (250, 250, 250), rng.uniform(0.3, 0.8))
        shape = blob(rng, center, radius, radius * rng.uniform(0.2, 0.4), 14, 0.3)
        paints.append(Paint([shape], cloud, None, 1.0, 6.0, 0.0))
    return outlined("sky", [frame], paints, 1e4, size)


def ground(rng: np.random.Generator, camera: Camera, street: Street, lighting: Lighting):
    """The flat ground, far to near: base, yards, grass strips, sidewalks, side streets, road."""
    size = (camera.height, camera.width)
    end = street.end
    base = ground_quad(camera, -FAR_SIDE * 3, FAR_SIDE * 3, NEAREST_DEPTH, end * 2)
    things = [_surface(rng, "terrain", base, palette.GRASS, lighting, size)]
    for side in street.sides:
        if side.yard:
            quad = ground_quad(camera, *sorted((side.sidewalk_span[1], side.facade)), 0, end)
            things.append(_surface(rng, "terrain", quad, palette.GRASS, lighting, size))
        if side.lawn:
            quad = ground_quad(camera, *sorted((side.kerb, side.x(side.lawn))), 0, end)
            things.append(_surface(rng, "terrain", quad, palette.GRASS, lighting, size))
        things.append(_sidewalk(rng, camera, side, end, lighting))
    for side in street.sides:
        if side.cross_street:
            things.extend(_cross_street(rng, camera, side, lighting))
    things.append(_road(rng, camera, street, lighting))
    return [thing for thing in things if thing is not None]


def _surface(rng, label, quad, colors, lighting, size, **paint_args) -> Thing | None:
    color = palette.pick(rng, colors, spread=4.0)
    far = palette.mix(color, lighting.haze, 0.35)
    textures = {"terrain": (9.0, 10.0), "sidewalk": (4.0, 3.0), "road": (5.0, 4.0)}[label]
    paint = Paint([quad], far, color, *textures, depth=0.0, ground=True, **paint_args)
    return outlined(label, [quad], [paint], 0.0, size)


def _sidewalk(rng, camera: Camera, side: Side, end: float, lighting: Lighting) -> Thing | None:
    inner, outer = side.sidewalk_span
    quad = ground_quad(camera, *sorted((inner, outer)), 0, end)
    thing = _surface(
        rng, "sidewalk", quad, palette.PAVEMENT, lighting, (camera.height, camera.width)
    )
    if thing is None:
        return None
    base = thing.paints[0]
    spacing = rng.uniform(1.0, 2.0)
    farthest = min(np.sqrt(camera.focal * camera.mount_height * spacing / 5.0), end)
    starts = np.arange(1.0, farthest, spacing)
    if len(starts):
        joints = ground_quads(camera, *sorted((inner, outer)), starts, starts + 0.06)
        joint_color = palette.shade(base.color_bottom, 0.82)
        thing.paints.append(Paint(joints, joint_color, None, 3.0, 2.0, ground=True))
    if not side.lawn:
        kerb = ground_quad(camera, *sorted((side.kerb, side.x(0.25))), 0, end)
        kerb_color = palette.pick(rng, palette.KERB)
        thing.paints.append(Paint([kerb], kerb_color, None, 3.0, 2.0, 0.0, ground=True))
    return thing


def _cross_street(rng, camera: Camera, side: Side, lighting: Lighting) -> list[Thing | None]:
    near, far = side.cross_street
    size = (camera.height, camera.width)
    inner, outer = side.sidewalk_span
    width = side.sidewalk
    things = [
        _surface(
            rng,
            "sidewalk",
            ground_quad(camera, *sorted((inner, side.sign * FAR_SIDE)), z0, z0 + width),
            palette.PAVEMENT,
            lighting,
            size,
        )
        for z0 in (near, far - width)
    ]
    road = ground_quad(
        camera, *sorted((side.kerb, side.sign * FAR_SIDE)), near + width, far - width
    )
    things.append(_surface(rng, "road", road, palette.ASPHALT, lighting, size))
    return things


def _road(rng, camera: Camera, street: Street, lighting: Lighting) -> Thing | None:
    left, right = street.left.kerb, street.right.kerb
    quad = ground_quad(camera, left, right, 0, street.end)
    thing = _surface(rng, "road", quad, palette.ASPHALT, lighting, (camera.height, camera.width))
    if thing is None:
        return None
    base = thing.paints[0].color_bottom
    patches = []
    for _ in range(int(rng.integers(0, 4))):
        x, z = rng.uniform(left, right - 1.0), camera.sample_depth(rng, 4.0, 40.0)
        x_end = min(x + rng.uniform(1.0, 4.0), right)
        patches.append(ground_quad(camera, x, x_end, z, z + rng.uniform(1.0, 6.0)))
    if patches:
        patch_color = palette.shade(base, rng.uniform(0.75, 0.9))
        thing.paints.append(Paint(patches, patch_color, None, 4.0, 4.0, ground=True))
    marking = palette.pick(rng, palette.LANE_MARKING[:2], spread=4.0)
    lines = _lane_markings(rng, camera, street)
    thing.paints.append(Paint(lines, marking, None, 4.0, 3.0, 0.0, ground=True))
    if street.tram_lane is not None:
        center = street.lane_center(street.tram_lane)
        rails = [
            ground_quad(camera, center + dx, center + dx + 0.12, 0, street.end)
            for dx in (-0.78, 0.66)
        ]
        thing.paints.append(Paint(rails, palette.shade(base, 0.55), None, 3.0, 2.0, ground=True))
    return thing


def _lane_markings(rng, camera: Camera, street: Street) -> np.ndarray:
    """Lane lines (dashed, or solid between the two directions), edge lines and a zebra: quads."""
    width = rng.uniform(0.12, 0.2)
    dash, gap = rng.uniform(2.5, 4.0), rng.uniform(5.0, 8.0)
    starts = np.arange(-rng.uniform(0, dash + gap), street.end, dash + gap)
    starts = starts[starts + dash > NEAREST_DEPTH]
    lines = []
    for boundary in range(1, street.lanes):
        x = street.lanes_left + boundary * street.lane_width
        if boundary == street.oncoming:
            lines.append(ground_quads(camera, x - width / 2, x + width / 2, [0.0], [street.end]))
        else:
            lines.append(ground_quads(camera, x - width / 2, x + width / 2, starts, starts + dash))
    left_edge = street.lanes_left
    right_edge = street.lanes_left + street.lanes * street.lane_width
    edges = [[left_edge, left_edge + width], [right_edge - width, right_edge]]
    lines.append(ground_quads(camera, *np.transpose(edges), 0.0, street.end))
    if street.crosswalk is not None:
        z = street.crosswalk
        x0, x1 = street.left.kerb, street.right.kerb
        lines.append(ground_quads(camera, x0, x1, [z - 0.6], [z - 0.6 + width * 2.5]))
        stripes = np.arange(x0 + 0.5, x1 - 0.5, 1.0)
        lines.append(ground_quads(camera, stripes, stripes + 0.5, z, z + 4.0))
    return np.concatenate(lines)


def ego_vehicle(rng: np.random.Generator, size: tuple[int, int]) -> Thing | None:
    """The bonnet of the recording car along the bottom of the image (a void label)."""
    height, width = size
    rise = rng.uniform(0.05, 0.11) * height
    center = width * rng.uniform(0.4, 0.6)
    u = np.linspace(-1, width, 24)
    v = height - 1 - rise * (1.0 - ((u - center) / (0.8 * width)) ** 2).clip(0.15, 1.0)
    outline = np.concatenate([np.stack([u, v], 1), [[width, height], [-1, height]]])
    color = palette.pick(rng, palette.EGO_HOOD)
    paint = Paint([outline], palette.shade(color, 1.2), palette.shade(color, 0.7), 2.0, 2.0, 0.0)
    return outlined("ego vehicle", [outline], [paint], 0.0, size)
