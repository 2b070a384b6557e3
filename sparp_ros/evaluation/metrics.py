"""Pose and shape metrics against ``gt.json`` (DESIGN.md §1.6, §4). numpy/scipy/trimesh only, no ROS.

Pose metrics compare *relative* poses between views, ``T_ci_cj = T_ci_o inv(T_cj_o)``, for every pair
``i < j``: the object frame cancels, so an estimate in our canonical object frame, a ground truth in
the mesh frame of the renderer and an SfM reconstruction in its arbitrary world frame are all
comparable without any alignment. A view without an estimate (``None``) makes each of its pairs a
failure: 180° of rotation error (the worst possible value, so that medians and accuracies penalise
it), and an infinite translation error.

Shape metrics put both meshes into the reference camera's frame, each with its own pose of that
camera, so they measure pose and shape together, as a robot would use them.

Besides the size-relative F-scores, the mesh metrics report F-scores at absolute thresholds (5 and
10 mm, what a grasp planner can tolerate whatever the object's size), each with its precision
(accuracy: how much of our surface is near the truth) and recall (completeness: how much of the
truth our surface covers); and, when the reconstruction flags which mesh vertices come from measured
depth, the precision of the measured and of the inferred part of the surface apart.

The scale metric compares our metric scale with the truth *of the same quantity*: the model's scale
is metres per NOCS unit, the diagonal of the object's box in the axes of its mesh file (what the
renderer states, ``gt.extra["canonical"]["diagonal"]``); a size measured from depth is the diagonal
of the surface's resting box (``geometry.fusion.resting_box``, the smallest box about the up axis;
the reconstruction says so in ``extra["measured"]["size"]``), compared with the resting box of the
true mesh. The two differ for objects whose mesh file is not stored along their smallest box (the
airplane's file box is 9.6 % larger than its resting box, the eagle's 4.7 %): no measurement can
know a file's axes. Without a stated diagonal, the lengths of the relative translations between
views (``|t_ci_cj|``), which any metric ground truth holds.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import numpy as np
from scipy.spatial import cKDTree

from ..conventions import invert_rigid, rotation_angle_deg, transform_points

FAILED_ROTATION_DEG = 180.0
"""Rotation error charged to a pair whose estimate is missing."""

FSCORE_THRESHOLD_FRACTION = 0.05
"""F-score threshold (``fscore``) as a fraction of the true mesh's bounding-box diagonal."""

FINE_FSCORE_FRACTIONS = (0.01, 0.02)
"""Tighter F-score thresholds (``fscore@0.01``, ``fscore@0.02``), same size definition."""

FINE_PRECISION_RECALL_FRACTIONS = (0.01,)
"""Fine thresholds (a subset of ``FINE_FSCORE_FRACTIONS``) whose precision and recall are reported
beside the F-score (``precision@0.01``, ``recall@0.01``): an F-score alone cannot tell wrong surface from missing."""

ABSOLUTE_FSCORE_THRESHOLDS_M = (0.005, 0.010)
"""Absolute F-score thresholds in metres (``fscore@5mm``, ``fscore@10mm`` and their ``precision@``
and ``recall@``): a manipulation planner's tolerance does not scale with the object, so a 5 %-of-
the-diagonal score on a 40 cm box (2 cm) and on a 6 cm mug (3 mm) say different things to it."""

MEASURED_SPLIT_THRESHOLDS_M = (0.005,)
"""Absolute thresholds at which the precision is split into measured / inferred samples."""

MEASURED_SPLIT_FRACTIONS = (0.01,)
"""Diagonal fractions at which the precision is split into measured / inferred samples."""

MESH_SAMPLE_POINTS = 50000
"""Surface samples per mesh. Two independent samplings of the same true mesh (3 shared objects)
score ``fscore@0.01`` 0.974–0.999 and ``chamfer`` 0.33–0.46 % with 20000 samples (the spacing of
the samples themselves; worst on the thin-walled mug), ≥ 0.9998 and 0.21–0.29 % with 50000, for
+0.2 s per capture."""


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


