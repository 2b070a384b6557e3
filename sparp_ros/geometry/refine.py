"""Pose refinement: align each view's depth with the reconstruction (robust point-to-plane ICP).

After the scale stage every posed view has a metric ``T_camera_object`` from PnP on its NOCS map.
With an aligned depth image the view's observed surface (depth pixels inside the mask,
back-projected into the camera frame) must lie on the object's surface, so a rigid alignment of
those points with the reconstruction corrects the pose:

1. **Surface pass**: each view's depth points against the fused canonical points of every view
   (NOCS → object frame, metres: the points the mesh is built from), so the object frame stays
   the one the NOCS maps define. ICP starts from the input pose and from the input pose
   re-centred (translation moved so the view's depth centroid meets the centroid of its own
   canonical points: depth says where the visible surface is even when PnP on noisy NOCS
   misjudged the distance); the better fit is kept.
2. **Joint passes** (``joint_passes``, optional): each view in turn against the *other* views'
   depth points, placed in the object frame by their current poses (multi-view registration).

ICP: point-to-plane Gauss–Newton on ``T_object_camera`` (depth points → surface). Matches
are nearest neighbours within ``max_correspondence`` (a fraction of the object size) whose normals
agree within ``max_normal_angle_deg`` (normals face the camera that saw the point, so the front
and back of a thin object are never matched); residuals get Tukey weights with a scale from their
MAD. Directions the surface hardly constrains (a surface of revolution turning about its axis, a
plane sliding in itself: eigenvalues of the normal equations under ``min_eigen_ratio`` of the
largest) are not moved, so there the NOCS pose stands instead of drifting with noise. Points are
divided by the object size inside, so every tolerance is size-free.

Guard: a refined pose replaces the input pose only when it explains the depth clearly better —
the mean squared distance to the surface truncated at ``score_radius`` (an unmatched point costs
``score_radius``²) drops by at least ``min_improvement`` (relative) — and its change from the
input pose stays within ``max_rotation_deg`` and ``max_translation``. Otherwise the input (PnP)
pose is kept and the result says why. A view without depth, without a pose or with too few depth
points is returned unchanged with that reason. Silhouette/NOCS alignment for views without depth
is not implemented.

Conventions (``conventions``): OpenCV camera frame, metres; ``T_camera_object`` maps object-frame
points into the camera. numpy/scipy only, no ROS.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from ..conventions import invert_rigid, rotation_angle_deg

TUKEY_C = 4.685
"""Tukey biweight constant (95 % efficiency under Gaussian residuals), in robust sigmas."""

MAD_TO_SIGMA = 1.4826
"""Median absolute deviation → standard deviation under Gaussian residuals."""

MIN_TUKEY_SCALE = 1e-3
"""Floor of the Tukey cut-off, fraction of the object size (noise-free depth gives MAD ≈ 0)."""

MAX_SURFACE_POINTS = 12000
"""Fused surface points kept (random subsample): plenty for point-to-plane ICP, and the normals
and nearest-neighbour searches stay cheap."""

CONVERGED = 1e-6
"""ICP stops when a step moves less than this (rotation rad + translation, units of the size)."""


class RefineError(ValueError):
    """Malformed input to the refinement (shapes, lengths, non-positive size)."""


@dataclass(frozen=True)
class RefineParams:
    iterations: int = 30                 # Gauss–Newton steps per alignment
    max_correspondence: float = 0.05     # gate, fraction of the object size (bbox diagonal)
    max_rotation_deg: float = 10.0       # refined pose further than this from the input: refused
    max_translation: float = 0.2         # ditto (object origin in the camera), fraction of size
    min_improvement: float = 0.05        # relative drop of the truncated cost needed to apply
    joint_passes: int = 0                # passes against the other views' depth (0 = off)
    max_points: int = 2000               # depth points per view (random subsample)
    min_points: int = 50                 # fewer valid depth points: the view is not refined
    normal_neighbours: int = 12          # k of the PCA normals
    max_normal_angle_deg: float = 60.0   # matched points' normals must agree this well
    min_eigen_ratio: float = 0.01        # weaker directions of the fit are not moved (symmetry)
    score_radius: float = 0.015          # the guard's cost truncates distances here (× size)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("iterations", "max_points", "min_points", "normal_neighbours"):
            if getattr(self, name) < 1:
                raise RefineError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_correspondence", "max_rotation_deg", "max_translation", "score_radius"):
            if not getattr(self, name) > 0:
                raise RefineError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.joint_passes < 0:
            raise RefineError(f"joint_passes must be >= 0, got {self.joint_passes}")
        if not 0 <= self.min_improvement < 1:
            raise RefineError(f"min_improvement must be in [0, 1), got {self.min_improvement}")
        if not 0 < self.max_normal_angle_deg <= 180:
            raise RefineError(f"max_normal_angle_deg must be in (0, 180], got "
                              f"{self.max_normal_angle_deg}")


@dataclass
class Fit:
    """How well depth points fit a surface under one pose (gate = ``max_correspondence``)."""

    fitness: float = math.nan    # fraction of the depth points with a matching surface point
    rmse_m: float = math.nan     # RMS distance of the matched points, metres
    cost: float = math.nan       # mean of min(distance, radius)², units of the object size²


@dataclass
class ViewRefinement:
    """One view's refinement. ``T_camera_object`` is the pose to use: the refined one when
    ``applied``, else the input pose (None when there was none); ``message`` says why not."""

    T_camera_object: np.ndarray | None
    applied: bool
    rotation_change_deg: float = 0.0         # final pose vs input pose
    translation_change_m: float = 0.0        # (the object's origin in the camera)
    before: Fit = field(default_factory=Fit)  # input pose against the fused surface
    after: Fit = field(default_factory=Fit)   # final pose against the fused surface
    num_points: int = 0
    passes: list[dict] = field(default_factory=list)   # one record per ICP pass
    message: str = ""

    def to_dict(self) -> dict:
        """JSON-friendly summary (no matrices; None for values that do not exist)."""
        return _json_safe({
            "applied": self.applied, "rotation_change_deg": self.rotation_change_deg,
            "translation_change_m": self.translation_change_m,
            "fitness_before": self.before.fitness, "fitness_after": self.after.fitness,
            "rmse_before_m": self.before.rmse_m, "rmse_after_m": self.after.rmse_m,
            "num_points": self.num_points, "passes": self.passes, "message": self.message})


def _json_safe(x):
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


# -- point clouds -------------------------------------------------------------------------------
def estimate_normals(points: np.ndarray, viewpoints: np.ndarray, k: int = 12) -> np.ndarray:
    """Unit PCA normals of Nx3 points (k nearest neighbours), each turned to face its viewpoint
    (``viewpoints``: one 3-vector for all points, or Nx3)."""
    points = np.asarray(points, float)
    n = len(points)
    if n < 3:
        return np.tile([0.0, 0.0, 1.0], (n, 1))
    k = min(k, n)
    _, idx = cKDTree(points).query(points, k=k)
    nb = points[idx] - points[idx].mean(axis=1, keepdims=True)
    cov = np.einsum("nki,nkj->nij", nb, nb)
    _, vecs = np.linalg.eigh(cov)
    normals = vecs[:, :, 0]                                   # smallest eigenvalue
    to_view = np.broadcast_to(np.asarray(viewpoints, float), points.shape) - points
    flip = np.einsum("ij,ij->i", normals, to_view) < 0
    normals[flip] *= -1
    return normals


class Surface:
    """ICP target: Nx3 points with unit normals (units of the object size) and their k-d tree."""

    def __init__(self, points: np.ndarray, normals: np.ndarray):
        self.points, self.normals = points, normals
        self.tree = cKDTree(points)


def _match(surface: Surface, P: np.ndarray, N: np.ndarray, gate: float, cos_max: float):
    """Nearest surface point of every P within ``gate`` whose normal agrees with N."""
    dist, j = surface.tree.query(P, distance_upper_bound=gate)
    ok = np.isfinite(dist)
    j = np.where(ok, j, 0)
    ok &= np.einsum("ij,ij->i", N, surface.normals[j]) >= cos_max
    return ok, j, dist


def _apply(T: np.ndarray, P: np.ndarray, N: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return P @ T[:3, :3].T + T[:3, 3], N @ T[:3, :3].T


def _fit(surface: Surface, P: np.ndarray, N: np.ndarray, T: np.ndarray, gate: float,
         cos_max: float, size: float, radius: float) -> Fit:
    """Fitness and RMSE within the gate; the cost truncates at ``radius`` (an unmatched point
    costs radius²), so a few more points caught at the gate do not outweigh a worse fit."""
    Pt, Nt = _apply(T, P, N)
    ok, _, dist = _match(surface, Pt, Nt, gate, cos_max)
    d = np.where(ok, np.minimum(dist, radius), radius)
    return Fit(fitness=float(ok.mean()),
               rmse_m=float(np.sqrt(np.mean(dist[ok] ** 2)) * size) if ok.any() else math.nan,
               cost=float(np.mean(d ** 2)))


def icp_point_to_plane(P: np.ndarray, N: np.ndarray, surface: Surface, T_init: np.ndarray,
                       gate: float, iterations: int, cos_max: float,
                       min_eigen_ratio: float = 0.0) -> np.ndarray:
    """``T_target_source`` aligning source points P (normals N) with the surface, from T_init
    (all in units of the object size). Tukey-weighted point-to-plane Gauss–Newton about the
    points' centroid. Directions the surface barely constrains (eigenvalues of the normal
    equations under ``min_eigen_ratio`` of the largest: a surface of revolution turning about its
    axis, a plane sliding in itself) are not moved, so they keep the input pose."""
    T = T_init.copy()
    for _ in range(iterations):
        Pt, Nt = _apply(T, P, N)
        ok, j, _ = _match(surface, Pt, Nt, gate, cos_max)
        if ok.sum() < 6:
            break
        p, q, n = Pt[ok], surface.points[j[ok]], surface.normals[j[ok]]
        r = np.einsum("ij,ij->i", p - q, n)
        c = max(TUKEY_C * MAD_TO_SIGMA * float(np.median(np.abs(r))), MIN_TUKEY_SCALE)
        c = min(c, gate)
        w = np.where(np.abs(r) < c, (1 - (r / c) ** 2) ** 2, 0.0)
        if w.sum() <= 0:
            break
        center = np.average(p, axis=0, weights=w)
        arm = math.sqrt(float(np.average(np.sum((p - center) ** 2, axis=1), weights=w))) + 1e-12
        # rotation as the displacement it causes at the points' RMS radius, so that rotation
        # and translation eigenvalues compare on one scale
        J = np.column_stack([np.cross(p - center, n) / arm, n])
        H = J.T @ (J * w[:, None])
        g = J.T @ (w * r)
        vals, vecs = np.linalg.eigh(H)
        keep = vals > max(min_eigen_ratio * vals[-1], 1e-12)
        dx = -vecs[:, keep] @ ((vecs[:, keep].T @ g) / vals[keep])
        dx[:3] /= arm
        R = Rotation.from_rotvec(dx[:3]).as_matrix()
        step = np.eye(4)
        step[:3, :3] = R
        step[:3, 3] = center + dx[3:] - R @ center
        T = step @ T
        if np.linalg.norm(dx) < CONVERGED:
            break
    return T


# -- per-view refinement ------------------------------------------------------------------------
def _change(T_a: np.ndarray, T_b: np.ndarray) -> tuple[float, float]:
    """(rotation °, translation m) between two metric T_camera_object: the angle between the
    rotations and how far the object's origin moved in the camera."""
    return (rotation_angle_deg(T_a[:3, :3] @ T_b[:3, :3].T),
            float(np.linalg.norm(T_a[:3, 3] - T_b[:3, 3])))


