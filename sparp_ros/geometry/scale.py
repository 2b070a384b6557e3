"""Metric scale. NOCS is scale-free; a depth image fixes the scale by a similarity fit (Umeyama)
between the unit-scale object points and the back-projected depth points, as the NOCS paper does.
Without depth a configured object-size prior is used (TF camera motion is later work), and the
result always says which source it came from.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ScaleEstimate:
    scale: float           # metres per unit of the object frame (= bounding-box diagonal)
    source: str            # "depth" | "prior"
    uncertainty: float     # relative (std / scale) over views and inliers; nan when unknown
    num_points: int = 0


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
