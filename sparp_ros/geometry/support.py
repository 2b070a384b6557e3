"""The support plane under the object, measured in each RGB-D view: the object's up axis, measured.

Why: without TF nothing else says where up is; the model infers it from the image (the view-angle
network's elevation and roll), and on photograph-like renders its per-view tilt is off by 8°
(median; more than 10° in 23 of 62 views, up to 50°: the log lines of `sparp-ros eval
benchmarks/out/eval25rn/captures --backend model`, README). A robot's object stands on a table,
and the table is in the depth image around the object: its normal is the object's up axis,
measured to a fraction of a degree. With up measured in every view, the model only has to
supply the heading about it (DESIGN §2: measure where you can, infer where you must).

Per view (``support_plane``): the depth outside the object's (dilated) mask and near the object,
a RANSAC plane (seeded, numpy) refitted to its inliers by least squares, oriented
towards the camera. It counts as the object's support only when enough of it is seen, and the
object's measured points stand on it: almost none below it, the lowest ones on it. A floating
object (depth only on the object), a wall behind it or a tilted tray it is not resting on give
None, and the model's up is kept.

``level_pose`` turns a pose about the object's centre by the smallest rotation that puts the
object's z axis on the plane's normal: the heading the model chose is kept.

ROS-free; numpy and OpenCV. Planes are in the camera frame: n·p + d = 0, n unit and
pointing to the camera's side (up), metres.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..camera import PinholeCamera
from ..conventions import rotation_between

MASK_MARGIN_PX = 5
"""Pixels this near the object's mask are left out of the plane (its rim's mixed depths)."""
NEAR_OBJECT = 2.0
"""Only depth within this many object sizes of the object's centre is searched: the support is
where the object stands, not a wall or the floor far behind it."""
MIN_PLANE_POINTS = 800
"""A plane with fewer inliers is not measured well enough to set up (a few hundred points at the
stereo noise of 1 m still give the normal to about a degree; fewer are often a patch of a
distractor's side)."""
MIN_INLIER_SHARE = 0.5
"""... nor one that holds less than this share of the depth near the object (then the largest
plane is one surface among many, not the table)."""
PLANE_SIGMAS = 3.0
"""RANSAC's inlier distance: this many standard deviations of the view's depth noise, at least
``MIN_PLANE_DISTANCE_M``."""
MIN_PLANE_DISTANCE_M = 0.004
BELOW_SHARE = 0.05
"""The object stands on the plane when at most this share of its points lie below it (beyond the
inlier distance) ..."""
TOUCH = 0.25
"""... and its lowest points (5th percentile of their heights) are within this share of the
object's size of it (a view from above sees the base's rim, not its contact line)."""
RANSAC_ITERATIONS = 300
SAMPLE_POINTS = 20000


@dataclass(frozen=True)
class SupportPlane:
    """A plane in one camera's frame: ``normal``·p + ``offset`` = 0, ``normal`` up (towards the
    camera's side)."""

    normal: np.ndarray
    offset: float

    def height(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points, float) @ self.normal + self.offset


def _back_project(depth: np.ndarray, camera: PinholeCamera, select: np.ndarray) -> np.ndarray:
    """The selected pixels' depth as camera-frame points (the camera's own rays: distortion
    removed)."""
    rows, cols = np.nonzero(select)
    rays = camera.normalized_rays(np.column_stack([cols, rows]).astype(np.float64))
    return rays * depth[rows, cols, None].astype(np.float64)


def fit_plane(points: np.ndarray, side: np.ndarray) -> tuple[np.ndarray, float]:
    """The least-squares plane through ``points`` as (unit normal, offset), the normal on the
    side of ``side``."""
    c = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - c, full_matrices=False)
    n = vt[2] if vt[2] @ side >= 0 else -vt[2]
    return n, float(-n @ c)