def _pairwise(T_est: Sequence[np.ndarray | None], T_gt: Sequence[np.ndarray], failed: float,
              score) -> list[float]:
    """``score(T_est_i, T_est_j, T_gt_i, T_gt_j)`` for every pair i<j; ``failed`` where either
    estimate is None. The one loop of the relative-pose errors below."""
    _check_lists(T_est, T_gt)
    return [failed if T_est[i] is None or T_est[j] is None
            else score(T_est[i], T_est[j], T_gt[i], T_gt[j]) for i, j in _pairs(len(T_gt))]


def relative_pose(T_ci_o: np.ndarray, T_cj_o: np.ndarray) -> np.ndarray:
    """``T_ci_cj = T_ci_o inv(T_cj_o)``: camera j's points in camera i, free of the object frame."""
    return np.asarray(T_ci_o, float) @ invert_rigid(np.asarray(T_cj_o, float))


def relative_rotation_errors(T_est: Sequence[np.ndarray | None],
                             T_gt: Sequence[np.ndarray]) -> list[float]:
    """Angle (degrees) between estimated and true ``R_ci_cj = R_ci_o R_cj_o^T`` for all pairs i<j.

    Multiplying every estimate on the right by one rigid transform (another object frame) leaves
    the errors unchanged. A pair with a ``None`` estimate scores ``FAILED_ROTATION_DEG``.
    """
    def error(ei, ej, gi, gj) -> float:
        R_est = np.asarray(ei)[:3, :3] @ np.asarray(ej)[:3, :3].T
        R_gt = np.asarray(gi)[:3, :3] @ np.asarray(gj)[:3, :3].T
        return rotation_angle_deg(R_est.T @ R_gt)
    return _pairwise(T_est, T_gt, FAILED_ROTATION_DEG, error)


def relative_translation_errors(T_est: Sequence[np.ndarray | None], T_gt: Sequence[np.ndarray],
                                relative: bool = False) -> list[float]:
    """``|t_est - t_gt|`` of ``T_ci_cj`` for all pairs i<j, in metres.

    Only meaningful when both sides are metric. With ``relative=True`` each error is divided by the
    true baseline ``|t_gt|`` (so 0.1 = 10 % of the distance between the two cameras), which
    compares objects of different sizes; a zero true baseline gives ``inf`` there. A pair with a
    ``None`` estimate scores ``inf``.
    """
    def error(ei, ej, gi, gj) -> float:
        t_est, t_gt = relative_pose(ei, ej)[:3, 3], relative_pose(gi, gj)[:3, 3]
        err = float(np.linalg.norm(t_est - t_gt))
        if relative:
            baseline = float(np.linalg.norm(t_gt))
            err = err / baseline if baseline > 1e-12 else math.inf
        return err
    return _pairwise(T_est, T_gt, math.inf, error)


def relative_translation_angle_errors(T_est: Sequence[np.ndarray | None],
                                      T_gt: Sequence[np.ndarray]) -> list[float]:
    """Angle (degrees) between estimated and true relative translation *directions*, all pairs.

    Scale-free, so it also applies to SfM baselines (pycolmap) whose scale is arbitrary. A ``None``
    estimate or a zero baseline on either side scores 180°.
    """
    def error(ei, ej, gi, gj) -> float:
        a, b = relative_pose(ei, ej)[:3, 3], relative_pose(gi, gj)[:3, 3]
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        if na < 1e-12 or nb < 1e-12:
            return FAILED_ROTATION_DEG
        return float(np.degrees(np.arccos(float(np.clip(a @ b / (na * nb), -1.0, 1.0)))))
    return _pairwise(T_est, T_gt, FAILED_ROTATION_DEG, error)


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
    if not threshold > 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    d_ab, d_ba = _nearest_distances(points_est, points_gt)
    chamfer = 0.5 * (float(d_ab.mean()) + float(d_ba.mean()))
    fscore, precision, recall = _fscore(d_ab, d_ba, threshold)
    return chamfer, fscore, precision, recall


