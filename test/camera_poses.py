"""A camera on a sphere looking at a point: the pose the ray-cast geometry tests put their cameras
at (one definition for test_support, test_table, test_lighting and test_features), and the
poses and errors those tests share."""
from __future__ import annotations

import numpy as np


def camera_on_sphere(azimuth_deg: float, elevation_deg: float, target: np.ndarray,
                     distance: float) -> np.ndarray:
    """T_world_camera (OpenCV axes: z forward, y down) of a camera ``distance`` from ``target``
    at the given azimuth and elevation (z up), looking at it."""
    a, e = np.radians(azimuth_deg), np.radians(elevation_deg)
    target = np.asarray(target, float)
    eye = target + distance * np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)])
    z = (target - eye) / np.linalg.norm(target - eye)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    T = np.eye(4)
    T[:3, :3] = np.column_stack([x, np.cross(z, x), z])
    T[:3, 3] = eye
    return T


def turned_about_up(T_camera_object: np.ndarray, degrees: float) -> np.ndarray:
    """The view's pose with the object turned about its up (z) axis: what a model's wrong azimuth
    gives."""
    turn = np.eye(4)
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    turn[:2, :2] = [[c, -s], [s, c]]
    return T_camera_object @ turn


def rotation_error_deg(T: np.ndarray, U: np.ndarray) -> float:
    """The angle between two poses' rotations (degrees)."""
    R = T[:3, :3] @ U[:3, :3].T
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0))))
