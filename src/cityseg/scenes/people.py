"""Pedestrians, riders, bicycles and motorcycles, drawn upright at their depth.

Shapes are laid out in local metres (x to the right, y up from the ground) around the point where
the figure stands, then projected; each figure is annotated by the outline of its parts.
"""

from __future__ import annotations

import numpy as np

from cityseg.scenes import palette
from cityseg.scenes.geometry import Camera, ellipse, rectangle, segment_quad, upright
from cityseg.scenes.things import Paint, Thing, traced

RIDER_GAP = 0.01
"""A rider is this many metres nearer than its bicycle, so that it is drawn over it."""


class Figure:
    """Collects the paints of one upright figure standing at ground point (x, z)."""

    def __init__(self, camera: Camera, x: float, z: float) -> None:
        self.camera, self.x, self.z = camera, x, z
        self.paints: list[Paint] = []

    def add(self, color, *shapes: np.ndarray, grain: float = 3.0, blotch: float = 2.0) -> None:
        """Each shape becomes its own paint, so that overlapping limbs do not cancel out."""
        for shape in shapes:
            outline = upright(self.camera, self.x, self.z, shape)
            self.paints.append(Paint([outline], color, None, grain, blotch, self.z))

    def add_apart(self, color, *shapes: np.ndarray) -> None:
        """Shapes that do not touch (two legs, two arms seen from the front) as one paint."""
        outlines = [upright(self.camera, self.x, self.z, shape) for shape in shapes]
        self.paints.append(Paint(outlines, color, None, 3.0, 2.0, self.z))

    def ring(self, color, center, outer: float, inner: float) -> None:
        """A tyre: an outer and an inner circle filled together (even-odd), hollow in the middle."""
        shapes = [ellipse(center, outer, outer, 14), ellipse(center, inner, inner, 14)]
        outlines = [upright(self.camera, self.x, self.z, s) for s in shapes]
        self.paints.append(Paint(outlines, color, None, 2.0, 1.0, self.z))

    def thing(self, label: str, size, depth: float | None = None) -> Thing | None:
        return traced(label, self.paints, self.z if depth is None else depth, size)


def _clothes(rng) -> dict[str, np.ndarray]:
    return {
        "top": palette.pick(rng, palette.TOP_CLOTHES, spread=10.0),
        "bottom": palette.pick(rng, palette.BOTTOM_CLOTHES, spread=8.0),
        "skin": palette.pick(rng, palette.SKIN, spread=6.0),
        "hair": palette.pick(rng, palette.HAIR, spread=6.0),
    }


def person(rng, camera: Camera, x: float, z: float, size) -> Thing | None:
    """A pedestrian seen from the front or back (standing) or from the side (walking)."""
    figure = Figure(camera, x, z)
    height = rng.uniform(1.55, 1.95)
    k = height / 1.75
    clothes = _clothes(rng)
    if rng.random() < 0.5:
        stride = rng.uniform(0.0, 0.4) * k
        heading = rng.choice((-1.0, 1.0))
        swing = stride * 0.6 * heading
        figure.add(
            palette.shade(clothes["top"], 0.8),
            segment_quad((0, 1.42 * k), (-swing, 0.85 * k), 0.09 * k),
        )
        figure.add(
            clothes["bottom"],
            segment_quad((0, 0.9 * k), (-stride / 2, 0.0), 0.15 * k),
            segment_quad((0, 0.9 * k), (stride / 2, 0.0), 0.15 * k),
        )
        figure.add(clothes["top"], rectangle(-0.14 * k, 0.85 * k, 0.14 * k, 1.45 * k))
        figure.add(clothes["top"], segment_quad((0, 1.42 * k), (swing, 0.85 * k), 0.09 * k))
        head = (0.02 * heading * k, 1.63 * k)
    else:
        figure.add_apart(
            clothes["bottom"],
            segment_quad((-0.09 * k, 0.9 * k), (-0.1 * k, 0.0), 0.14 * k),
            segment_quad((0.09 * k, 0.9 * k), (0.1 * k, 0.0), 0.14 * k),
        )
        torso = np.array([[-0.17, 0.85], [0.17, 0.85], [0.21, 1.44], [-0.21, 1.44]]) * k
        figure.add(clothes["top"], torso)
        figure.add_apart(
            palette.shade(clothes["top"], 0.9),
            segment_quad((-0.21 * k, 1.42 * k), (-0.25 * k, 0.85 * k), 0.09 * k),
            segment_quad((0.21 * k, 1.42 * k), (0.25 * k, 0.85 * k), 0.09 * k),
        )
        head = (0.0, 1.63 * k)
    _head(figure, clothes, head, k, rng.random() < 0.5)
    return figure.thing("person", size)


