"""Colours of a generated street: a few typical tones per class, jittered per object."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

RGB = tuple[int, int, int]

ASPHALT: tuple[RGB, ...] = ((84, 84, 88), (98, 96, 95), (72, 74, 80), (108, 104, 102))
PAVEMENT: tuple[RGB, ...] = ((150, 146, 142), (168, 160, 150), (150, 124, 118), (128, 130, 136))
KERB: tuple[RGB, ...] = ((178, 176, 172), (150, 150, 150), (195, 190, 182))
LANE_MARKING: tuple[RGB, ...] = ((225, 225, 220), (210, 208, 200), (232, 205, 90))
FACADE: tuple[RGB, ...] = (
    (196, 180, 150),
    (172, 162, 152),
    (150, 92, 72),
    (212, 206, 196),
    (122, 112, 104),
    (182, 152, 122),
    (158, 168, 174),
    (205, 190, 120),
    (140, 140, 135),
)
WINDOW_GLASS: tuple[RGB, ...] = ((48, 58, 72), (70, 84, 100), (38, 42, 50), (96, 116, 136))
WINDOW_FRAME: tuple[RGB, ...] = ((226, 226, 220), (92, 82, 72), (62, 62, 64), (180, 170, 150))
FOLIAGE: tuple[RGB, ...] = ((58, 92, 44), (44, 78, 40), (78, 106, 48), (54, 84, 60), (90, 110, 60))
BARK: tuple[RGB, ...] = ((80, 66, 52), (96, 90, 80), (60, 52, 44))
GRASS: tuple[RGB, ...] = ((128, 138, 78), (142, 132, 90), (112, 128, 70), (138, 118, 86))
METAL: tuple[RGB, ...] = ((112, 114, 118), (82, 86, 92), (142, 142, 140), (60, 80, 66))
SIGN_RED, SIGN_BLUE, SIGN_WHITE = (200, 32, 36), (32, 72, 172), (236, 236, 234)
SIGN_YELLOW, SIGN_BACK = (238, 198, 44), (150, 152, 154)
LIGHT_HOUSING: tuple[RGB, ...] = ((34, 34, 34), (52, 58, 52), (30, 34, 40), (160, 140, 40))
LAMP_ON: tuple[RGB, ...] = ((255, 40, 30), (255, 190, 30), (60, 255, 140))
CAR_BODY: tuple[RGB, ...] = (
    (222, 222, 224),
    (26, 26, 30),
    (152, 154, 158),
    (96, 98, 102),
    (30, 50, 112),
    (152, 26, 26),
    (64, 32, 30),
    (36, 72, 48),
    (202, 192, 172),
    (40, 90, 150),
    (180, 180, 186),
)
BUS_BODY: tuple[RGB, ...] = ((226, 200, 40), (236, 236, 236), (40, 92, 172), (232, 122, 32))
TRUCK_BODY: tuple[RGB, ...] = ((236, 236, 232), (200, 200, 196), (60, 96, 160), (200, 60, 40))
TRAM_BODY: tuple[RGB, ...] = ((204, 40, 42), (222, 216, 206), (40, 150, 92), (120, 30, 62))
TYRE: tuple[RGB, ...] = ((24, 24, 26), (34, 32, 32))
TOP_CLOTHES: tuple[RGB, ...] = (
    (30, 30, 34),
    (200, 40, 40),
    (40, 60, 140),
    (230, 230, 225),
    (100, 100, 104),
    (60, 110, 60),
    (150, 110, 70),
    (220, 180, 40),
    (120, 40, 110),
    (70, 40, 30),
)
BOTTOM_CLOTHES: tuple[RGB, ...] = ((30, 32, 50), (24, 24, 26), (80, 80, 84), (170, 150, 110))
SKIN: tuple[RGB, ...] = ((230, 190, 160), (204, 152, 116), (152, 102, 72), (92, 62, 46))
HAIR: tuple[RGB, ...] = ((30, 24, 20), (90, 60, 30), (200, 170, 110), (120, 120, 120))
HELMET: tuple[RGB, ...] = ((230, 230, 230), (30, 30, 30), (200, 40, 40), (40, 80, 180))
WALL: tuple[RGB, ...] = ((150, 150, 148), (126, 130, 134), (168, 164, 158), (110, 112, 110))
FENCE: tuple[RGB, ...] = ((66, 88, 68), (92, 92, 98), (122, 96, 70), (150, 150, 150))
STATIC: tuple[RGB, ...] = ((60, 72, 60), (92, 92, 92), (140, 100, 60), (170, 120, 40))
EGO_HOOD: tuple[RGB, ...] = ((20, 20, 24), (44, 46, 52), (120, 120, 126))


def jitter(
    rng: np.random.Generator, color: Sequence[float], brightness: float = 0.12, spread: float = 8.0
) -> np.ndarray:
    """A colour varied in brightness (relative) and in each channel (absolute), as float RGB.

    Values may leave 0..255 a little; the painter clips the finished photo.
    """
    gain, red, green, blue = (rng.random(4) * 2.0 - 1.0).tolist()
    gain, spread = 1.0 + brightness * gain, spread * 1.7
    return np.array(
        [
            color[0] * gain + spread * red,
            color[1] * gain + spread * green,
            color[2] * gain + spread * blue,
        ]
    )


def pick(rng: np.random.Generator, colors: Sequence[RGB], **jitter_args) -> np.ndarray:
    """One of ``colors``, jittered."""
    return jitter(rng, colors[int(rng.random() * len(colors))], **jitter_args)


def shade(color: np.ndarray, factor: float) -> np.ndarray:
    """A colour made darker (factor < 1) or lighter; the painter clips the photo to 0..255."""
    return np.multiply(color, factor)


def mix(color: np.ndarray, other: Sequence[float], amount: float) -> np.ndarray:
    return np.asarray(color, dtype=np.float64) * (1 - amount) + np.asarray(other) * amount


@dataclass(frozen=True)
class Lighting:
    """The illumination of one scene, applied to every colour by the painter.

    Args:
        kind: "sunny", "overcast" or "dusk".
        gain: per-channel multiplier (brightness and colour cast).
        saturation: 1 keeps colours, 0 makes them grey.
        haze: RGB that far things fade to.
        haze_distance: metres at which things are about 63 % faded.
        shadow: how much ground shadows darken (0: no shadows).
        sun_side: -1 when the sun comes from the left, +1 from the right.
    """

    kind: str
    gain: np.ndarray
    saturation: float
    haze: np.ndarray
    haze_distance: float
    shadow: float
    sun_side: int


def sample_lighting(rng: np.random.Generator) -> Lighting:
    kind = ("sunny", "overcast", "dusk")[rng.choice(3, p=(0.45, 0.4, 0.15))]
    if kind == "sunny":
        gain = rng.uniform(1.0, 1.12) * np.array([1.03, 1.0, 0.95]) + rng.normal(0, 0.02, 3)
        return Lighting(
            kind,
            gain,
            rng.uniform(0.95, 1.15),
            np.array([200.0, 215, 235]),
            rng.uniform(250, 500),
            rng.uniform(0.3, 0.5),
            int(rng.choice((-1, 1))),
        )
    if kind == "overcast":
        gain = rng.uniform(0.85, 1.0) * np.ones(3) + rng.normal(0, 0.02, 3)
        return Lighting(
            kind,
            gain,
            rng.uniform(0.6, 0.85),
            np.array([200.0, 202, 206]),
            rng.uniform(150, 300),
            rng.uniform(0.08, 0.15),
            int(rng.choice((-1, 1))),
        )
    gain = rng.uniform(0.55, 0.75) * np.array([1.08, 0.95, 0.9]) + rng.normal(0, 0.02, 3)
    return Lighting(
        kind,
        gain,
        rng.uniform(0.7, 0.9),
        np.array([180.0, 150, 140]),
        rng.uniform(150, 300),
        rng.uniform(0.05, 0.15),
        int(rng.choice((-1, 1))),
    )


def calmer(lighting: Lighting, variation: float) -> Lighting:
    """The lighting moved towards a neutral overcast day: ``variation`` 1 keeps it, 0 gives plain
    white light without colour cast, haze or shadows."""
    if variation == 1.0:
        return lighting
    return replace(
        lighting,
        gain=1.0 + (lighting.gain - 1.0) * variation,
        saturation=1.0 + (lighting.saturation - 1.0) * variation,
        haze_distance=lighting.haze_distance / max(variation, 1e-3),
        shadow=lighting.shadow * variation,
    )
