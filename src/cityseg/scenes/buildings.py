"""What lines the street: facades with windows, tree rows, walls, fences and the far end."""

from __future__ import annotations

import numpy as np

from cityseg.scenes import palette
from cityseg.scenes.geometry import NEAREST_DEPTH, Camera, Plane
from cityseg.scenes.palette import Lighting
from cityseg.scenes.street import FAR_SIDE, Side, Street
from cityseg.scenes.things import Paint, Thing, outlined


def windows(rng: np.random.Generator, plane: Plane, length: float, height: float, depth: float):
    """Paints of the window frames and panes of one facade (regular floors, optional shop front)."""
    spacing, floor = rng.uniform(2.6, 3.8), rng.uniform(3.0, 3.6)
    width, tall = rng.uniform(0.9, 1.5), rng.uniform(1.3, 1.9)
    columns = np.arange(spacing * 0.6, length - spacing * 0.4, spacing)
    rows = np.arange(rng.uniform(4.0, 4.8), height - tall - 0.6, floor)
    if not len(columns) or not len(rows):
        return []
    s, t = (a.ravel() for a in np.meshgrid(columns, rows))
    frame = rng.uniform(0.08, 0.16)
    boxes = [np.stack([s - width / 2, s + width / 2, t, t + tall], axis=1)]
    if rng.random() < 0.5:
        half, sill = spacing * rng.uniform(0.3, 0.42), rng.uniform(0.4, 0.8)
        shop = [columns - half, columns + half, np.full(len(columns), sill)]
        boxes.append(np.stack([*shop, shop[2] + 2.4], axis=1))
    panes = np.concatenate(boxes)
    reflecting = rng.random(len(panes)) < rng.uniform(0.0, 0.4)
    frames = panes[: len(s)] + (-frame, frame, -frame, frame)
    quads, seen = plane.project_rectangles(np.concatenate([frames, panes]))
    frames, panes = quads[: len(s)][seen[: len(s)]], quads[len(s) :][seen[len(s) :]]
    reflecting = reflecting[seen[len(s) :]]
    glass = palette.pick(rng, palette.WINDOW_GLASS, spread=6.0)
    frame_color = palette.pick(rng, palette.WINDOW_FRAME, spread=4.0)
    paints = [Paint(frames, frame_color, None, 2.0, 1.0, depth)] if len(frames) else []
    shine = palette.mix(glass, (200, 210, 225), rng.uniform(0.3, 0.6))
    for chosen, color in ((~reflecting, glass), (reflecting, shine)):
        if chosen.any():
            paints.append(Paint(panes[chosen], color, palette.shade(color, 0.8), 3.0, 2.0, depth))
    return paints


def building(rng, plane: Plane, length: float, height: float, depth: float, light: float, size):
    """A facade rectangle with windows and a cornice; ``light`` brightens or darkens it."""
    color = palette.shade(palette.pick(rng, palette.FACADE), light)
    outline = plane.rectangle(0.0, length, 0.0, height)
    paints = [
        Paint([outline], palette.shade(color, rng.uniform(0.85, 1.0)), color, 4.0, 5.0, depth)
    ]
    paints += windows(rng, plane, length, height, depth)
    cornice = plane.rectangle(0.0, length, height - rng.uniform(0.3, 0.7), height)
    paints.append(Paint([cornice], palette.shade(color, rng.uniform(0.6, 1.2)), None, 3, 3, depth))
    return outlined("building", [outline], paints, depth, size)


def tree_row(rng, plane: Plane, length: float, height: float, depth: float, size, count=0):
    """A hedge or a row of tree crowns with a bumpy top (``count`` bumps, default one per 1.5 m)."""
    count = count or min(max(4, int(length / 1.5)), 60)
    s = np.linspace(0.0, length, count)
    tops = height + np.abs(rng.normal(0.0, height * 0.15, count)) * rng.choice((-1, 1), count)
    top = plane.camera.project(plane.world(s, np.maximum(tops, 0.5)))
    bottom = plane.camera.project(plane.world(np.array([length, 0.0]), np.zeros(2)))
    outline = np.concatenate([plane.camera.project(plane.world(0.0, 0.0))[None], top, bottom])
    color = palette.pick(rng, palette.FOLIAGE)
    paint = Paint([outline], palette.shade(color, 1.15), palette.shade(color, 0.75), 9, 16, depth)
    return outlined("vegetation", [outline], [paint], depth, size)


def barrier(rng, label: str, plane: Plane, length: float, height: float, depth: float, size):
    """A wall (plain, with a coping) or a fence (posts, bars and rails) along a plane."""
    outline = plane.rectangle(0.0, length, 0.0, height)
    if label == "wall":
        color = palette.pick(rng, palette.WALL)
        paints = [Paint([outline], color, palette.shade(color, 0.8), 5.0, 9.0, depth)]
        course = rng.uniform(0.4, 0.7)
        joints = np.arange(course, height * 0.85, course)
        if len(joints):
            lines = plane.rectangles(
                np.zeros_like(joints), np.full_like(joints, length), joints, joints + 0.04
            )
            if len(lines):
                paints.append(Paint(lines, palette.shade(color, 0.7), None, 3.0, 2.0, depth))
        coping = plane.rectangle(0.0, length, height * 0.88, height)
        paints.append(Paint([coping], palette.shade(color, 1.2), None, 3.0, 2.0, depth))
        return outlined(label, [outline], paints, depth, size)
    color = palette.pick(rng, palette.FENCE)
    paints = [Paint([outline], palette.shade(color, 0.6), None, 6.0, 8.0, depth)]
    spacing = rng.uniform(0.2, 0.4)
    starts = np.arange(0.0, length - 0.08, spacing)[:400]
    bars = plane.rectangles(
        starts, starts + 0.08, np.zeros_like(starts), np.full_like(starts, height)
    )
    rails = [plane.rectangle(0.0, length, t, t + 0.08) for t in (0.1, height / 2, height - 0.08)]
    if len(bars):
        paints.append(Paint(bars, palette.shade(color, 1.3), None, 3.0, 2.0, depth))
    paints.append(Paint(rails, palette.shade(color, 1.4), None, 3.0, 2.0, depth))
    return outlined(label, [outline], paints, depth, size)