def _to_size(T_camera_object: np.ndarray, size: float) -> np.ndarray:
    """Metric T_camera_object → T_object_camera with translation in units of the size."""
    T = invert_rigid(T_camera_object)
    T[:3, 3] /= size
    return T


def _from_size(T_object_camera: np.ndarray, size: float) -> np.ndarray:
    T = T_object_camera.copy()
    T[:3, 3] *= size
    return invert_rigid(T)


def _align_pass(P: np.ndarray, N: np.ndarray, surface: Surface, T_current: np.ndarray,
                starts: dict[str, np.ndarray], T_input: np.ndarray, size: float,
                params: RefineParams, name: str) -> tuple[np.ndarray, dict]:
    """One guarded alignment: ICP from every start (metric T_camera_object), the best fit wins;
    returns the new pose (or ``T_current`` when refused) and a record of the pass."""
    gate = params.max_correspondence
    cos_max = math.cos(math.radians(params.max_normal_angle_deg))
    radius = params.score_radius
    before = _fit(surface, P, N, _to_size(T_current, size), gate, cos_max, size, radius)
    best = None
    for label, T_start in starts.items():
        T1 = icp_point_to_plane(P, N, surface, _to_size(T_start, size), gate, params.iterations,
                                cos_max, params.min_eigen_ratio)
        if not np.all(np.isfinite(T1)):
            continue
        fit = _fit(surface, P, N, T1, gate, cos_max, size, radius)
        if best is None or fit.cost < best[1].cost:
            best = (label, fit, _from_size(T1, size))
    record = {"pass": name, "applied": False, "fitness_before": before.fitness,
              "rmse_before_m": before.rmse_m}
    if best is None:
        record["reason"] = "ICP diverged"
        return T_current, record
    label, after, T_new = best
    rot, trans = _change(T_new, T_input)
    record.update({"start": label, "fitness_after": after.fitness, "rmse_after_m": after.rmse_m,
                   "rotation_change_deg": rot, "translation_change_m": trans})
    if rot > params.max_rotation_deg:
        record["reason"] = f"rotation change {rot:.1f}° > {params.max_rotation_deg:g}°"
    elif trans > params.max_translation * size:
        record["reason"] = (f"translation change {1000 * trans:.1f} mm > "
                            f"{1000 * params.max_translation * size:.1f} mm")
    elif not after.cost < (1 - params.min_improvement) * before.cost:
        record["reason"] = (f"fit not clearly better (fitness {before.fitness:.2f} → "
                            f"{after.fitness:.2f}, cost {before.cost:.3g} → {after.cost:.3g})")
    else:
        record["applied"] = True
        return T_new, record
    return T_current, record