def fscores(points_est: np.ndarray, points_gt: np.ndarray,
            thresholds: Sequence[float]) -> list[float]:
    """F-scores at several thresholds (one nearest-neighbour search for all of them)."""
    if any(not t > 0 for t in thresholds):
        raise ValueError(f"thresholds must be positive, got {list(thresholds)}")
    d_ab, d_ba = _nearest_distances(points_est, points_gt)
    return [_fscore(d_ab, d_ba, t)[0] for t in thresholds]


def _nearest_distances(points_est: np.ndarray, points_gt: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(points_est, dtype=np.float64).reshape(-1, 3)
    b = np.asarray(points_gt, dtype=np.float64).reshape(-1, 3)
    if len(a) == 0 or len(b) == 0:
        raise ValueError(f"need non-empty point sets, got {len(a)} and {len(b)}")
    return cKDTree(b).query(a)[0], cKDTree(a).query(b)[0]


def _fscore(d_ab: np.ndarray, d_ba: np.ndarray, threshold: float) -> tuple[float, float, float]:
    precision = float(np.mean(d_ab < threshold))
    recall = float(np.mean(d_ba < threshold))
    fscore = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return fscore, precision, recall


def sample_points(geometry: Any, count: int = MESH_SAMPLE_POINTS, seed: int = 0) -> np.ndarray:
    """Surface samples of a trimesh mesh (area-weighted), or the vertices of a point cloud."""
    return _sample_with_sources(geometry, count, seed)[0]


def _sample_with_sources(geometry: Any, count: int, seed: int
                         ) -> tuple[np.ndarray, np.ndarray, bool]:
    """(samples, source index per sample, whether the sources are faces) of :func:`sample_points`.

    The source is the face a surface sample lies on, or the vertex a point-cloud sample is, so
    that per-vertex attributes (the measured flag) can follow the very samples that were scored;
    the samples are exactly those of :func:`sample_points` for the same ``seed``.
    """
    faces = getattr(geometry, "faces", None)
    if faces is not None and len(faces) > 0 and float(geometry.area) > 0:
        import trimesh
        pts, face_index = trimesh.sample.sample_surface(geometry, count, seed=seed)
        return np.asarray(pts, dtype=np.float64), np.asarray(face_index, dtype=np.int64), True
    verts = np.asarray(getattr(geometry, "vertices", geometry), dtype=np.float64).reshape(-1, 3)
    index = np.arange(len(verts))
    if len(verts) > count:
        index = np.random.default_rng(seed).choice(len(verts), count, replace=False)
    return verts[index], index, False


def measured_faces(faces: np.ndarray, vertex_measured: np.ndarray) -> np.ndarray:
    """Per face: True when the majority (at least 2 of 3) of its vertices are measured.

    A face spanning a measured and an inferred region (the seam) belongs to the side that owns
    most of it, so that the seam is not all charged to one class.
    """
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    return np.asarray(vertex_measured, dtype=bool)[faces].sum(axis=1) >= 2


def _sample_measured(geometry: Any, vertex_measured: Any, source: np.ndarray,
                     on_faces: bool) -> np.ndarray:
    """The measured flag of each sample, from the reconstruction's per-vertex flag."""
    flags = np.asarray(vertex_measured, dtype=bool).reshape(-1)
    n_vertices = len(np.asarray(getattr(geometry, "vertices", geometry)).reshape(-1, 3))
    if len(flags) != n_vertices:
        # a flag array out of step with the mesh (e.g. vertices merged after flagging) would
        # classify samples by the wrong vertices: refuse rather than report a wrong split
        raise ValueError(f"mesh_measured has {len(flags)} entries for {n_vertices} mesh vertices")
    if on_faces:
        return measured_faces(geometry.faces, flags)[source]
    return flags[source]


def true_resting_box_diagonal(capture: Any) -> float | None:
    """The diagonal (metres) of the true mesh's resting box (``geometry.fusion.resting_box``: the
    smallest box about the up axis) — the size a measured surface's resting box estimates. The
    mesh is taken in its file's frame, which for the renderer's captures (those with
    ``gt.extra["canonical"]``) is z up (conventions); ``None`` for other ground truth or without
    the mesh file."""
    gt = getattr(capture, "gt", None)
    path = capture.mesh_path() if gt is not None and gt.extra.get("canonical") else None
    if path is None or not path.exists():
        return None
    return _resting_box_diagonal(str(path))


@functools.lru_cache(maxsize=64)
def _resting_box_diagonal(path: str) -> float:
    from ..geometry.fusion import resting_box
    return float(np.linalg.norm(resting_box(np.asarray(load_true_mesh(path).vertices))[1]))


def load_true_mesh(path: str) -> Any:
    """The true mesh as one ``trimesh.Trimesh`` in its file's frame (scene transforms applied)."""
    import trimesh
    return trimesh.load(str(path), force="mesh")


def mesh_metrics(recon: Any, capture: Any, count: int = MESH_SAMPLE_POINTS,
                 seed: int = 0) -> dict[str, Any] | None:
    """Chamfer and F-scores of ``recon.mesh`` against the true mesh, both in the reference camera.

    Our mesh goes into the reference camera (view 0, or the first view with a pose) with our
    ``T_c_object``; the true mesh with the ground truth ``T_c_mesh``. Distances are divided by the
    true mesh's bounding-box diagonal (``chamfer``); ``fscore`` uses 5 % of that diagonal and
    ``fscore@0.01`` / ``fscore@0.02`` 1 % and 2 %, so objects of any size compare
    (``precision@0.01`` / ``recall@0.01`` beside the 1 % one). ``fscore@5mm`` / ``fscore@10mm``
    (``ABSOLUTE_FSCORE_THRESHOLDS_M``) use absolute thresholds instead, each with its
    ``precision@`` (fraction of our samples within the threshold of the truth: accuracy) and
    ``recall@`` (fraction of the true samples within it of ours: completeness), because a planner
    needs to know whether a wrong grasp comes from surface that is wrong or surface that is missing.
    All of them come from one nearest-neighbour search.

    Measured / inferred split: when ``recon.mesh_measured`` is a per-vertex bool array (True = from
    measured depth, False = inferred by the model), each sample of our mesh is measured when at
    least 2 of its face's 3 vertices are, and ``precision@5mm_measured``,
    ``precision@5mm_inferred``, ``precision@0.01_measured``, ``precision@0.01_inferred`` are the
    precisions of each class (``None`` for a class without samples); ``measured_fraction`` is the
    fraction of samples that are measured. It shows whether the model's completion is worse than
    the depth it completes. Recall cannot be split: it counts true points covered by our surface,
    and a true point has no measured / inferred class of its own. Without the flag
    (``mesh_measured`` absent or None) these five keys are present with the value ``None`` ("no
    data", like a class without samples), so every record has the same keys.

    ``fscore_published``: the 5 % F-score of the mesh placed by the pose of the view a robot is
    given (``Reconstruction.published_view``, named in ``published_view``), in that view's camera:
    equal to ``fscore`` when that view is the reference, lower when its pose is off.

    Returns ``None`` when it cannot apply: non-metric ground truth, no estimated mesh, no true mesh,
    or no posed view. Raises ``ValueError`` when ``mesh_measured`` does not have one entry per
    vertex of ``recon.mesh``.
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
    true_mesh = load_true_mesh(str(mesh_path))
    true_samples = sample_points(true_mesh, count, seed)
    pts_gt = transform_points(np.asarray(gt.T_camera_object[ref], float), true_samples)
    samples, source, on_faces = _sample_with_sources(recon.mesh, count, seed + 1)
    pts_est = transform_points(np.asarray(recon.views[ref].T_camera_object, float), samples)
    vertex_measured = getattr(recon, "mesh_measured", None)
    sample_measured = (None if vertex_measured is None else
                       _sample_measured(recon.mesh, vertex_measured, source, on_faces))
    lo, hi = np.asarray(true_mesh.bounds)
    diagonal = float(np.linalg.norm(hi - lo))
    if diagonal <= 0:
        return None
    d_ab, d_ba = _nearest_distances(pts_est, pts_gt)       # one search for every threshold
    chamfer = 0.5 * (float(d_ab.mean()) + float(d_ba.mean()))
    fscore, precision, recall = _fscore(d_ab, d_ba, FSCORE_THRESHOLD_FRACTION * diagonal)
    result: dict[str, Any] = {"chamfer": chamfer / diagonal, "fscore": fscore}
    for f in FINE_FSCORE_FRACTIONS:
        f_score, f_precision, f_recall = _fscore(d_ab, d_ba, f * diagonal)
        result[fscore_key(f)] = f_score
        if f in FINE_PRECISION_RECALL_FRACTIONS:
            result[fscore_key(f, "precision")] = f_precision
            result[fscore_key(f, "recall")] = f_recall
    for t in ABSOLUTE_FSCORE_THRESHOLDS_M:
        for kind, value in zip(("fscore", "precision", "recall"), _fscore(d_ab, d_ba, t)):
            result[absolute_fscore_key(t, kind)] = value
    splits = ([(absolute_fscore_key(t, "precision"), t) for t in MEASURED_SPLIT_THRESHOLDS_M]
              + [(fscore_key(f, "precision"), f * diagonal) for f in MEASURED_SPLIT_FRACTIONS])
    for key, threshold in splits:
        for cls, mask in (("measured", sample_measured),
                          ("inferred", None if sample_measured is None else ~sample_measured)):
            result[f"{key}_{cls}"] = (float(np.mean(d_ab[mask] < threshold))
                                      if mask is not None and mask.any() else None)
    result["measured_fraction"] = (None if sample_measured is None
                                   else float(np.mean(sample_measured)))
    # what a robot gets: the mesh placed by the published view's pose, in that view's camera
    published = getattr(recon, "published_view", ref)
    result["fscore_published"] = fscore
    if published not in (ref, -1):
        d_ab, d_ba = _nearest_distances(
            transform_points(np.asarray(recon.views[published].T_camera_object, float), samples),
            transform_points(np.asarray(gt.T_camera_object[published], float), true_samples))
        result["fscore_published"] = _fscore(d_ab, d_ba, FSCORE_THRESHOLD_FRACTION * diagonal)[0]
    result.update(precision=precision, recall=recall, chamfer_m=chamfer, diagonal_m=diagonal,
                  reference_view=ref, published_view=published)
    return result


def fscore_key(fraction: float, kind: str = "fscore") -> str:
    """The metrics key of the F-score (or ``kind`` ``precision`` / ``recall``) at ``fraction`` of
    the diagonal, e.g. ``fscore@0.01``, ``precision@0.01``."""
    return f"{kind}@{fraction:g}"


def absolute_fscore_key(threshold_m: float, kind: str = "fscore") -> str:
    """The metrics key of the F-score (or ``kind`` ``precision`` / ``recall``) at an absolute
    threshold in metres, named in millimetres: ``absolute_fscore_key(0.005) == "fscore@5mm"``."""
    return f"{kind}@{round(threshold_m * 1000.0, 6):g}mm"


def measured_split_keys() -> list[str]:
    """The keys of the measured / inferred split in :func:`mesh_metrics`, in report order:
    ``precision@5mm_measured``, ``precision@5mm_inferred``, ``precision@0.01_measured``,
    ``precision@0.01_inferred``, ``measured_fraction``."""
    keys = [absolute_fscore_key(t, "precision") for t in MEASURED_SPLIT_THRESHOLDS_M]
    keys += [fscore_key(f, "precision") for f in MEASURED_SPLIT_FRACTIONS]
    return [f"{k}_{cls}" for k in keys for cls in ("measured", "inferred")] + ["measured_fraction"]


def mesh_summary_keys() -> list[str]:
    """Every per-capture mesh metric that a summary averages over captures (``run._summarize``):
    the scores, not the bookkeeping (``chamfer_m``, ``diagonal_m``, ``reference_view``,
    ``published_view``) nor the
    5 % ``precision`` / ``recall``, which the summary has never carried."""
    keys = ["chamfer", "fscore", *map(fscore_key, FINE_FSCORE_FRACTIONS)]
    keys += [fscore_key(f, kind) for f in FINE_PRECISION_RECALL_FRACTIONS
             for kind in ("precision", "recall")]
    keys += [absolute_fscore_key(t, kind) for t in ABSOLUTE_FSCORE_THRESHOLDS_M
             for kind in ("fscore", "precision", "recall")]
    return keys + measured_split_keys() + ["fscore_published"]


def scale_error(recon: Any, capture: Any) -> dict[str, Any] | None:
    """Relative error of the reconstruction's metric scale, ``|s_est / s_true - 1|``.

    With the true bounding-box diagonal in the ground truth (``gt.extra["canonical"]["diagonal"]``,
    written by the renderer) it compares ``recon.scale`` with it directly (``method: "diagonal"``),
    unless the reconstruction states that its scale is a measured resting box's diagonal
    (``recon.extra["measured"]["size"]["definition"] == "resting_box"``): then the truth is the
    resting box of the true mesh (``method: "resting_box"``; module docstring), and the file's
    diagonal stays in the record (``true_diagonal_m``).
    Otherwise it takes the median over view pairs of ``|t_est_ij| / |t_true_ij| - 1`` for the
    relative translations ``T_ci_cj`` (``method: "baselines"``), which is the scale ratio when the
    poses are right, in any object frame. ``None`` when it cannot apply: non-metric ground truth,
    or neither a true diagonal nor a pair of posed views with a non-zero true baseline.
    """
    gt = getattr(capture, "gt", None)
    if gt is None or not gt.metric:
        return None
    diagonal = (gt.extra.get("canonical") or {}).get("diagonal")
    scale = getattr(recon, "scale", None)
    if diagonal and scale is not None and np.isfinite(scale) and float(diagonal) > 0:
        from ..geometry.fusion import RESTING_BOX
        size = ((getattr(recon, "extra", None) or {}).get("measured") or {}).get("size") or {}
        true_box = (true_resting_box_diagonal(capture)
                    if size.get("definition") == RESTING_BOX else None)
        if true_box:
            return {"scale_error": abs(float(scale) / true_box - 1.0), "method": RESTING_BOX,
                    "scale_m": float(scale), "true_scale_m": true_box,
                    "true_diagonal_m": float(diagonal)}
        return {"scale_error": abs(float(scale) / float(diagonal) - 1.0), "method": "diagonal",
                "scale_m": float(scale), "true_scale_m": float(diagonal)}
    T_est = [v.T_camera_object if v.ok else None for v in recon.views]
    if len(T_est) != len(gt.T_camera_object):
        return None
    ratios = []
    for i, j in _pairs(len(T_est)):
        if T_est[i] is None or T_est[j] is None:
            continue
        T_true = relative_pose(gt.T_camera_object[i], gt.T_camera_object[j])
        true = float(np.linalg.norm(T_true[:3, 3]))
        if true > 1e-9:
            est = float(np.linalg.norm(relative_pose(T_est[i], T_est[j])[:3, 3]))
            ratios.append(abs(est / true - 1.0))
    if not ratios:
        return None
    return {"scale_error": float(np.median(ratios)), "method": "baselines", "pairs": len(ratios)}
