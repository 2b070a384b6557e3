"""Metric scale. NOCS is scale-free; a depth image fixes the scale by a similarity fit (Umeyama)
between the unit-scale object points and the back-projected depth points, as the NOCS paper does.
Without depth, known metric camera poses (TF, ``Frame.T_world_camera``) fix it by triangulating the
object centre (``scale_from_camera_motion``); without either a configured object-size prior is
used. The result always says which source it came from.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ScaleEstimate:
    scale: float           # metres per unit of the object frame (= bounding-box diagonal)
    source: str            # "depth" | "camera_motion" | "prior"
    uncertainty: float     # relative (std / scale) over views and inliers; nan when unknown
    num_points: int = 0    # depth: inlier points; camera_motion: views
    ok: bool = True        # False: this source could not fix the scale (``message`` says why)
    message: str = ""


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True
            ) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity ``dst ≈ s R src + t`` (Umeyama 1991). Returns (s, R, t)."""
    if len(src) < 3 or src.shape != dst.shape:
        raise ValueError(f"umeyama needs matching Nx3 arrays with N >= 3, got {src.shape}, {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    U, S, Vt = np.linalg.svd(cov)
    E = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        E[2, 2] = -1
    R = U @ E @ Vt
    var_s = (xs ** 2).sum() / len(src)
    s = float(np.trace(np.diag(S) @ E) / var_s) if with_scale else 1.0
    t = mu_d - s * R @ mu_s
    return s, R, t


def robust_umeyama(src: np.ndarray, dst: np.ndarray, iterations: int = 5,
                   inlier_sigmas: float = 3.0) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Umeyama with iterative trimming of outliers (depth holes, mixed pixels at edges).

    Returns (s, R, t, inlier mask)."""
    keep = np.ones(len(src), bool)
    for _ in range(iterations):
        s, R, t = umeyama(src[keep], dst[keep])
        res = np.linalg.norm(dst - (s * src @ R.T + t), axis=1)
        med = np.median(res[keep])
        mad = 1.4826 * np.median(np.abs(res[keep] - med)) + 1e-9
        new_keep = res < med + inlier_sigmas * mad
        if new_keep.sum() < 3 or np.array_equal(new_keep, keep):
            break
        keep = new_keep
    s, R, t = umeyama(src[keep], dst[keep])
    return s, R, t, keep


def scale_from_depth(unit_points: list[np.ndarray], depth_points: list[np.ndarray],
                     min_points: int = 30) -> ScaleEstimate | None:
    """Scale from per-view correspondences (unit-scale object points ↔ camera-frame depth points).

    Each view gives one robust similarity fit; the median over views is the estimate and the
    spread across views its uncertainty. None when no view has enough valid depth.
    """
    scales, counts = [], 0
    for src, dst in zip(unit_points, depth_points):
        if len(src) < min_points:
            continue
        s, _, _, keep = robust_umeyama(src, dst)
        if np.isfinite(s) and s > 0:
            scales.append(s)
            counts += int(keep.sum())
    if not scales:
        return None
    scale = float(np.median(scales))
    unc = float(np.std(scales) / scale) if len(scales) > 1 else float("nan")
    return ScaleEstimate(scale=scale, source="depth", uncertainty=unc, num_points=counts)


MIN_BASELINE_RATIO = 0.05
"""Camera motion: below this baseline (largest distance between the camera centres, as a fraction
of the mean camera–object distance) the scale is not observable enough to use."""

MAX_MOTION_UNCERTAINTY = 0.2
"""Camera motion: a relative standard deviation above this is not used."""


def scale_from_camera_motion(T_camera_unit: list[np.ndarray | None],
                             T_world_camera: list[np.ndarray | None],
                             min_baseline_ratio: float = MIN_BASELINE_RATIO,
                             max_uncertainty: float = MAX_MOTION_UNCERTAINTY
                             ) -> ScaleEstimate | None:
    """Scale from known metric camera poses (TF) and unit-scale object poses (PnP), no depth.

    View i's PnP pose puts the object centre (the object frame's origin) at ``s t_i`` in camera i,
    with ``t_i`` the translation of ``T_camera_unit[i]`` and ``s`` the unknown scale (metres per
    unit). With the camera's metric pose ``(R_i, o_i) = T_world_camera[i]`` every view says
    ``c = o_i + s R_i t_i`` for the centre ``c`` in the world: a ray from the camera centre (the
    direction of ``t_i``) and a distance along it (``s |t_i|``). The 3 equations per view are
    solved for ``(c, s)`` by linear least squares (a triangulation with the scale unknown); the
    uncertainty is the relative standard deviation of ``s`` from the residuals
    (``sqrt(sigma^2 (A^T A)^-1_ss) / s``, 0 for exact data). Only the centre is used, so a
    rotation that PnP got wrong (a symmetric object) does not matter, and frames of different
    views may differ by any rotation about the centre. The world frame is any rigid frame the
    camera poses share (TF's fixed frame).

    Returns None when fewer than two views have both poses. Returns ``ok=False`` (with
    ``message``, and the least-squares ``scale`` when there is one) when the cameras barely moved
    (baseline under ``min_baseline_ratio`` of the camera–object distance: the scale is not
    observable), the solution is not positive, or its uncertainty exceeds ``max_uncertainty``;
    the caller then falls back to a prior and should say why.
    """
    if len(T_camera_unit) != len(T_world_camera):
        raise ValueError(f"T_camera_unit has {len(T_camera_unit)} poses but T_world_camera has "
                         f"{len(T_world_camera)}")
    origins, directions = [], []
    for i, (Tu, Tw) in enumerate(zip(T_camera_unit, T_world_camera)):
        if Tu is None or Tw is None:
            continue
        Tu, Tw = np.asarray(Tu, float), np.asarray(Tw, float)
        if Tu.shape != (4, 4) or Tw.shape != (4, 4):
            raise ValueError(f"view {i}: poses must be 4x4, got {Tu.shape} and {Tw.shape}")
        if not (np.all(np.isfinite(Tu)) and np.all(np.isfinite(Tw))):
            continue
        origins.append(Tw[:3, 3])
        directions.append(Tw[:3, :3] @ Tu[:3, 3])        # s * this = centre - camera, world axes
    m = len(origins)
    if m < 2:
        return None
    o, d = np.asarray(origins), np.asarray(directions)
    A = np.zeros((3 * m, 4))
    A[:, :3] = np.tile(np.eye(3), (m, 1))
    A[:, 3] = -d.reshape(-1)
    b = o.reshape(-1)
    x, _, rank, _ = np.linalg.lstsq(A, b, rcond=None)
    if rank < 4:
        return ScaleEstimate(scale=float("nan"), source="camera_motion", uncertainty=float("nan"),
                             num_points=m, ok=False, message="camera motion: the object centre "
                             "has the same offset from every camera (the scale is unobservable)")
    scale = float(x[3])
    baseline = float(max(np.linalg.norm(o[i] - o[j]) for i in range(m) for j in range(i + 1, m)))
    distance = float(np.mean(np.linalg.norm(d, axis=1))) * abs(scale)
    if not np.isfinite(scale) or scale <= 0:
        return ScaleEstimate(scale=float("nan"), source="camera_motion", uncertainty=float("nan"),
                             num_points=m, ok=False,
                             message=f"camera motion: least-squares scale {scale:.4g} is not "
                                     "positive (camera poses and object poses disagree)")
    if distance <= 0 or baseline < min_baseline_ratio * distance:
        return ScaleEstimate(scale=scale, source="camera_motion", uncertainty=float("nan"),
                             num_points=m, ok=False,
                             message=f"camera motion: baseline {baseline:.3g} m is "
                                     f"{100 * baseline / max(distance, 1e-12):.1f} % of the "
                                     f"object distance (< {100 * min_baseline_ratio:.0f} %)")
    dof = 3 * m - 4
    residual = A @ x - b
    sigma2 = float(residual @ residual) / dof
    cov_ss = float(np.linalg.inv(A.T @ A)[3, 3]) * sigma2
    uncertainty = float(np.sqrt(max(cov_ss, 0.0))) / scale
    if uncertainty > max_uncertainty:
        return ScaleEstimate(scale=scale, source="camera_motion", uncertainty=uncertainty,
                             num_points=m, ok=False,
                             message=f"camera motion: scale uncertainty {100 * uncertainty:.0f} % "
                                     f"(> {100 * max_uncertainty:.0f} %)")
    return ScaleEstimate(scale=scale, source="camera_motion", uncertainty=uncertainty,
                         num_points=m)
