"""The layout of one street scene: what stands where, in drawing order (far to near).

Pure: everything comes from the numpy ``Generator`` given, nothing is drawn here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cityseg.scenes import buildings, furniture, people, street, vehicles
from cityseg.scenes.geometry import Camera, Plane, ground_quad
from cityseg.scenes.palette import Lighting, sample_lighting
from cityseg.scenes.street import Side, Street
from cityseg.scenes.things import Thing

VEHICLE_LENGTH = {"car": 5.0, "truck": 10.5, "bus": 13.0, "train": 32.0}
SMALL_THINGS_FARTHEST = 32.0
"""Metres beyond which no person, two-wheeler, sign or signal is placed: farther, they would be a
few pixels at the usual training sizes (128x256), too small to learn or to annotate usefully."""


@dataclass
class Layout:
    """A scene ready to paint: things in drawing order, ground shadows and the lighting."""

    camera: Camera
    things: list[Thing]
    shadows: list[np.ndarray]
    lighting: Lighting


def sample_camera(rng: np.random.Generator, height: int, width: int) -> Camera:
    return Camera(
        width=width,
        height=height,
        focal=width * rng.uniform(0.8, 1.05),
        center_u=width * rng.uniform(0.42, 0.58),
        horizon=height * rng.uniform(0.36, 0.48),
        mount_height=rng.uniform(1.2, 1.5),
    )


def compose(rng: np.random.Generator, height: int, width: int) -> Layout:
    """Lay out a random street scene seen by a camera of ``height`` x ``width`` pixels."""
    camera = sample_camera(rng, height, width)
    lighting = sample_lighting(rng)
    layout = street.sample_street(rng)
    size = (height, width)
    shadows: list[np.ndarray] = []
    background = [street.sky(rng, lighting, size, camera.horizon)]
    background += street.ground(rng, camera, layout, lighting)
    structures = buildings.far_end(rng, camera, layout)
    for side in layout.sides:
        structures += buildings.facade_line(rng, camera, side, layout, lighting)
    borders = []
    for side in layout.sides:
        borders += buildings.yard_borders(rng, camera, side, layout)
        if rng.random() < 0.25:
            borders.append(_railing(rng, camera, side))
    tree_pits: list[Thing] = []
    movables = _furniture(rng, camera, layout, lighting, shadows, tree_pits)
    movables += _traffic(rng, camera, layout, shadows)
    movables += _two_wheelers(rng, camera, layout)
    movables += _pedestrians(rng, camera, layout)
    things = [t for t in background + tree_pits if t is not None]
    for group in (structures, borders, movables):
        things += sorted((t for t in group if t is not None), key=lambda t: -t.depth)
    if rng.random() < 0.85:
        things.append(street.ego_vehicle(rng, size))
    if lighting.shadow > 0.2:
        shadows += _facade_shadows(rng, camera, layout, lighting)
    return Layout(camera, [t for t in things if t is not None], shadows, lighting)


def _kerbside(rng, side: Side, offset: tuple[float, float] = (0.4, 0.8)) -> float:
    """x of a spot on the kerb-side edge of the sidewalk (or in the grass strip)."""
    return side.x(side.lawn / 2) if side.lawn else side.x(rng.uniform(*offset))


def _railing(rng, camera: Camera, side: Side) -> Thing | None:
    """A pedestrian railing (a fence) along the kerb."""
    start = camera.sample_visible_depth(rng, side.kerb, 4.0, 30.0)
    plane = Plane(camera, (side.x(0.15), 0.0, start), (0.0, 0.0, 1.0))
    size = (camera.height, camera.width)
    length = rng.uniform(5.0, 25.0)
    return buildings.barrier(rng, "fence", plane, length, rng.uniform(0.9, 1.2), start, size)


def _in_cross_street(side: Side, z: float, margin: float = 1.0) -> bool:
    return bool(side.cross_street) and side.cross_street[0] - margin < z < side.cross_street[1]


def _furniture(rng, camera: Camera, layout: Street, lighting: Lighting, shadows, tree_pits):
    """Street lights, trees (with their pits, added to ``tree_pits``), clutter, signs, signals."""
    size = (camera.height, camera.width)
    things: list[Thing | None] = []
    for side in layout.sides:
        x = _kerbside(rng, side, (0.5, 0.5))
        light_depths = np.arange(rng.uniform(3.0, 15.0), 75.0, rng.uniform(18.0, 32.0))
        for z in light_depths:
            if not _in_cross_street(side, z):
                arm = -side.sign * rng.uniform(1.0, 2.5)
                things.append(furniture.pole(rng, camera, x, z, rng.uniform(6.0, 9.0), size, arm))
        if rng.random() < 0.6:
            tree_x = _kerbside(rng, side, (0.9, 1.3))
            for z in np.arange(rng.uniform(2.0, 10.0), 60.0, rng.uniform(7.0, 13.0)):
                if np.abs(light_depths - z).min() > 2.0 and not _in_cross_street(side, z, 3.0):
                    things.append(furniture.tree(rng, camera, tree_x, z, size))
                    if not side.lawn:
                        tree_pits.append(furniture.tree_pit(rng, camera, tree_x, z, size))
                    shadows.append(
                        furniture.shadow_of_tree(camera, tree_x, z, 2.5, lighting.sun_side)
                    )
        for _ in range(int(rng.integers(0, 3))):
            x_static = side.x(side.lawn + side.sidewalk * rng.uniform(0.6, 0.9))
            z = camera.sample_visible_depth(rng, x_static, 5.0, 50.0)
            things.append(furniture.static_object(rng, camera, x_static, z, size))
    for _ in range(int(rng.integers(2, 7))):
        things += _sign_post(rng, camera, layout, size)
    if rng.random() < 0.9:
        crossing = layout.crosswalk or camera.sample_depth(rng, 8.0, SMALL_THINGS_FARTHEST)
        for side in layout.sides:
            if rng.random() < 0.8:
                things += _signal(rng, camera, side, crossing + rng.uniform(-1, 1), size)
    return [t for t in things if t is not None]


def _sign_post(rng, camera, layout: Street, size) -> list[Thing | None]:
    side = layout.sides[int(rng.integers(2))]
    x = _kerbside(rng, side, (0.3, 0.9))
    z = camera.sample_visible_depth(rng, x, 6.0, SMALL_THINGS_FARTHEST)
    height = rng.uniform(2.3, 3.2)
    things = [furniture.pole(rng, camera, x, z, height, size, width=rng.uniform(0.12, 0.2))]
    things.append(furniture.traffic_sign(rng, camera, x, z, height - 0.35, size))
    if rng.random() < 0.35:
        things.append(furniture.traffic_sign(rng, camera, x, z - 0.005, height - 1.15, size))
    return things


def _signal(rng, camera, side: Side, z: float, size) -> list[Thing | None]:
    """A traffic light on a short pole, or hanging from a mast arm over the road."""
    x = _kerbside(rng, side, (0.4, 0.7))
    if z < camera.nearest_visible(x):
        z = camera.sample_visible_depth(rng, x, z, 45.0)
    if rng.random() < 0.3:
        reach = rng.uniform(2.5, 5.0)
        arm_end = -side.sign * reach
        height = rng.uniform(5.5, 6.5)
        mast = furniture.pole(rng, camera, x, z, height, size, arm_end, lamp=False)
        head = furniture.traffic_light(rng, camera, x + arm_end, z, height - 1.0, size)
        return [mast, head]
    height = rng.uniform(2.8, 3.8)
    return [
        furniture.pole(rng, camera, x, z, height, size, width=rng.uniform(0.15, 0.22)),
        furniture.traffic_light(rng, camera, x, z, height - 1.0, size),
    ]


class _Lanes:
    """Which stretches of which lane are taken, so that vehicles do not overlap."""

    def __init__(self) -> None:
        self.taken: dict[float, list[tuple[float, float]]] = {}

    def claim(self, lane: float, z0: float, z1: float) -> bool:
        spans = self.taken.setdefault(lane, [])
        if any(z0 < b + 1.0 and a - 1.0 < z1 for a, b in spans):
            return False
        spans.append((z0, z1))
        return True


def _traffic(rng, camera: Camera, layout: Street, shadows) -> list[Thing]:
    size = (camera.height, camera.width)
    lanes = _Lanes()
    things: list[Thing | None] = []
    plan = []
    if layout.tram_lane is not None and rng.random() < 0.85:
        plan.append(("train", layout.tram_lane, camera.sample_depth(rng, 12.0, 55.0)))
    if rng.random() < 0.5:
        plan.append(("truck", None, camera.sample_depth(rng, 10.0, 60.0)))
    if rng.random() < 0.35:
        plan.append(("bus", None, camera.sample_depth(rng, 10.0, 60.0)))
    plan += [("car", None, camera.sample_depth(rng, 7.0, 80.0)) for _ in range(rng.integers(1, 7))]
    makers = {
        "car": vehicles.car,
        "truck": vehicles.truck,
        "bus": vehicles.bus,
        "train": vehicles.tram,
    }
    for kind, lane, z in plan:
        lane = int(rng.integers(layout.lanes)) if lane is None else lane
        x = layout.lane_center(lane) + rng.normal(0.0, 0.25 if kind != "train" else 0.0)
        if lanes.claim(lane, z, z + VEHICLE_LENGTH[kind]):
            things.append(makers[kind](rng, camera, x, z, lane < layout.oncoming, size))
            shadows.append(_vehicle_shadow(camera, x, z, VEHICLE_LENGTH[kind] * 0.85))
    for side, parking in zip(layout.sides, layout.parking, strict=True):
        if not parking:
            continue
        x = side.kerb - side.sign * 1.1
        for z in np.arange(rng.uniform(4.0, 12.0), 70.0, rng.uniform(5.2, 7.5)):
            if rng.random() < 0.65 and not _in_cross_street(side, z, 5.5):
                car = vehicles.car(rng, camera, x + rng.normal(0, 0.1), z, rng.random() < 0.3, size)
                things.append(car)
                shadows.append(_vehicle_shadow(camera, x, z, 4.2))
    return [t for t in things if t is not None]


def _vehicle_shadow(camera: Camera, x: float, z: float, length: float) -> np.ndarray:
    return ground_quad(camera, x - 1.2, x + 1.2, z - 0.3, z + length)


def _two_wheelers(rng, camera: Camera, layout: Street) -> list[Thing]:
    size = (camera.height, camera.width)
    things: list[Thing] = []
    for _ in range(int(rng.choice((1, 1, 2, 2, 3)))):
        z = camera.sample_depth(rng, 4.0, SMALL_THINGS_FARTHEST)
        if rng.random() < 0.6:
            side = layout.right if rng.random() < 0.75 else layout.left
            x = side.kerb - side.sign * rng.uniform(0.6, 1.2)
            things += people.cyclist(rng, camera, x, z, False, size)
        else:
            x = rng.uniform(layout.left.kerb, layout.right.kerb)
            things += people.cyclist(rng, camera, x, z, True, size)
    for _ in range(int(rng.choice((0, 1, 1, 2)))):
        lane = int(rng.integers(layout.lanes))
        z = camera.sample_depth(rng, 5.0, SMALL_THINGS_FARTHEST)
        x = layout.lane_center(lane) + rng.normal(0.0, 0.4)
        things += people.motorcyclist(rng, camera, x, z, rng.random() < 0.5, size)
    if rng.random() < 0.45:
        side = layout.sides[int(rng.integers(2))]
        x = side.x(side.lawn + side.sidewalk * rng.uniform(0.5, 0.85))
        kind = people.cyclist if rng.random() < 0.5 else people.motorcyclist
        start = camera.sample_visible_depth(rng, x, 5.0, 30.0)
        for z in start + np.arange(int(rng.integers(1, 5))) * rng.uniform(0.6, 1.2):
            things += kind(rng, camera, x, z, True, size, rider=False)
    return things


def _pedestrians(rng, camera: Camera, layout: Street) -> list[Thing]:
    """People on the sidewalks, alone or in small groups, and some on the zebra crossing."""
    size = (camera.height, camera.width)
    things = []
    for _ in range(int(rng.integers(3, 10))):
        side = layout.sides[int(rng.integers(2))]
        x = side.x(side.lawn + side.sidewalk * rng.uniform(0.15, 0.85))
        z = camera.sample_visible_depth(rng, x, 4.0, SMALL_THINGS_FARTHEST)
        for _ in range(int(rng.choice((1, 1, 1, 2, 3)))):
            walk_x = x + rng.uniform(-0.6, 0.6)
            things.append(people.person(rng, camera, walk_x, z + rng.uniform(0.0, 1.5), size))
    if layout.crosswalk is not None and rng.random() < 0.6:
        for _ in range(int(rng.integers(1, 5))):
            x = rng.uniform(layout.left.kerb, layout.right.kerb)
            z = layout.crosswalk + rng.uniform(0.5, 3.5)
            things.append(people.person(rng, camera, x, z, size))
    return [t for t in things if t is not None]


def _facade_shadows(rng, camera: Camera, layout: Street, lighting: Lighting) -> list[np.ndarray]:
    """The shadow the buildings of the sun's side cast across the sidewalk and part of the road."""
    side = layout.right if lighting.sun_side > 0 else layout.left
    reach = rng.uniform(3.0, 14.0)
    edge = side.facade - side.sign * reach
    return [ground_quad(camera, *sorted((side.facade, edge)), 0.0, layout.end)]
