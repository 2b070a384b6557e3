"""The light on the object, measured from one RGB-D view: the direction towards the light in the
camera frame, from how the object's shading follows its measured surface normals.

Why: a robot's lights are fixed in the room like the table, so every view sees its object lit
from the same world direction. Expressed in the object frame of each view's pose, the views'
light directions must agree; a view turned the wrong way about the object's up axis sees its
light turned with it. On a surface of revolution (a bell, a plate, a ball) or an object seen from
sides that share little (a teapot's opposite sides), the measured surfaces leave that turn open;
the light measures it (``registration.turn_to_light``). It measures nothing where the object is
printed or dark (its shading is not its albedo's), where the light is overcast, or where a box's
few flat faces fit many light directions alike: those views give no estimate
(``MIN_FIT``, ``MAX_SPREAD_DEG``).

Model: a uniformly coloured matte surface under one distant light and ambient light shows, per
pixel, ``I = ambient + gain · max(0, n · l)`` (Lambert), with ``n`` the unit normal measured from
the depth and ``l`` the unit direction towards the light. ``fit_light`` finds the ``l`` that
explains the grey values best over a fixed set of directions on the sphere (each one's ambient
and gain by linear least squares, then refined near the best), so that pixels the light does not
reach (attached shadow, ``n · l < 0``) take part too. The fit's share of explained variance says
whether the model holds (``MIN_FIT``); the spread of the directions that fit almost as well says
whether the surface's normals pin the light down (``MAX_SPREAD_DEG``).

ROS-free; numpy and OpenCV. Frames: camera frames, metres.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..camera import PinholeCamera

MIN_FIT = 0.7
"""An estimate counts when the Lambert model explains at least this share of the grey values'
variance over the object. On the bar's captures (seed 0, 100 views) the uniformly coloured
objects reach 0.72–0.97 (the teapot, the bell, the Kong toy); printed ones (the cereal box, the
crayons, the shoe) stay below 0.6, where the print and not the light makes the shading."""
MAX_SPREAD_DEG = 15.0
"""... and when every light direction that fits almost as well (``NEAR_BEST``) lies within this
angle of the best: a box's few flat faces fit a whole arc of directions alike (two views of the
school bus of the photograph-like seed 0 fit 0.77 and 0.71, with spreads of 17° and 20°, and
their lights lie 38° apart at the true poses)."""
NEAR_BEST = 1.15
"""Directions whose mean squared residual is within this factor of the best fit's count as
fitting almost as well."""
MIN_GAIN = 0.15
"""The light's share of the grey scale (0–1) at least: under an overcast sky or a light behind
the object the shading is too faint to measure a direction."""
MIN_PIXELS = 300
"""Pixels with a measured normal at least (a smaller object's shading says too little)."""
MAX_PIXELS = 4000
"""Pixels the fit uses at most (a fixed, seeded sample: the fit's cost grows with them, its
accuracy hardly after a few thousand)."""
SATURATED = 250
"""Pixels whose brightest channel reaches this (of 255) are clipped highlights, not shading."""
NORMAL_SMOOTHING_PX = 2.0
"""The depth is smoothed by this many pixels (within the mask) before normals are taken: a stereo
camera's depth noise would otherwise make the normals noise."""
EDGE_MARGIN_PX = 2
"""Pixels this near the mask's edge or a depth jump have no normal (mixed depths)."""


def _sphere(n: int) -> np.ndarray:
    """``n`` unit directions spread evenly over the sphere (a Fibonacci lattice)."""
    k = np.arange(n) + 0.5
    z = 1.0 - 2.0 * k / n
    r = np.sqrt(1.0 - z * z)
    phi = k * np.pi * (3.0 - np.sqrt(5.0))
    return np.c_[r * np.cos(phi), r * np.sin(phi), z]


DIRECTIONS = _sphere(1500)
"""The light directions the fit tries first (about 5° apart)."""


@dataclass(frozen=True)
class LightEstimate:
    """The light one view saw: ``direction`` a unit vector towards it in the camera frame;
    ``ambient`` and ``gain`` the model's terms (grey values 0–1); ``fit`` the share of the grey
    values' variance the model explains; ``spread_deg`` how far the directions that fit almost as
    well reach from it; ``pixels`` how many pixels the fit used."""

    direction: np.ndarray
    ambient: float
    gain: float
    fit: float
    spread_deg: float
    pixels: int

    def to_dict(self) -> dict:
        return {"direction": [float(x) for x in self.direction], "ambient": self.ambient,
                "gain": self.gain, "fit": self.fit, "spread_deg": self.spread_deg,
                "pixels": self.pixels}


def surface_normals(depth: np.ndarray, mask: np.ndarray, K: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Unit normals (HxWx3, camera frame, facing the camera) of the depth (intrinsics ``K``)
    smoothed within the mask, and where they are valid: inside the mask, on measured depth, away from the mask's edge
    and from depth jumps."""
    z = np.asarray(depth, np.float64)
    valid = (z > 0) & np.asarray(mask, bool)
    if not valid.any():
        return np.zeros(z.shape + (3,)), np.zeros(z.shape, bool)
    weight = cv2.GaussianBlur(valid.astype(np.float64), (0, 0), NORMAL_SMOOTHING_PX)
    summed = cv2.GaussianBlur(np.where(valid, z, 0.0), (0, 0), NORMAL_SMOOTHING_PX)
    zs = np.where(weight > 0.5, summed / np.maximum(weight, 1e-9), 0.0)
    h, w = z.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    K = np.asarray(K, np.float64)
    P = np.stack([(u - K[0, 2]) * zs / K[0, 0], (v - K[1, 2]) * zs / K[1, 1], zs], axis=-1)
    du = np.zeros_like(P)
    dv = np.zeros_like(P)
    du[:, 1:-1] = P[:, 2:] - P[:, :-2]
    dv[1:-1] = P[2:] - P[:-2]
    n = np.cross(du, dv)
    length = np.linalg.norm(n, axis=-1)
    n /= np.maximum(length, 1e-12)[..., None]
    n[np.einsum("hwc,hwc->hw", n, P) > 0] *= -1.0          # face the camera
    jump = np.zeros_like(zs)
    jump[1:-1, 1:-1] = np.maximum(np.abs(zs[1:-1, 2:] - zs[1:-1, :-2]),
                                  np.abs(zs[2:, 1:-1] - zs[:-2, 1:-1]))
    ok = valid & (weight > 0.9) & (length > 0) & (jump < 0.05 * np.maximum(zs, 1e-6))
    size = 2 * EDGE_MARGIN_PX + 1
    ok = cv2.erode(ok.astype(np.uint8), np.ones((size, size), np.uint8)) > 0
    return n, ok


DIRECTION_CHUNK = 250
"""Directions scored at once: pixels × directions floats each time (8 MB), not all 1500 (48 MB
and more for its temporaries)."""


def _best_per_direction(intensity: np.ndarray, normals: np.ndarray, directions: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
    """For each direction: the gain (at least 0) of the least-squares fit of
    ``intensity = ambient + gain · max(0, n · l)`` and that fit's mean squared residual."""
    centred = intensity - intensity.mean()
    gains, residuals = [], []
    for start in range(0, len(directions), DIRECTION_CHUNK):
        lit = np.maximum(normals @ directions[start:start + DIRECTION_CHUNK].T, 0.0)  # pixels x dirs
        covariance = centred @ lit / len(intensity)
        variance = (lit ** 2).mean(axis=0) - lit.mean(axis=0) ** 2
        gain = np.maximum(np.where(variance > 1e-12, covariance / np.maximum(variance, 1e-12), 0.0),
                          0.0)
        gains.append(gain)
        residuals.append((centred ** 2).mean() - 2.0 * gain * covariance + gain ** 2 * variance)
    return np.concatenate(gains), np.concatenate(residuals)


def fit_light(intensity: np.ndarray, normals: np.ndarray) -> tuple[np.ndarray, float, float, float, float]:
    """The Lambert model's light over pixels with grey values ``intensity`` (N, 0–1) and unit
    ``normals`` (Nx3): (direction, ambient, gain, fit, spread_deg) (module docstring)."""
    I = np.asarray(intensity, np.float64)
    n = np.asarray(normals, np.float64)
    gain, residual = _best_per_direction(I, n, DIRECTIONS)
    best = int(np.argmin(residual))
    floor = max(float(residual[best]), 1e-12)
    near = residual <= NEAR_BEST * floor
    spread = float(np.degrees(np.arccos(np.clip(DIRECTIONS[near] @ DIRECTIONS[best], -1.0, 1.0))).max())
    direction = DIRECTIONS[best]
    rng = np.random.default_rng(0)
    for step in (0.05, 0.02, 0.008):                    # finer than the lattice, near its best
        trial = direction + step * rng.normal(size=(150, 3))
        trial = np.vstack([direction, trial / np.linalg.norm(trial, axis=1, keepdims=True)])
        _, r = _best_per_direction(I, n, trial)
        direction = trial[int(np.argmin(r))]
    lit = np.maximum(n @ direction, 0.0)
    g = float(_best_per_direction(I, n, direction[None])[0][0])
    ambient = float(I.mean() - g * lit.mean())
    residual = I - ambient - g * lit
    fit = float(1.0 - residual.var() / max(float(I.var()), 1e-12))
    return direction, ambient, g, fit, spread


def estimate_light(image: np.ndarray, depth: np.ndarray, mask: np.ndarray,
                   camera: PinholeCamera) -> LightEstimate | None:
    """The light this view's object shows (module docstring), or None where its shading measures
    none: too few pixels with a normal, or a fit below ``MIN_FIT``, a spread beyond
    ``MAX_SPREAD_DEG`` or a gain below ``MIN_GAIN``. ``image`` HxWx3 uint8 RGB, ``depth`` HxW
    metres (0 unknown), ``mask`` HxW bool, all on ``camera``'s pixel grid."""
    image = np.asarray(image)
    depth = np.asarray(depth)
    mask = np.asarray(mask, bool)
    if image.ndim != 3 or image.shape[:2] != depth.shape or depth.shape != mask.shape:
        raise ValueError(f"image {image.shape}, depth {depth.shape} and mask {mask.shape} must share "
                         "one HxW grid (image HxWx3)")
    rows, cols = np.nonzero(mask)
    if len(rows) < MIN_PIXELS:
        return None
    # the object's box (with room for the smoothing) is all the normals need
    pad = int(3 * NORMAL_SMOOTHING_PX) + EDGE_MARGIN_PX + 2
    r0, r1 = max(rows.min() - pad, 0), min(rows.max() + pad + 1, mask.shape[0])
    c0, c1 = max(cols.min() - pad, 0), min(cols.max() + pad + 1, mask.shape[1])
    K = np.array(camera.K, np.float64)
    K[0, 2] -= c0
    K[1, 2] -= r0
    normals, ok = surface_normals(depth[r0:r1, c0:c1], mask[r0:r1, c0:c1], K)
    part = image[r0:r1, c0:c1]
    ok &= part.max(axis=-1) < SATURATED
    index = np.flatnonzero(ok.ravel())
    if len(index) < MIN_PIXELS:
        return None
    if len(index) > MAX_PIXELS:
        index = np.sort(np.random.default_rng(0).choice(index, MAX_PIXELS, replace=False))
    grey = part.reshape(-1, 3)[index].astype(np.float64).mean(axis=1) / 255.0
    direction, ambient, gain, fit, spread = fit_light(grey, normals.reshape(-1, 3)[index])
    if fit < MIN_FIT or spread > MAX_SPREAD_DEG or gain < MIN_GAIN:
        return None
    return LightEstimate(direction, ambient, gain, fit, spread, int(len(index)))


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """The angle between two directions, degrees."""
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    c = float(a @ b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12)
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def turn_about_up(to: np.ndarray, frm: np.ndarray) -> float:
    """The turn (degrees, about the object frame's +z) that carries the object-frame direction
    ``frm`` onto ``to`` as nearly as a turn about up can (their azimuths' difference)."""
    return float(np.degrees(np.arctan2(to[1], to[0]) - np.arctan2(frm[1], frm[0])) + 180.0) % 360.0 - 180.0


__all__ = ["LightEstimate", "angle_deg", "estimate_light", "fit_light", "surface_normals",
           "turn_about_up"]
