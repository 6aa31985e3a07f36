"""Cars, trucks, buses and trams: boxes in perspective with windows, lights and wheels.

Each vehicle stands in a lane with its near face ``z`` metres ahead, centred on ``x``; ``oncoming``
vehicles show their front, the others their rear. Their annotation is the outline of all parts.
"""

from __future__ import annotations

import numpy as np

from cityseg.scenes import palette
from cityseg.scenes.geometry import Camera, Plane, front_quad, segment_quad
from cityseg.scenes.things import Paint, Thing, traced

TYRE_STEPS = np.linspace(0.0, 2.0 * np.pi, 12, endpoint=False)


def _visible_side(x0: float, x1: float) -> float | None:
    """x of the long side the camera sees: the right one of a vehicle on the left, and so on."""
    if x1 < 0:
        return x1
    if x0 > 0:
        return x0
    return None


def _box(camera: Camera, x0, x1, y0, y1, z0, z1, color, depth: float) -> list[Paint]:
    """The visible faces of an axis-aligned box, far to near: long side, top, near face."""
    paints = []
    side = _visible_side(x0, x1)
    if side is not None:
        plane = Plane(camera, (side, 0.0, z0), (0.0, 0.0, 1.0))
        outline = plane.rectangle(0.0, z1 - z0, y0, y1)
        paints.append(Paint([outline], palette.shade(color, 0.78), None, 2.0, 2.0, depth))
    if y1 < camera.mount_height:
        top = camera.project(np.array([[x0, y1, z0], [x1, y1, z0], [x1, y1, z1], [x0, y1, z1]]))
        paints.append(Paint([top], palette.shade(color, 1.1), None, 2.0, 2.0, depth))
    near = front_quad(camera, x0, x1, y0, y1, z0)
    paints.append(Paint([near], palette.shade(color, 1.05), palette.shade(color, 0.9), 2, 2, depth))
    return paints


def _wheels(camera, x0, x1, z, centres, radius: float, depth: float, rng):
    """The dark wheels and underbody below the near face, and the tyres and hubs on the visible
    long side: two lists of paints, to draw before and after the body."""
    tyre = palette.pick(rng, palette.TYRE, spread=3.0)
    below = [
        Paint(
            [front_quad(camera, x0 + 0.3, x1 - 0.3, 0.05, 0.35, z + 0.3)],
            tyre * 1.3,
            None,
            2,
            1,
            depth,
        ),
        Paint(
            [
                front_quad(camera, x0 + 0.05, x0 + 0.35, 0.0, radius * 1.4, z + radius * 1.5),
                front_quad(camera, x1 - 0.35, x1 - 0.05, 0.0, radius * 1.4, z + radius * 1.5),
            ],
            tyre,
            None,
            2.0,
            1.0,
            depth,
        ),
    ]
    side = _visible_side(x0, x1)
    if side is None:
        return below, []
    plane = Plane(camera, (side, 0.0, z), (0.0, 0.0, 1.0))
    circle = np.stack([np.cos(TYRE_STEPS), 1.0 + np.sin(TYRE_STEPS)], axis=1)
    tyres = [plane.polygon(circle * radius + (s, 0.0)) for s in centres]
    hubs = [plane.polygon(circle * radius * 0.5 + (s, radius * 0.5)) for s in centres]
    hub_color = palette.jitter(rng, (150, 150, 152))
    return below, [
        Paint(tyres, tyre, None, 2.0, 1.0, depth),
        Paint(hubs, hub_color, None, 2, 1, depth),
    ]


def _lamps(camera, x0, x1, y0, y1, z, front: bool, rng, depth: float) -> list[Paint]:
    """Head or tail lights at both corners of the near face, and a number plate between."""
    color = (235, 230, 200) if front else (200, 30, 30)
    lamps = [
        front_quad(camera, x0 + 0.08, x0 + 0.38, y0, y1, z),
        front_quad(camera, x1 - 0.38, x1 - 0.08, y0, y1, z),
    ]
    middle = (x0 + x1) / 2
    plate = front_quad(camera, middle - 0.26, middle + 0.26, y0 - 0.3, y0 - 0.18, z)
    return [
        Paint(lamps, palette.jitter(rng, color, 0.05), None, 2.0, 1.0, depth),
        Paint([plate], palette.jitter(rng, (230, 230, 228), 0.05), None, 2.0, 1.0, depth),
    ]