def _recentred(T_camera_object: np.ndarray, depth_points: np.ndarray,
               own_points: np.ndarray | None) -> np.ndarray | None:
    """The pose with its translation moved so that the view's depth points and its own canonical
    points (the same visible surface) share their centroid; None without canonical points."""
    if own_points is None or len(own_points) < 3:
        return None
    T = T_camera_object.copy()
    T[:3, 3] = depth_points.mean(axis=0) - T[:3, :3] @ own_points.mean(axis=0)
    return T


def _surface_from_views(points: list[np.ndarray | None], viewpoints: list[np.ndarray | None],
                        k: int, rng: np.random.Generator) -> Surface | None:
    """Fused target (units of the size) with normals facing each point's own camera."""
    pairs = [(p, v) for p, v in zip(points, viewpoints) if p is not None and len(p) >= 3
             and v is not None]
    if not pairs:
        return None
    total = sum(len(p) for p, _ in pairs)
    if total > MAX_SURFACE_POINTS:
        pairs = [(p[rng.random(len(p)) < MAX_SURFACE_POINTS / total], v) for p, v in pairs]
    return Surface(np.concatenate([p for p, _ in pairs]),
                   np.concatenate([estimate_normals(p, v, k) for p, v in pairs]))


def _checked(points: np.ndarray | None, what: str) -> np.ndarray | None:
    if points is None:
        return None
    points = np.asarray(points, float)
    if points.ndim != 2 or points.shape[1] != 3:
        raise RefineError(f"{what} must be Nx3, got shape {points.shape}")
    return points[np.all(np.isfinite(points), axis=1)]