def support_plane(depth: np.ndarray, mask: np.ndarray, camera: PinholeCamera,
                  noise_m: float = 0.0, seed: int = 0) -> SupportPlane | None:
    """The plane the object in ``mask`` stands on, measured from ``depth`` (metres, 0 unknown)
    around it, or None when the view shows none (module docstring). ``noise_m``: the depth's
    noise (one standard deviation), which widens the inlier distance."""
    depth = np.asarray(depth)
    mask = np.asarray(mask, bool)
    if depth.shape != mask.shape:
        raise ValueError(f"depth {depth.shape} and mask {mask.shape} differ in size")
    known = np.isfinite(depth) & (depth > 0)
    on_object = known & mask
    kernel = np.ones((2 * MASK_MARGIN_PX + 1,) * 2, np.uint8)
    around = known & ~(cv2.dilate(mask.astype(np.uint8), kernel) > 0)
    # depth on the object only (a masked depth image, a render without a scene): nothing to fit
    if on_object.sum() < 50 or around.sum() < MIN_PLANE_POINTS:
        return None
    obj = _back_project(depth, camera, on_object)
    centre = np.median(obj, axis=0)
    size = float(np.linalg.norm(np.percentile(obj, 95, axis=0) - np.percentile(obj, 5, axis=0)))
    pts = _back_project(depth, camera, around)
    pts = pts[np.linalg.norm(pts - centre, axis=1) < NEAR_OBJECT * max(size, 0.02)]
    if len(pts) < MIN_PLANE_POINTS:
        return None
    distance = max(MIN_PLANE_DISTANCE_M, PLANE_SIGMAS * noise_m)
    found = ransac_plane(pts[:: max(1, len(pts) // SAMPLE_POINTS)], distance,
                          np.random.default_rng(seed))
    if found is None:
        return None
    n, d = found
    inliers = np.abs(pts @ n + d) < distance
    if inliers.sum() < 3:
        return None
    # least squares on every inlier: RANSAC's three points set the normal to a few degrees only
    n, d = fit_plane(pts[inliers], n)
    if d < 0:                                  # the camera (the origin) on the positive side
        n, d = -n, -d
    inliers = np.abs(pts @ n + d) < distance
    if inliers.sum() < MIN_PLANE_POINTS or inliers.mean() < MIN_INLIER_SHARE:
        return None
    heights = obj @ n + d
    if (heights < -distance).mean() > BELOW_SHARE or np.percentile(heights, 5) > TOUCH * size:
        return None
    return SupportPlane(n, d)


def ransac_plane(points: np.ndarray, distance: float, rng: np.random.Generator,
                 iterations: int = RANSAC_ITERATIONS) -> tuple[np.ndarray, float] | None:
    """The plane through three of ``points`` that most of them lie within ``distance`` of
    (``iterations`` tries), as (unit normal, offset); None for fewer than three points or only
    degenerate triples. Our own few lines rather than open3d's ``segment_plane``: that one draws
    from open3d's process-wide random state, which seeding here would reset for every later
    open3d call (registration's too)."""
    if len(points) < 3:
        return None
    picks = rng.integers(0, len(points), size=(iterations, 3))
    a, b, c = points[picks[:, 0]], points[picks[:, 1]], points[picks[:, 2]]
    normals = np.cross(b - a, c - a)
    length = np.linalg.norm(normals, axis=1)
    ok = length > 1e-12
    if not ok.any():
        return None
    normals = normals[ok] / length[ok, None]
    offsets = -np.einsum("ij,ij->i", normals, a[ok])
    counts = np.concatenate([                     # in blocks: at most ~2 M distances at once
        (np.abs(points @ normals[k:k + block].T + offsets[k:k + block]) < distance).sum(axis=0)
        for block in [max(1, 2_000_000 // len(points))] for k in range(0, len(normals), block)])
    best = int(np.argmax(counts))                 # the first of the most supported, as before
    return normals[best], float(offsets[best])


def level_pose(T_camera_object: np.ndarray, up_in_camera: np.ndarray) -> np.ndarray:
    """``T_camera_object`` turned about the object's origin by the smallest rotation that puts
    its z axis on ``up_in_camera``: the tilt becomes the measured one, the heading about up stays
    the pose's own."""
    T = np.asarray(T_camera_object, float).copy()
    T[:3, :3] = rotation_between(T[:3, 2], up_in_camera) @ T[:3, :3]
    return T


def tilt_deg(T_camera_object: np.ndarray, up_in_camera: np.ndarray) -> float:
    """The angle between the pose's z axis and ``up_in_camera`` (degrees)."""
    z = np.asarray(T_camera_object, float)[:3, 2]
    up = np.asarray(up_in_camera, float)
    return float(np.degrees(np.arccos(np.clip(z @ up / np.linalg.norm(up), -1.0, 1.0))))


__all__ = ["SupportPlane", "support_plane", "fit_plane", "level_pose",
           "tilt_deg"]