def _head(figure: Figure, clothes, center, k: float, facing: bool, helmet=None) -> None:
    figure.add(clothes["skin"], rectangle(-0.05 * k, center[1] - 0.2 * k, 0.05 * k, center[1]))
    figure.add(
        helmet if helmet is not None else clothes["hair"] if not facing else clothes["skin"],
        ellipse(center, 0.1 * k, 0.12 * k, 10),
    )
    if facing and helmet is None:
        hair = ellipse((center[0], center[1] + 0.05 * k), 0.1 * k, 0.07 * k, 10)
        figure.add(clothes["hair"], hair)


def cyclist(rng, camera: Camera, x: float, z: float, side_view: bool, size, rider: bool = True):
    """A bicycle, and optionally its rider: a list of things, the bicycle first."""
    figure = Figure(camera, x, z)
    frame = palette.pick(rng, palette.CAR_BODY, spread=10.0)
    tyre = palette.pick(rng, palette.TYRE, spread=3.0)
    heading = rng.choice((-1.0, 1.0))
    if side_view:
        rear, front = (-0.52 * heading, 0.34), (0.52 * heading, 0.34)
        for hub in (rear, front):
            figure.add(palette.jitter(rng, (90, 90, 92)), ellipse(hub, 0.3, 0.3, 12), grain=8)
            figure.ring(tyre, hub, 0.35, 0.29)
        seat, bar, crank = (-0.2 * heading, 0.9), (0.42 * heading, 1.0), (0.0, 0.32)
        tubes = [
            (rear, seat),
            (seat, crank),
            (crank, rear),
            (crank, bar),
            (seat, bar),
            (bar, front),
        ]
        figure.add(frame, *(segment_quad(a, b, 0.07) for a, b in tubes))
        figure.add(
            tyre,
            rectangle(seat[0] - 0.12, 0.9, seat[0] + 0.12, 0.97),
            segment_quad((bar[0], 1.0), (bar[0] - 0.12 * heading, 1.08), 0.06),
        )
    else:
        figure.add(tyre, rectangle(-0.05, 0.0, 0.05, 0.7))
        figure.add(frame, rectangle(-0.04, 0.55, 0.04, 0.95))
        figure.add(tyre, rectangle(-0.32, 0.98, 0.32, 1.04), rectangle(-0.1, 0.88, 0.1, 0.95))
    things = [figure.thing("bicycle", size)]
    if rider:
        hips = (-0.2 * heading, 0.95) if side_view else (0.0, 0.95)
        things.append(_rider(rng, camera, x, z, hips, side_view, heading, None, size))
    return [thing for thing in things if thing is not None]