def refine_poses(depth_points: list[np.ndarray | None], T_camera_object: list[np.ndarray | None],
                 surface_points: list[np.ndarray | None], size: float,
                 params: RefineParams | None = None) -> list[ViewRefinement]:
    """Refine every view's metric pose against the reconstruction (see the module docstring).

    ``depth_points[i]``: Nx3 back-projected depth inside view i's mask, camera frame, metres
    (None: no depth). ``T_camera_object[i]``: the metric pose after the scale stage (None: no
    pose). ``surface_points[i]``: view i's canonical points in the object frame, metres (the
    fused surface is their union; None entries are skipped). ``size``: the object's size
    (bounding-box diagonal, metres) that the tolerances are fractions of.

    Returns one ``ViewRefinement`` per view, in order. Raises ``RefineError`` on malformed
    input."""
    params = params or RefineParams()
    n = len(T_camera_object)
    if len(depth_points) != n or len(surface_points) != n:
        raise RefineError(f"need one entry per view: {len(depth_points)} depth, {n} poses, "
                          f"{len(surface_points)} surfaces")
    if not (math.isfinite(size) and size > 0):
        raise RefineError(f"size must be a positive number of metres, got {size}")
    rng = np.random.default_rng(params.seed)
    surfaces = [_checked(s, f"surface_points[{i}]") for i, s in enumerate(surface_points)]
    results: list[ViewRefinement] = []
    src: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}   # P, N (size units), D (m)
    for i, (D, T) in enumerate(zip(depth_points, T_camera_object)):
        if T is None:
            results.append(ViewRefinement(None, False, message="no pose to refine"))
            continue
        T = np.asarray(T, float)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise RefineError(f"T_camera_object[{i}] must be a finite 4x4, got {T.shape}")
        D = _checked(D, f"depth_points[{i}]")
        if D is None:
            results.append(ViewRefinement(T, False, message="no depth: pose kept (refinement "
                                          "without depth is not implemented)"))
            continue
        D = D[D[:, 2] > 0]
        if len(D) < params.min_points:
            results.append(ViewRefinement(T, False, num_points=len(D), message=(
                f"{len(D)} valid depth points (< {params.min_points}): pose kept")))
            continue
        if len(D) > params.max_points:
            D = D[rng.choice(len(D), params.max_points, replace=False)]
        P = D / size
        src[i] = (P, estimate_normals(P, np.zeros(3), params.normal_neighbours), D)
        results.append(ViewRefinement(T, False, num_points=len(D)))
    if not src:
        return results
    T_input = {i: results[i].T_camera_object for i in src}
    current = dict(T_input)
    viewpoints = [None if T is None else invert_rigid(np.asarray(T, float))[:3, 3] / size
                  for T in T_camera_object]
    fused = _surface_from_views([None if s is None else s / size for s in surfaces], viewpoints,
                                params.normal_neighbours, rng)
    # 1. Each view against the fused canonical surface, from its pose and its re-centred pose.
    if fused is not None:
        for i, (P, N, D) in src.items():
            starts = {"input": current[i]}
            recentred = _recentred(current[i], D, surfaces[i])
            if recentred is not None:
                starts["recentred"] = recentred
            current[i], rec = _align_pass(P, N, fused, current[i], starts, T_input[i], size,
                                          params, "surface")
            results[i].passes.append(rec)
    # 2. Joint passes: each view in turn against the others' depth at their current poses.
    for k in range(params.joint_passes if len(src) > 1 else 0):
        for i, (P, N, _) in src.items():
            others = [_apply(_to_size(current[j], size), *src[j][:2]) for j in src if j != i]
            target = Surface(np.concatenate([o[0] for o in others]),
                              np.concatenate([o[1] for o in others]))
            current[i], rec = _align_pass(P, N, target, current[i], {"current": current[i]},
                                          T_input[i], size, params, f"joint{k + 1}")
            results[i].passes.append(rec)
    # 3. Report: the final pose against the input, both measured on the fused surface.
    gate, radius = params.max_correspondence, params.score_radius
    cos_max = math.cos(math.radians(params.max_normal_angle_deg))
    for i, (P, N, _) in src.items():
        r = results[i]
        r.T_camera_object = current[i]
        r.applied = any(p["applied"] for p in r.passes)
        if r.applied:
            r.rotation_change_deg, r.translation_change_m = _change(current[i], T_input[i])
        if fused is not None:
            r.before = _fit(fused, P, N, _to_size(T_input[i], size), gate, cos_max, size, radius)
            r.after = _fit(fused, P, N, _to_size(current[i], size), gate, cos_max, size, radius)
        if r.applied:
            r.message = (f"refined by {r.rotation_change_deg:.2f}° and "
                         f"{1000 * r.translation_change_m:.1f} mm")
        else:
            reasons = "; ".join(f"{p['pass']}: {p['reason']}" for p in r.passes)
            r.message = f"pose kept ({reasons or 'no surface points to align with'})"
    return results


__all__ = ["Fit", "RefineError", "RefineParams", "Surface", "ViewRefinement", "estimate_normals",
           "icp_point_to_plane", "refine_poses"]