def facade_line(rng, camera: Camera, side: Side, street: Street, lighting: Lighting) -> list[Thing]:
    """Everything standing on the facade line of one side, from behind the camera to the end."""
    size = (camera.height, camera.width)
    light = _facade_light(rng, side, lighting)
    things: list[Thing | None] = []
    z = rng.uniform(-6.0, 1.0)
    while z < street.end:
        length = rng.uniform(10.0, 30.0) * max(1.0, z / 30.0)
        if side.cross_street and z < side.cross_street[1] and z + length > side.cross_street[0]:
            things.extend(_cross_street_corner(rng, camera, side, light))
            length = side.cross_street[0] - z
            if length < 1.0:
                z = side.cross_street[1]
                continue
        plane = Plane(camera, (side.facade, 0.0, z), (0.0, 0.0, 1.0))
        depth = max(z, NEAREST_DEPTH)
        kind = rng.choice(("building", "trees", "wall", "fence"), p=(0.64, 0.12, 0.12, 0.12))
        if kind == "building":
            height = rng.uniform(8.0, 24.0)
            things.append(building(rng, plane, length, height, depth, light, size))
        else:
            behind = Plane(
                camera, (side.x(side.lawn + side.sidewalk + side.yard + 1.0), 0, z), (0.0, 0.0, 1.0)
            )
            things.append(tree_row(rng, behind, length, rng.uniform(4.0, 10.0), depth, size))
            if kind != "trees":
                height = rng.uniform(1.8, 3.5) if kind == "wall" else rng.uniform(1.2, 2.2)
                things.append(barrier(rng, kind, plane, length, height, depth, size))
        z += length
        if side.cross_street and side.cross_street[0] <= z < side.cross_street[1]:
            z = side.cross_street[1]
    return [thing for thing in things if thing is not None]


def _facade_light(rng, side: Side, lighting: Lighting) -> float:
    if lighting.kind != "sunny":
        return rng.uniform(0.92, 1.05)
    return rng.uniform(0.65, 0.8) if side.sign == lighting.sun_side else rng.uniform(1.0, 1.12)


def _cross_street_corner(rng, camera: Camera, side: Side, light: float) -> list[Thing | None]:
    """The far corner building of a side street, its wall facing the camera."""
    near, far = side.cross_street
    plane = Plane(camera, (side.facade, 0.0, far), (side.sign, 0.0, 0.0))
    height = rng.uniform(8.0, 22.0)
    size = (camera.height, camera.width)
    return [building(rng, plane, FAR_SIDE - abs(side.facade), height, far, light * 1.1, size)]


def far_end(rng, camera: Camera, street: Street) -> list[Thing]:
    """What closes the view at the end of the street: a row of buildings or of trees."""
    size = (camera.height, camera.width)
    z = street.end
    plane = Plane(camera, (-FAR_SIDE, 0.0, z), (1.0, 0.0, 0.0))
    if rng.random() < 0.25:
        thing = tree_row(rng, plane, 2 * FAR_SIDE, rng.uniform(6.0, 14.0), z, size, 40)
        return [thing] if thing is not None else []
    things = []
    left, right = street.left.facade - 10.0, street.right.facade + 10.0
    s = left + rng.uniform(-8.0, 0.0)
    while s < right:
        width = rng.uniform(6.0, 20.0)
        facade = Plane(camera, (s, 0.0, z), (1.0, 0.0, 0.0))
        things.append(building(rng, facade, width, rng.uniform(6.0, 26.0), z, 1.0, size))
        s += width
    return [thing for thing in things if thing is not None]


def yard_borders(rng, camera: Camera, side: Side, street: Street) -> list[Thing]:
    """Walls, fences or hedges between the sidewalk and the front yards of one side."""
    if not side.border:
        return []
    size = (camera.height, camera.width)
    x = side.x(side.lawn + side.sidewalk)
    spans = [(rng.uniform(-4.0, 12.0), street.end)]
    if side.cross_street:
        near, far = side.cross_street
        spans = [(spans[0][0], near), (far, street.end)]
    height = rng.uniform(0.6, 1.4)
    things = []
    for z0, z1 in spans:
        if z1 <= z0:
            continue
        plane = Plane(camera, (x, 0.0, z0), (0.0, 0.0, 1.0))
        depth = max(z0, NEAREST_DEPTH)
        if side.border == "hedge":
            things.append(tree_row(rng, plane, z1 - z0, height, depth, size))
        else:
            things.append(barrier(rng, side.border, plane, z1 - z0, height, depth, size))
    return [thing for thing in things if thing is not None]
