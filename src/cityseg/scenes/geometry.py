"""Perspective camera and polygon helpers for the generated street scenes.

World coordinates are metres: x to the right, y up (the ground is y = 0), z forward (depth).
Image coordinates are pixels: u to the right, v down.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

NEAREST_DEPTH = 0.5
"""Geometry is never projected closer than this many metres, so coordinates stay finite."""


@dataclass(frozen=True)
class Camera:
    """A pinhole camera ``mount_height`` metres above a flat ground, looking along +z.

    Args:
        width: image width in pixels.
        height: image height in pixels.
        focal: focal length in pixels.
        center_u: column of the vanishing point of the street.
        horizon: row of the horizon.
        mount_height: height of the camera above the ground, in metres.
    """

    width: int
    height: int
    focal: float
    center_u: float
    horizon: float
    mount_height: float

    def project(self, points: np.ndarray) -> np.ndarray:
        """World points (..., 3) to image points (..., 2)."""
        points = np.asarray(points, dtype=np.float64)
        scale = self.focal / np.maximum(points[..., 2:3], NEAREST_DEPTH)
        image = points[..., :2] * scale
        image[..., 0] += self.center_u
        image[..., 1] = self.horizon + self.mount_height * scale[..., 0] - image[..., 1]
        return image

    def pixels_per_metre(self, depth: float) -> float:
        return self.focal / max(depth, NEAREST_DEPTH)

    def foot(self, x: float, z: float) -> np.ndarray:
        """Image position of the ground point (x, 0, z)."""
        return self.project(np.array([x, 0.0, z]))

    def depth_of_row(self, row: float) -> float:
        """Depth of the ground seen at image row ``row`` (below the horizon)."""
        return self.focal * self.mount_height / max(row - self.horizon, 1e-3)

    def sample_depth(self, rng: np.random.Generator, near: float, far: float) -> float:
        """A depth in [near, far], uniform in image row so that near and far objects mix evenly."""
        return 1.0 / rng.uniform(1.0 / far, 1.0 / max(near, 1e-3))

    def nearest_visible(self, x: float, margin: float = 0.1) -> float:
        """The smallest depth at which a point at lateral position ``x`` is inside the image."""
        room = (self.center_u if x < 0 else self.width - self.center_u) - margin * self.width
        return self.focal * abs(x) / max(room, 1.0)

    def sample_visible_depth(
        self, rng: np.random.Generator, x: float, near: float, far: float
    ) -> float:
        """Like ``sample_depth``, but no nearer than where lateral position ``x`` is in view."""
        return self.sample_depth(rng, min(max(near, self.nearest_visible(x)), far), far)


def ground_quad(camera: Camera, x0: float, x1: float, z0: float, z1: float) -> np.ndarray:
    """The image polygon of the ground rectangle x in [x0, x1], z in [z0, z1]."""
    z0 = max(z0, NEAREST_DEPTH)
    return camera.project(np.array([[x0, 0, z0], [x1, 0, z0], [x1, 0, z1], [x0, 0, z1]]))


def ground_quads(camera: Camera, x0, x1, z0, z1) -> np.ndarray:
    """Many ground rectangles at once (arrays broadcast together): an (N, 4, 2) array."""
    x0, x1, z0, z1 = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (x0, x1, z0, z1))
    )
    z0 = np.maximum(z0, NEAREST_DEPTH)
    corners = np.stack(
        [
            np.stack([x0, z0], -1),
            np.stack([x1, z0], -1),
            np.stack([x1, z1], -1),
            np.stack([x0, z1], -1),
        ],
        axis=-2,
    )
    world = np.insert(corners, 1, 0.0, axis=-1)
    return camera.project(world)


def front_quad(camera: Camera, x0: float, x1: float, y0: float, y1: float, z: float) -> np.ndarray:
    """The image polygon of the vertical rectangle in the plane z = const (facing the camera)."""
    scale = camera.focal / max(z, NEAREST_DEPTH)
    u0, u1 = camera.center_u + scale * x0, camera.center_u + scale * x1
    v0 = camera.horizon + scale * (camera.mount_height - y0)
    v1 = camera.horizon + scale * (camera.mount_height - y1)
    return np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]])


@lru_cache(maxsize=32)
def _unit_circle(vertices: int) -> np.ndarray:
    angles = np.linspace(0.0, 2.0 * np.pi, vertices, endpoint=False)
    circle = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    circle.flags.writeable = False
    return circle


def ellipse(center, radius_u: float, radius_v: float, vertices: int = 12) -> np.ndarray:
    """Points of an axis-aligned ellipse in image coordinates."""
    return _unit_circle(vertices) * (radius_u, radius_v) + center


def blob(
    rng: np.random.Generator,
    center,
    radius_u: float,
    radius_v: float,
    vertices: int = 16,
    roughness: float = 0.25,
) -> np.ndarray:
    """An irregular closed shape (tree crowns, bushes, clouds) around ``center``."""
    angles = np.linspace(0.0, 2.0 * np.pi, vertices, endpoint=False)
    angles = angles + rng.uniform(-0.3, 0.3, vertices) * (2.0 * np.pi / vertices)
    scale = 1.0 + roughness * rng.uniform(-1.0, 1.0, vertices)
    return np.stack(
        [
            center[0] + radius_u * scale * np.cos(angles),
            center[1] + radius_v * scale * np.sin(angles),
        ],
        axis=1,
    )


def segment_quad(start, end, width_start: float, width_end: float | None = None) -> np.ndarray:
    """A thick line from ``start`` to ``end`` (2D points) as a quadrilateral: limbs, bars."""
    (x0, y0), (x1, y1) = start, end
    width_end = width_start if width_end is None else width_end
    length = math.hypot(x1 - x0, y1 - y0) or 1e-9
    normal_x, normal_y = (y0 - y1) / length, (x1 - x0) / length
    h0, h1 = width_start / 2, width_end / 2
    return np.array(
        [
            [x0 + normal_x * h0, y0 + normal_y * h0],
            [x1 + normal_x * h1, y1 + normal_y * h1],
            [x1 - normal_x * h1, y1 - normal_y * h1],
            [x0 - normal_x * h0, y0 - normal_y * h0],
        ]
    )


def _clip_half_plane(points: np.ndarray, axis: int, limit: float, keep_below: bool) -> np.ndarray:
    """One Sutherland-Hodgman pass: keep the part of a polygon on one side of an axis line."""
    if len(points) == 0:
        return points
    offset = points[:, axis] - limit
    inside = offset <= 0 if keep_below else offset >= 0
    if inside.all():
        return points
    following = np.concatenate([points[1:], points[:1]])
    following_offset = np.concatenate([offset[1:], offset[:1]])
    crosses = inside != np.concatenate([inside[1:], inside[:1]])
    denominator = np.where(crosses, offset - following_offset, 1.0)
    crossing = points + (offset / denominator)[:, None] * (following - points)
    candidates = np.stack([points, crossing], axis=1).reshape(-1, 2)
    keep = np.stack([inside, crosses], axis=1).reshape(-1)
    return candidates[keep]


def clip_to_image(polygon: np.ndarray, width: int, height: int) -> np.ndarray | None:
    """Clip a float polygon to the image and round it to integer pixels.

    Returns an (N, 2) int32 array, or None when nothing of the polygon is left in the image.
    """
    points = np.asarray(polygon, dtype=np.float64)
    low, high = points.min(axis=0), points.max(axis=0)
    if high[0] < 0 or high[1] < 0 or low[0] > width - 1 or low[1] > height - 1:
        return None
    if low[0] < 0 or low[1] < 0 or high[0] > width - 1 or high[1] > height - 1:
        points = _clip_half_plane(points, 0, 0.0, keep_below=False)
        points = _clip_half_plane(points, 0, width - 1.0, keep_below=True)
        points = _clip_half_plane(points, 1, 0.0, keep_below=False)
        points = _clip_half_plane(points, 1, height - 1.0, keep_below=True)
        if len(points) < 3:
            return None
    return np.rint(points).astype(np.int32)


def trace_outline(polygons: list[np.ndarray], width: int, height: int) -> np.ndarray | None:
    """The outer outline of the union of filled polygons, clipped to the image, as int32 (N, 2).

    ``polygons`` are int32 pixel polygons; each is filled on its own, so overlaps add up instead
    of cancelling. Used for people, vehicles and two-wheelers, annotated as one polygon each.
    """
    stacked = np.concatenate(polygons)
    left, top = np.maximum(stacked.min(axis=0), 0)
    right, bottom = np.minimum(stacked.max(axis=0), [width - 1, height - 1])
    if right < left or bottom < top:
        return None
    mask = np.zeros((bottom - top + 3, right - left + 3), dtype=np.uint8)
    shift = (int(1 - left), int(1 - top))
    for polygon in polygons:
        cv2.fillPoly(mask, [polygon], 1, offset=shift)
    mask[0, :] = mask[-1, :] = 0
    mask[:, 0] = mask[:, -1] = 0
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    largest = contours[0] if len(contours) == 1 else max(contours, key=cv2.contourArea)
    outline = largest[:, 0, :] - shift
    if len(outline) < 3:
        outline = _widen_degenerate(outline)
    return outline.astype(np.int32)


def _widen_degenerate(outline: np.ndarray) -> np.ndarray:
    """A one- or two-pixel outline as a tiny (zero-area) triangle, still a valid polygon."""
    first, last = outline[0], outline[-1]
    return np.array([first, last, last], dtype=np.int32)


def upright(camera: Camera, x: float, z: float, local) -> np.ndarray:
    """Image points of an upright flat thing standing at ground point (x, z) and facing the camera.

    ``local`` holds (..., 2) offsets in metres: sideways to the right, and up from the ground.
    """
    scale = camera.focal / max(z, NEAREST_DEPTH)
    foot = (camera.center_u + scale * x, camera.horizon + scale * camera.mount_height)
    return np.asarray(local, dtype=np.float64) * (scale, -scale) + foot


def rectangle(left: float, bottom: float, right: float, top: float) -> np.ndarray:
    """Corners of an axis-aligned rectangle in local metres (x right, y up)."""
    return np.array([[left, bottom], [right, bottom], [right, top], [left, top]], dtype=np.float64)


UP = np.array([0.0, 1.0, 0.0])


class Plane:
    """A vertical plane of the world, with 2D coordinates: ``s`` metres along it, ``t`` up."""

    def __init__(self, camera: Camera, origin, along) -> None:
        self.camera = camera
        self.origin = np.asarray(origin, dtype=np.float64)
        self.along = np.asarray(along, dtype=np.float64)

    def world(self, s, t) -> np.ndarray:
        s, t = np.asarray(s, dtype=np.float64), np.asarray(t, dtype=np.float64)
        return self.origin + s[..., None] * self.along + t[..., None] * UP

    def polygon(self, points) -> np.ndarray:
        """The image polygon of (N, 2) plane points (s, t)."""
        points = np.asarray(points, dtype=np.float64)
        corners = self.world(points[:, 0], points[:, 1])
        corners[:, 2] = np.maximum(corners[:, 2], NEAREST_DEPTH)
        return self.camera.project(corners)

    def rectangle(self, s0: float, s1: float, t0: float, t1: float) -> np.ndarray:
        return self.polygon(rectangle(s0, t0, s1, t1))

    def rectangles(self, s0, s1, t0, t1) -> np.ndarray:
        """Many small rectangles at once, (N, 4, 2); those too close or too small to see are
        left out."""
        quads, seen = self.project_rectangles(np.stack([s0, s1, t0, t1], axis=1))
        return quads[seen]

    def project_rectangles(self, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image quads (N, 4, 2) of boxes (N, 4) given as (s0, s1, t0, t1), and which of them
        are worth drawing: in front of the camera and at least 1.5 pixels tall."""
        s0, s1, t0, t1 = boxes.T
        corners = self.world(np.stack([s0, s1, s1, s0], axis=1), np.stack([t0, t0, t1, t1], axis=1))
        quads = self.camera.project(corners)
        seen = corners[..., 2].min(axis=1) > 2 * NEAREST_DEPTH
        seen &= np.ptp(quads[..., 1], axis=1) >= 1.5
        return quads, seen