def car(rng, camera: Camera, x: float, z: float, oncoming: bool, size) -> Thing | None:
    """A saloon, estate or van: body, glasshouse, wheels, lights."""
    van = rng.random() < 0.15
    width = rng.uniform(1.9, 2.0) if van else rng.uniform(1.7, 1.95)
    length = rng.uniform(4.8, 5.4) if van else rng.uniform(3.9, 4.8)
    height = rng.uniform(1.9, 2.1) if van else rng.uniform(1.4, 1.55)
    belt = 1.0 if van else 0.95
    near_end, far_end = (0.3, 0.4) if van else ((1.3, 0.9) if oncoming else (0.9, 1.3))
    x0, x1 = x - width / 2, x + width / 2
    body = palette.pick(rng, palette.CAR_BODY, spread=5.0)
    glass = palette.shade(palette.pick(rng, palette.WINDOW_GLASS, spread=4.0), 0.8)
    paints, side_wheels = _wheels(camera, x0, x1, z, (0.8, length - 0.8), 0.33, z, rng)
    paints += _box(camera, x0, x1, 0.25, belt, z, z + length, body, z)
    side = _visible_side(x0, x1)
    if side is not None:
        plane = Plane(camera, (side, 0.0, z), (0.0, 0.0, 1.0))
        windows = plane.polygon(
            [
                (near_end, belt),
                (near_end + 0.5, height - 0.05),
                (length - far_end - 0.4, height - 0.05),
                (length - far_end, belt),
            ]
        )
        cabin = plane.polygon(
            [
                (near_end, belt),
                (near_end + 0.45, height),
                (length - far_end - 0.35, height),
                (length - far_end, belt),
            ]
        )
        paints.append(Paint([cabin], palette.shade(body, 0.78), None, 2.0, 1.0, z))
        paints.append(Paint([windows], glass, palette.shade(glass, 0.7), 2.0, 1.0, z))
        paints += side_wheels
    slant = 0.15 if van else 0.45
    cabin_start = z + near_end
    shell = camera.project(
        np.array(
            [
                [x0 + 0.08, belt, cabin_start],
                [x1 - 0.08, belt, cabin_start],
                [x1 - 0.2, height, cabin_start + slant],
                [x0 + 0.2, height, cabin_start + slant],
            ]
        )
    )
    pane = camera.project(
        np.array(
            [
                [x0 + 0.18, belt + 0.05, cabin_start],
                [x1 - 0.18, belt + 0.05, cabin_start],
                [x1 - 0.28, height - 0.06, cabin_start + slant],
                [x0 + 0.28, height - 0.06, cabin_start + slant],
            ]
        )
    )
    if height < camera.mount_height:
        roof_end = z + length - far_end - 0.35
        roof = camera.project(
            np.array(
                [
                    [x0 + 0.2, height, cabin_start + slant],
                    [x1 - 0.2, height, cabin_start + slant],
                    [x1 - 0.2, height, roof_end],
                    [x0 + 0.2, height, roof_end],
                ]
            )
        )
        paints.append(Paint([roof], palette.shade(body, 1.1), None, 2.0, 1.0, z))
    paints.append(Paint([shell], body, None, 2.0, 1.0, z))
    paints.append(Paint([pane], glass, palette.shade(glass, 0.75), 2.0, 1.0, z))
    paints += _lamps(camera, x0, x1, 0.68, 0.84, z, oncoming, rng, z)
    return traced("car", paints, z, size)


def bus(rng, camera: Camera, x: float, z: float, oncoming: bool, size) -> Thing | None:
    """A city bus: tall box with a band of windows, big windscreen or small rear window."""
    width, length, height = 2.55, rng.uniform(11.0, 13.0), rng.uniform(3.0, 3.2)
    x0, x1 = x - width / 2, x + width / 2
    body = palette.pick(rng, palette.BUS_BODY, spread=5.0)
    glass = palette.shade(palette.pick(rng, palette.WINDOW_GLASS, spread=4.0), 0.8)
    paints, side_wheels = _wheels(camera, x0, x1, z, (2.5, length - 3.0), 0.5, z, rng)
    paints += _box(camera, x0, x1, 0.3, height, z, z + length, body, z)
    paints += _side_windows(camera, x0, x1, z, length, 1.15, 2.65, 1.6, glass)
    paints += side_wheels
    bottom, top = (1.0, 2.75) if oncoming else (1.9, 2.7)
    paints.append(Paint([front_quad(camera, x0 + 0.12, x1 - 0.12, bottom, top, z)], glass))
    if oncoming:
        sign = front_quad(camera, x0 + 0.3, x1 - 0.3, 2.82, 3.02, z)
        paints.append(Paint([sign], palette.jitter(rng, (240, 170, 40)), None, 2.0, 1.0, z))
    paints += _lamps(camera, x0, x1, 0.55, 0.8, z, oncoming, rng, z)
    return traced("bus", paints, z, size)


def _side_windows(camera, x0, x1, z, length, bottom, top, pitch, glass) -> list[Paint]:
    side = _visible_side(x0, x1)
    if side is None:
        return []
    plane = Plane(camera, (side, 0.0, z), (0.0, 0.0, 1.0))
    starts = np.arange(0.5, length - pitch, pitch)
    panes = plane.rectangles(
        starts + 0.08,
        starts + pitch - 0.08,
        np.full_like(starts, bottom),
        np.full_like(starts, top),
    )
    return [Paint(panes, glass, palette.shade(glass, 0.75), 2.0, 1.0, z)] if len(panes) else []


