"""Pose from NOCS: every foreground NOCS pixel is a 2D–3D correspondence (pixel ↔ canonical point).

PnP runs on the unit-scale object frame (``conventions.nocs_to_object(nocs)``, diagonal = 1), so the
translation it returns is in units of the object's diagonal; the metric scale is applied later
(``geometry.scale``). Projection is scale-free, so rotation and the translation *direction* are
already right here.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..camera import PinholeCamera
from ..conventions import nocs_to_object

MIN_CORRESPONDENCES = 12


@dataclass
class PnPResult:
    """``T_camera_unit`` maps unit-scale object points into the camera; None when PnP failed."""

    T_camera_unit: np.ndarray | None
    ok: bool
    inlier_ratio: float
    num_correspondences: int
    reprojection_error_px: float
    inlier_mask: np.ndarray | None = None   # over the (subsampled) correspondences
    message: str = ""


def correspondences(nocs: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Nx2 pixel centres, Nx3 unit-scale object points) of the foreground NOCS pixels."""
    v, u = np.nonzero(mask)
    return np.stack([u, v], axis=1).astype(np.float64), nocs_to_object(nocs[v, u].astype(np.float64))


def solve_pnp_nocs(nocs: np.ndarray, mask: np.ndarray, camera: PinholeCamera,
                   reprojection_threshold_px: float = 2.0, max_points: int = 4000,
                   iterations: int = 200, seed: int = 0, min_inlier_ratio: float = 0.2) -> PnPResult:
    """PnP + RANSAC on one view's NOCS map with this view's intrinsics (and distortion).

    A pose supported by fewer than ``min_inlier_ratio`` of the correspondences is reported as a
    failure (noise-like NOCS gives *some* RANSAC pose; it must not pass as an answer)."""
    if nocs.shape[:2] != (camera.height, camera.width):
        raise ValueError(f"NOCS map is {nocs.shape[1]}x{nocs.shape[0]}, camera is "
                         f"{camera.width}x{camera.height}")
    uv, X = correspondences(nocs, mask)
    n = len(uv)
    if n < MIN_CORRESPONDENCES:
        return PnPResult(None, False, 0.0, n, float("nan"),
                         message=f"only {n} NOCS pixels (< {MIN_CORRESPONDENCES})")
    if n > max_points:
        idx = np.random.default_rng(seed).choice(n, max_points, replace=False)
        uv, X = uv[idx], X[idx]
    D = camera.D if camera.has_distortion and camera.distortion_model != "equidistant" else None
    if camera.distortion_model == "equidistant" and camera.has_distortion:
        # PnP in OpenCV has no fisheye model: undistort the pixels, then solve on an ideal camera.
        uv = camera.normalized_rays(uv)[:, :2] @ camera.K[:2, :2].T + camera.K[:2, 2]
    cv2.setRNGSeed(seed)
    ok, rvec, tvec, inliers = cv2.solvePnPRansac(
        X, uv, camera.K, D, iterationsCount=iterations,
        reprojectionError=reprojection_threshold_px, confidence=0.999, flags=cv2.SOLVEPNP_EPNP)
    if not ok or inliers is None or len(inliers) < MIN_CORRESPONDENCES:
        return PnPResult(None, False, 0.0, len(uv), float("nan"),
                         message="PnP RANSAC found no consistent pose")
    inl = inliers.reshape(-1)
    rvec, tvec = cv2.solvePnPRefineLM(X[inl], uv[inl], camera.K, D, rvec, tvec)
    # Re-score all points with the refined pose.
    proj, _ = cv2.projectPoints(X, rvec, tvec, camera.K, D)
    err = np.linalg.norm(proj.reshape(-1, 2) - uv, axis=1)
    inlier_mask = err < reprojection_threshold_px
    if inlier_mask.mean() < min_inlier_ratio:
        return PnPResult(None, False, float(inlier_mask.mean()), len(uv), float("nan"),
                         message=f"only {100 * inlier_mask.mean():.0f} % of NOCS pixels agree with "
                                 f"the best pose (< {100 * min_inlier_ratio:.0f} %)")
    R, _ = cv2.Rodrigues(rvec)
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, tvec.reshape(3)
    if T[2, 3] <= 0:
        return PnPResult(None, False, 0.0, len(uv), float("nan"),
                         message="PnP put the object behind the camera")
    return PnPResult(T, True, float(inlier_mask.mean()), len(uv),
                     float(np.median(err[inlier_mask])) if inlier_mask.any() else float("nan"),
                     inlier_mask=inlier_mask)
