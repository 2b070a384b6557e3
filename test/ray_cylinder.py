"""Rays through a camera's pixels and where they meet an upright cylinder's side: the ray casting
the geometry tests' scenes share (test_table, test_lighting)."""
from __future__ import annotations

import numpy as np


def pixel_rays(K: np.ndarray, width: int, height: int, T_world_camera: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """(origin, directions): the camera centre in the world and, per pixel, the world direction
    of its ray scaled so that the camera's z grows by 1 along it (so the distance t along it is
    the pixel's depth)."""
    rows, cols = np.mgrid[0:height, 0:width]
    d = np.stack([(cols - K[0, 2]) / K[0, 0], (rows - K[1, 2]) / K[1, 1], np.ones(rows.shape)], -1)
    return T_world_camera[:3, 3], d @ T_world_camera[:3, :3].T


def cylinder_side(origin: np.ndarray, d: np.ndarray, radius: float, height: float) -> np.ndarray:
    """Per ray, the distance t to the side of the cylinder of ``radius`` about the world's z axis
    between z = 0 and ``height`` (its near side; inf where the ray misses it)."""
    o = origin
    with np.errstate(divide="ignore", invalid="ignore"):
        a = d[..., 0] ** 2 + d[..., 1] ** 2
        b = 2 * (o[0] * d[..., 0] + o[1] * d[..., 1])
        disc = b * b - 4 * a * (o[0] ** 2 + o[1] ** 2 - radius ** 2)
        t = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
        z = o[2] + t * d[..., 2]
        return np.where((disc > 0) & (t > 0) & (z >= 0) & (z <= height), t, np.inf)
