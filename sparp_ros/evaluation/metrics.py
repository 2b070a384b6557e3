"""Pose and shape metrics against ``gt.json`` (DESIGN.md §1.6, §4). numpy/scipy/trimesh only, no ROS.

Pose metrics compare *relative* poses between views, ``T_ci_cj = T_ci_o inv(T_cj_o)``, for every pair
``i < j``: the object frame cancels, so an estimate in our canonical object frame, a ground truth in
the mesh frame of the renderer and an SfM reconstruction in its arbitrary world frame are all
comparable without any alignment. A view without an estimate (``None``) makes each of its pairs a
failure: 180° of rotation error (the worst possible value, so that medians and accuracies penalise
it), and an infinite translation error.

Shape metrics put both meshes into the reference camera's frame, each with its own pose of that
camera, so they measure pose and shape together, as a robot would use them.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from scipy.spatial import cKDTree

from ..conventions import invert_rigid, rotation_angle_deg, transform_points

FAILED_ROTATION_DEG = 180.0
"""Rotation error charged to a pair whose estimate is missing."""

FSCORE_THRESHOLD_FRACTION = 0.05
"""F-score threshold as a fraction of the true mesh's bounding-box diagonal."""

MESH_SAMPLE_POINTS = 20000


def _check_lists(T_est: Sequence[np.ndarray | None], T_gt: Sequence[np.ndarray]) -> None:
    if len(T_est) != len(T_gt):
        raise ValueError(f"T_est has {len(T_est)} poses but T_gt has {len(T_gt)}")
    for name, Ts in (("T_est", T_est), ("T_gt", T_gt)):
        for k, T in enumerate(Ts):
            if T is None and name == "T_gt":
                raise ValueError(f"T_gt[{k}] is None: ground truth must be complete")
            if T is not None and np.asarray(T).shape != (4, 4):
                raise ValueError(f"{name}[{k}] must be 4x4, got shape {np.asarray(T).shape}")


def _pairs(n: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(n) for j in range(i + 1, n)]


def relative_pose(T_ci_o: np.ndarray, T_cj_o: np.ndarray) -> np.ndarray:
    """``T_ci_cj = T_ci_o inv(T_cj_o)``: camera j's points in camera i, free of the object frame."""
    return np.asarray(T_ci_o, float) @ invert_rigid(np.asarray(T_cj_o, float))


def relative_rotation_errors(T_est: Sequence[np.ndarray | None],
                             T_gt: Sequence[np.ndarray]) -> list[float]:
    """Angle (degrees) between estimated and true ``R_ci_cj = R_ci_o R_cj_o^T`` for all pairs i<j.

    Multiplying every estimate on the right by one rigid transform (another object frame) leaves
    the errors unchanged. A pair with a ``None`` estimate scores ``FAILED_ROTATION_DEG``.
    """
    _check_lists(T_est, T_gt)
    errors = []
    for i, j in _pairs(len(T_gt)):
        if T_est[i] is None or T_est[j] is None:
            errors.append(FAILED_ROTATION_DEG)
            continue
        R_est = np.asarray(T_est[i])[:3, :3] @ np.asarray(T_est[j])[:3, :3].T
        R_gt = np.asarray(T_gt[i])[:3, :3] @ np.asarray(T_gt[j])[:3, :3].T
        errors.append(rotation_angle_deg(R_est.T @ R_gt))
    return errors


def relative_translation_errors(T_est: Sequence[np.ndarray | None], T_gt: Sequence[np.ndarray],
                                relative: bool = False) -> list[float]:
    """``|t_est - t_gt|`` of ``T_ci_cj`` for all pairs i<j, in metres.

    Only meaningful when both sides are metric. With ``relative=True`` each error is divided by the
    true baseline ``|t_gt|`` (so 0.1 = 10 % of the distance between the two cameras), which
    compares objects of different sizes; a zero true baseline gives ``inf`` there. A pair with a
    ``None`` estimate scores ``inf``.
    """
    _check_lists(T_est, T_gt)
    errors = []
    for i, j in _pairs(len(T_gt)):
        if T_est[i] is None or T_est[j] is None:
            errors.append(math.inf)
            continue
        t_est = relative_pose(T_est[i], T_est[j])[:3, 3]
        t_gt = relative_pose(T_gt[i], T_gt[j])[:3, 3]
        err = float(np.linalg.norm(t_est - t_gt))
        if relative:
            baseline = float(np.linalg.norm(t_gt))
            err = err / baseline if baseline > 1e-12 else math.inf
        errors.append(err)
    return errors


def relative_translation_angle_errors(T_est: Sequence[np.ndarray | None],
                                      T_gt: Sequence[np.ndarray]) -> list[float]:
    """Angle (degrees) between estimated and true relative translation *directions*, all pairs.

    Scale-free, so it also applies to SfM baselines (pycolmap) whose scale is arbitrary. A ``None``
    estimate or a zero baseline on either side scores 180°.
    """
    _check_lists(T_est, T_gt)
    errors = []
    for i, j in _pairs(len(T_gt)):
        if T_est[i] is None or T_est[j] is None:
            errors.append(FAILED_ROTATION_DEG)
            continue
        a = relative_pose(T_est[i], T_est[j])[:3, 3]
        b = relative_pose(T_gt[i], T_gt[j])[:3, 3]
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        if na < 1e-12 or nb < 1e-12:
            errors.append(FAILED_ROTATION_DEG)
            continue
        c = float(np.clip(a @ b / (na * nb), -1.0, 1.0))
        errors.append(float(np.degrees(np.arccos(c))))
    return errors