def motorcyclist(rng, camera: Camera, x: float, z: float, side_view: bool, size, rider=True):
    """A motorcycle or scooter, and optionally its rider: a list of things, the machine first."""
    figure = Figure(camera, x, z)
    body = palette.pick(rng, palette.CAR_BODY + palette.BUS_BODY, spread=8.0)
    tyre = palette.pick(rng, palette.TYRE, spread=3.0)
    heading = rng.choice((-1.0, 1.0))
    if side_view:
        rear, front = (-0.7 * heading, 0.32), (0.7 * heading, 0.32)
        figure.add(tyre, ellipse(rear, 0.33, 0.33, 14), ellipse(front, 0.33, 0.33, 14))
        figure.add(
            palette.jitter(rng, (150, 150, 150)),
            ellipse(rear, 0.14, 0.14, 8),
            ellipse(front, 0.14, 0.14, 8),
        )
        figure.add(
            palette.jitter(rng, (60, 60, 64)),
            np.array([[-0.3, 0.22], [0.35, 0.22], [0.4, 0.62], [-0.3, 0.62]]) * [heading, 1],
        )
        shell = np.array(
            [
                [-0.85, 0.6],
                [-0.1, 0.66],
                [0.3, 0.88],
                [0.55, 0.8],
                [0.48, 0.55],
                [-0.2, 0.5],
                [-0.8, 0.48],
            ]
        )
        figure.add(body, shell * [heading, 1])
        figure.add(
            tyre,
            segment_quad((0.5 * heading, 0.8), (0.7 * heading, 0.32), 0.09),
            segment_quad((0.45 * heading, 1.05), (0.6 * heading, 0.85), 0.07),
        )
        hips = (-0.25 * heading, 0.85)
    else:
        figure.add(tyre, rectangle(-0.1, 0.0, 0.1, 0.62))
        figure.add(body, np.array([[-0.3, 0.4], [0.3, 0.4], [0.36, 0.92], [-0.36, 0.92]]))
        if rng.random() < 0.5:
            figure.add(palette.shade(body, 0.6), rectangle(-0.22, 0.92, 0.22, 1.25))
        figure.add(palette.jitter(rng, (200, 40, 30)), rectangle(-0.12, 0.72, 0.12, 0.82))
        figure.add(tyre, rectangle(-0.38, 1.0, 0.38, 1.06), rectangle(-0.06, 0.9, 0.06, 1.02))
        hips = (0.0, 0.9)
    things = [figure.thing("motorcycle", size)]
    if rider:
        helmet = palette.pick(rng, palette.HELMET, spread=8.0)
        things.append(_rider(rng, camera, x, z, hips, side_view, heading, helmet, size))
    return [thing for thing in things if thing is not None]


def _rider(rng, camera, x, z, hips, side_view: bool, heading: float, helmet, size):
    """A person sitting on a two-wheeler, hands on the handlebar, labelled 'rider'."""
    figure = Figure(camera, x, z)
    clothes = _clothes(rng)
    hx, hy = hips
    if side_view:
        shoulder = (hx + 0.22 * heading, hy + 0.55)
        knee, foot = (hx + 0.38 * heading, hy - 0.12), (hx + 0.25 * heading, 0.15)
        figure.add(
            clothes["bottom"], segment_quad(hips, knee, 0.16), segment_quad(knee, foot, 0.12)
        )
        figure.add(clothes["top"], segment_quad(hips, shoulder, 0.3, 0.26))
        figure.add(
            palette.shade(clothes["top"], 0.85),
            segment_quad(shoulder, (hx + 0.62 * heading, hy + 0.15), 0.09),
        )
        head = (shoulder[0] + 0.06 * heading, shoulder[1] + 0.2)
    else:
        figure.add_apart(
            clothes["bottom"],
            segment_quad((hx - 0.12, hy), (-0.16, 0.22), 0.14),
            segment_quad((hx + 0.12, hy), (0.16, 0.22), 0.14),
        )
        figure.add(
            clothes["top"],
            np.array([[-0.17, hy], [0.17, hy], [0.21, hy + 0.58], [-0.21, hy + 0.58]]),
        )
        figure.add_apart(
            palette.shade(clothes["top"], 0.85),
            segment_quad((-0.2, hy + 0.55), (-0.3, 1.02), 0.09),
            segment_quad((0.2, hy + 0.55), (0.3, 1.02), 0.09),
        )
        head = (0.0, hy + 0.78)
    _head(figure, clothes, head, 1.0, False, helmet)
    return figure.thing("rider", size, z - RIDER_GAP)