def truck(rng, camera: Camera, x: float, z: float, oncoming: bool, size) -> Thing | None:
    """A lorry: a cab and a taller cargo box, cab first when it comes towards the camera."""
    width = rng.uniform(2.3, 2.5)
    cab_length, cargo_length = 2.2, rng.uniform(5.0, 8.0)
    cab_height, cargo_height = rng.uniform(2.7, 3.1), rng.uniform(3.2, 3.8)
    x0, x1 = x - width / 2, x + width / 2
    cab_color = palette.pick(rng, palette.TRUCK_BODY, spread=5.0)
    cargo_color = palette.pick(rng, palette.TRUCK_BODY, spread=5.0)
    glass = palette.shade(palette.pick(rng, palette.WINDOW_GLASS, spread=4.0), 0.8)
    length = cab_length + 0.3 + cargo_length
    paints, side_wheels = _wheels(camera, x0, x1, z, (1.1, length - 1.3), 0.5, z, rng)
    cab_z = z if oncoming else z + cargo_length + 0.3
    cargo_z = z + cab_length + 0.3 if oncoming else z
    far, near = (
        (cargo_z, cargo_length, cargo_height, cargo_color, 0.9),
        (cab_z, cab_length, cab_height, cab_color, 0.5),
    )
    if not oncoming:
        far, near = near, far
    for start, part_length, part_height, color, floor in (far, near):
        paints += _box(camera, x0, x1, floor, part_height, start, start + part_length, color, z)
    if oncoming:
        screen = front_quad(camera, x0 + 0.15, x1 - 0.15, 1.6, cab_height - 0.3, z)
        paints.append(Paint([screen], glass, palette.shade(glass, 0.7), 2.0, 1.0, z))
    else:
        seam = front_quad(camera, x - 0.03, x + 0.03, 1.0, cargo_height - 0.1, z)
        paints.append(Paint([seam], palette.shade(cargo_color, 0.6), None, 2.0, 1.0, z))
    paints += side_wheels
    paints += _lamps(camera, x0, x1, 0.6, 0.85, z, oncoming, rng, z)
    return traced("truck", paints, z, size)


def _pantograph(camera: Camera, x: float, roof: float, z: float, depth: float) -> list[Paint]:
    """The roof box and the diamond-shaped current collector of a tram."""
    box = front_quad(camera, x - 0.7, x + 0.7, roof, roof + 0.3, z)
    foot_left, foot_right, apex, bar_left, bar_right = camera.project(
        np.array(
            [
                [x - 0.45, roof + 0.3, z],
                [x + 0.45, roof + 0.3, z],
                [x, roof + 1.1, z],
                [x - 0.6, roof + 1.1, z],
                [x + 0.6, roof + 1.1, z],
            ]
        )
    )
    width = max(1.0, camera.pixels_per_metre(z) * 0.06)
    arms = [
        segment_quad(foot_left, apex, width),
        segment_quad(foot_right, apex, width),
        segment_quad(bar_left, bar_right, width),
    ]
    return [Paint([box], (60, 60, 64), None, 2.0, 1.0, depth)] + [
        Paint([arm], (40, 40, 44), None, 1.0, 1.0, depth) for arm in arms
    ]


def tram(rng, camera: Camera, x: float, z: float, oncoming: bool, size) -> Thing | None:
    """A tram on its rails (the Cityscapes 'train' class): long, articulated, many windows."""
    width, length, height = 2.4, rng.uniform(25.0, 32.0), rng.uniform(3.3, 3.5)
    x0, x1 = x - width / 2, x + width / 2
    body = palette.pick(rng, palette.TRAM_BODY, spread=5.0)
    glass = palette.shade(palette.pick(rng, palette.WINDOW_GLASS, spread=4.0), 0.8)
    centres = (2.0, length / 2, length - 2.0)
    paints, side_wheels = _wheels(camera, x0, x1, z, centres, 0.38, z, rng)
    paints += _box(camera, x0, x1, 0.35, height, z, z + length, body, z)
    paints += _side_windows(camera, x0, x1, z, length, 1.0, 2.6, 2.4, glass)
    paints += side_wheels
    screen = front_quad(camera, x0 + 0.1, x1 - 0.1, 1.1, 2.9, z)
    paints.append(Paint([screen], glass, palette.shade(glass, 0.7), 2.0, 1.0, z))
    pillar = front_quad(camera, x - 0.05, x + 0.05, 1.1, 2.9, z)
    stripe = front_quad(camera, x0, x1, 0.5, 0.75, z)
    paints.append(Paint([pillar, stripe], palette.shade(body, 0.55), None, 2.0, 1.0, z))
    paints += _pantograph(camera, x, height, z + 3.0, z)
    paints += _lamps(camera, x0, x1, 0.8, 0.95, z, oncoming, rng, z)
    return traced("train", paints, z, size)