def summarize_rotation(errors: Sequence[float]) -> dict[str, float | None]:
    """The paper's rotation summary: median error and the fractions below 15° and 30°.

    ``None`` values when there are no pairs (a single-view capture), so that "no data" is never
    reported as a perfect or a failed score.
    """
    e = np.asarray(list(errors), dtype=float)
    if e.size == 0:
        return {"median_rotation_error_deg": None, "acc15": None, "acc30": None}
    return {"median_rotation_error_deg": float(np.median(e)),
            "acc15": float(np.mean(e < 15.0)),
            "acc30": float(np.mean(e < 30.0))}


def chamfer_fscore(points_est: np.ndarray, points_gt: np.ndarray,
                   threshold: float) -> tuple[float, float, float, float]:
    """(chamfer, fscore, precision, recall) between two point sets, in the points' units.

    ``chamfer`` is the mean of the two mean nearest-neighbour distances (est→gt measures accuracy,
    gt→est completeness); precision is the fraction of estimated points within ``threshold`` of
    the truth, recall the fraction of true points within ``threshold`` of the estimate.
    """
    a = np.asarray(points_est, dtype=np.float64).reshape(-1, 3)
    b = np.asarray(points_gt, dtype=np.float64).reshape(-1, 3)
    if len(a) == 0 or len(b) == 0:
        raise ValueError(f"chamfer_fscore needs non-empty point sets, got {len(a)} and {len(b)}")
    if not threshold > 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    d_ab, _ = cKDTree(b).query(a)
    d_ba, _ = cKDTree(a).query(b)
    chamfer = 0.5 * (float(d_ab.mean()) + float(d_ba.mean()))
    precision = float(np.mean(d_ab < threshold))
    recall = float(np.mean(d_ba < threshold))
    fscore = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return chamfer, fscore, precision, recall


def sample_points(geometry: Any, count: int = MESH_SAMPLE_POINTS, seed: int = 0) -> np.ndarray:
    """Surface samples of a trimesh mesh (area-weighted), or the vertices of a point cloud."""
    faces = getattr(geometry, "faces", None)
    if faces is not None and len(faces) > 0 and float(geometry.area) > 0:
        import trimesh
        pts, _ = trimesh.sample.sample_surface(geometry, count, seed=seed)
        return np.asarray(pts, dtype=np.float64)
    verts = np.asarray(getattr(geometry, "vertices", geometry), dtype=np.float64).reshape(-1, 3)
    if len(verts) > count:
        verts = verts[np.random.default_rng(seed).choice(len(verts), count, replace=False)]
    return verts


def load_mesh(path: str) -> Any:
    """The true mesh as one ``trimesh.Trimesh`` in its file's frame (scene transforms applied)."""
    import trimesh
    return trimesh.load(str(path), force="mesh")


def mesh_metrics(recon: Any, capture: Any, count: int = MESH_SAMPLE_POINTS,
                 seed: int = 0) -> dict[str, float] | None:
    """Chamfer and F-score of ``recon.mesh`` against the true mesh, both in the reference camera.

    Our mesh goes into the reference camera (view 0, or the first view with a pose) with our
    ``T_c_object``; the true mesh with the ground truth ``T_c_mesh``. Distances are divided by the
    true mesh's bounding-box diagonal (``chamfer``), and the F-score uses 5 % of that diagonal,
    so objects of any size compare. Returns ``None`` when it cannot apply: non-metric ground truth,
    no estimated mesh, no true mesh, or no posed view.
    """
    gt = getattr(capture, "gt", None)
    if gt is None or not gt.metric or getattr(recon, "mesh", None) is None:
        return None
    mesh_path = capture.mesh_path()
    if mesh_path is None or not mesh_path.exists():
        return None
    ref = recon.reference_view
    if ref < 0 or recon.views[ref].T_camera_object is None:
        return None
    true_mesh = load_mesh(str(mesh_path))
    pts_gt = transform_points(np.asarray(gt.T_camera_object[ref], float),
                              sample_points(true_mesh, count, seed))
    pts_est = transform_points(np.asarray(recon.views[ref].T_camera_object, float),
                               sample_points(recon.mesh, count, seed + 1))
    lo, hi = np.asarray(true_mesh.bounds)
    diagonal = float(np.linalg.norm(hi - lo))
    if diagonal <= 0:
        return None
    chamfer, fscore, precision, recall = chamfer_fscore(pts_est, pts_gt,
                                                        FSCORE_THRESHOLD_FRACTION * diagonal)
    return {"chamfer": chamfer / diagonal, "fscore": fscore, "precision": precision,
            "recall": recall, "chamfer_m": chamfer, "diagonal_m": diagonal, "reference_view": ref}
