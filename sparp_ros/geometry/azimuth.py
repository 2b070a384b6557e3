"""Relative azimuth between per-view canonical frames, found by a visibility-consistency search.

In per-view mode the model predicts each view's NOCS in a gravity-aligned frame attached to *that*
view (DESIGN.md §1's convention applied per view: same centre and size, x towards that view's
camera). PnP then fixes each view's elevation, roll and distance; what remains between view k and
the reference view 0 is one rotation about the up axis, ``p_o0 = Rz(Δ_k) p_ok``.

For each candidate Δ the points of view k are moved into view 0's frame and projected into view 0
(and vice versa). A correct Δ puts them inside the other view's silhouette and never *in front of*
the surface that view saw (points behind it are simply occluded: free). The score is the fraction
of points violating either test; DESIGN.md §7 measured this to beat nearest-neighbour overlap and
colour agreement. The best few minima are kept as hypotheses (our mixture of experts).

With three or more views, ``joint_azimuths`` chooses all azimuths together: every pair of views
scores its relative azimuth, and an assignment must make *all* pairs consistent — a view that is
ambiguous against the reference alone is pinned by the others (measured on the 25 shared objects with
the shipped model: 83° → 66–70° median relative rotation; see benchmarks/RESULTS.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..camera import PinholeCamera
from ..conventions import rot_z

__all__ = ["AzimuthHypothesis", "JointAzimuths", "ViewGeometry", "depth_scale", "joint_azimuths",
           "measured_view_geometry", "object_centre", "pair_cost_curve", "pair_scores", "project_into",
           "rot_z", "search_azimuth", "view_geometry", "violation_fraction"]


@dataclass
class ViewGeometry:
    """One view in its own unit-scale object frame: its surface points, pose and silhouette."""

    points: np.ndarray          # Nx3 unit-scale object points (this view's own frame)
    T_camera_object: np.ndarray  # 4x4 unit-scale pose from PnP
    camera: PinholeCamera       # cell camera
    mask: np.ndarray            # HxW bool silhouette
    depth: np.ndarray           # HxW z of the view's own surface (unit scale), inf where empty


@dataclass
class AzimuthHypothesis:
    azimuth: float              # radians, p_o0 = Rz(azimuth) p_ok
    score: float                # violation fraction, lower is better


def view_geometry(points: np.ndarray, uv: np.ndarray, T_camera_object: np.ndarray,
                  camera: PinholeCamera, mask: np.ndarray, tolerance_px: int = 1) -> ViewGeometry:
    """Build the tests' silhouette and z-buffer of a view from its own NOCS points (pixel uv ↔
    point), both made lenient by ``tolerance_px``: the silhouette is dilated and the z-buffer takes
    the nearest surface in the neighbourhood, so pixel rounding at edges and depth discontinuities
    does not count as a violation."""
    z = points @ T_camera_object[2, :3] + T_camera_object[2, 3]
    depth = np.full(mask.shape, np.inf)
    depth[uv[:, 1].astype(int), uv[:, 0].astype(int)] = z
    if tolerance_px > 0:
        k = np.ones((2 * tolerance_px + 1,) * 2, np.uint8)
        mask = cv2.dilate(mask.astype(np.uint8), k) > 0
        depth = cv2.erode(np.where(np.isinf(depth), 1e9, depth).astype(np.float32), k)
        depth = np.where(depth >= 1e9, np.inf, depth)
    return ViewGeometry(points, T_camera_object, camera, mask, depth)


def depth_scale(pairs: list[tuple[np.ndarray, np.ndarray]]) -> float | None:
    """Metres per unit of the object frame shared by all views, from each view's (unit-scale NOCS
    points, measured camera-frame points) at the same pixels: the ratio of their spreads about
    their centroids (needs no rotation, so a view's orientation error does not bias it), the median
    over the views (one view's bad NOCS does not move it). None without usable views."""
    ratios = []
    for X, D in pairs:
        if len(X) < 10:
            continue
        spread_x = np.sum((X - X.mean(0)) ** 2)
        if spread_x > 1e-12:
            ratios.append(np.sqrt(np.sum((D - D.mean(0)) ** 2) / spread_x))
    return float(np.median(ratios)) if ratios else None


def object_centre(nocs_points: np.ndarray, measured: np.ndarray, R_camera_object: np.ndarray,
                  scale: float) -> np.ndarray:
    """The object frame's origin in the camera (metres) from unit-scale NOCS points and the
    measured camera-frame points at the same pixels, the orientation being known: the centroid of
    the measured points minus the rotated, scaled centroid of their predicted object coordinates."""
    return measured.mean(0) - scale * (np.asarray(R_camera_object, float) @ nocs_points.mean(0))


def measured_view_geometry(measured: np.ndarray, uv: np.ndarray, centre: np.ndarray,
                           R_camera_object: np.ndarray, scale: float, camera: PinholeCamera,
                           mask: np.ndarray, tolerance_px: int = 1) -> ViewGeometry:
    """A view's geometry for the visibility tests from its *measured* surface (a depth camera's
    N×3 camera-frame points, metres, at pixels ``uv``) instead of the predicted NOCS shape; the
    object frame from ``centre`` (:func:`object_centre`), the view's orientation
    ``R_camera_object`` (PnP and the view-angle network) and the common ``scale``
    (:func:`depth_scale`).

    Why: the predicted 32 px NOCS shapes are blurry, so a wrong azimuth often violates no more
    than the right one; a depth camera's surface is exact, and in the tests it is the points moved
    into the other view and the z-buffer they are tested against. Only the object centre still
    comes from the NOCS, and the orientation from the networks."""
    R = np.asarray(R_camera_object, float)
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, centre / scale
    points = (measured - centre) @ R / scale                           # R^T (D − c) / s, unit frame
    return view_geometry(points, uv, T, camera, mask, tolerance_px)


def project_into(points_in_target: np.ndarray, target: ViewGeometry
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points (…×3, in the target view's object frame) seen by the target view: their depth z,
    whether they fall inside its silhouette, and its z-buffer's surface depth at their pixel (inf
    where it has none), each of shape …."""
    T = target.T_camera_object
    pc = points_in_target @ T[:3, :3].T + T[:3, 3]
    z = pc[..., 2]
    K = target.camera.K
    safe_z = np.where(z > 1e-6, z, 1e-6)
    u = np.round(K[0, 0] * pc[..., 0] / safe_z + K[0, 2]).astype(int)
    v = np.round(K[1, 1] * pc[..., 1] / safe_z + K[1, 2]).astype(int)
    H, W = target.mask.shape
    inside = (u >= 0) & (u < W) & (v >= 0) & (v < H) & (z > 1e-6)
    uc, vc = np.clip(u, 0, W - 1), np.clip(v, 0, H - 1)
    return z, inside & target.mask[vc, uc], target.depth[vc, uc]


def violation_fraction(points_in_target: np.ndarray, target: ViewGeometry,
                       depth_tolerance: float = 0.03) -> np.ndarray:
    """For a batch of point sets (A×N×3, in the target view's object frame) the fraction of points
    outside the target silhouette or in front of its surface (tolerance in diagonal units)."""
    z, in_silhouette, surface = project_into(points_in_target, target)
    in_front = in_silhouette & np.isfinite(surface) & (z < surface - depth_tolerance)
    bad = ~in_silhouette | in_front
    return bad.mean(axis=-1)


def search_azimuth(view: ViewGeometry, reference: ViewGeometry, steps: int = 360,
                   max_points: int = 600, top_k: int = 3, min_separation_deg: float = 20.0,
                   seed: int = 0) -> list[AzimuthHypothesis]:
    """Best ``top_k`` azimuths (separated by ``min_separation_deg``) mapping ``view``'s frame onto
    ``reference``'s, scored by two-way visibility consistency."""
    rng = np.random.default_rng(seed)

    def sample(p: np.ndarray) -> np.ndarray:
        return p if len(p) <= max_points else p[rng.choice(len(p), max_points, replace=False)]

    pk, p0 = sample(view.points), sample(reference.points)
    angles = np.arange(steps) * (2 * np.pi / steps)
    Rs = np.stack([rot_z(a) for a in angles])                       # A×3×3
    k_in_0 = np.einsum("aij,nj->ani", Rs, pk)                       # view k points in frame 0
    zero_in_k = np.einsum("aji,nj->ani", Rs, p0)                     # Rz(a)^T p0: frame 0 → k
    score = 0.5 * (violation_fraction(k_in_0, reference) + violation_fraction(zero_in_k, view))
    order = np.argsort(score, kind="stable")
    picked: list[AzimuthHypothesis] = []
    sep = np.radians(min_separation_deg)
    for i in order:
        a = _plateau_centre(score, i) * (2 * np.pi / steps)
        if all(abs((a - h.azimuth + np.pi) % (2 * np.pi) - np.pi) >= sep for h in picked):
            picked.append(AzimuthHypothesis(float(a), float(score[i])))
        if len(picked) == top_k:
            break
    return picked


@dataclass
class JointAzimuths:
    """One assignment of azimuths to all views: ``azimuths[k]`` maps view k's frame onto the
    reference view's frame (``p_ref = Rz(azimuths[k]) p_k``; the reference's is 0)."""

    azimuths: list[float]       # radians, one per view given
    score: float                # mean pairwise violation fraction, lower is better


def pair_scores(view: ViewGeometry, other: ViewGeometry, steps: int = 360, max_points: int = 400,
                rng: np.random.Generator | None = None) -> np.ndarray:
    """Two-way violation fraction for every azimuth ``a`` on a grid of ``steps`` with
    ``p_other = Rz(a) p_view``."""
    rng = rng or np.random.default_rng(0)

    def sample(p: np.ndarray) -> np.ndarray:
        return p if len(p) <= max_points else p[rng.choice(len(p), max_points, replace=False)]

    pv, po = sample(view.points), sample(other.points)
    Rs = np.stack([rot_z(a) for a in np.arange(steps) * (2 * np.pi / steps)])
    v_in_o = np.einsum("aij,nj->ani", Rs, pv)
    o_in_v = np.einsum("aji,nj->ani", Rs, po)
    return 0.5 * (violation_fraction(v_in_o, other) + violation_fraction(o_in_v, view))


def pair_cost_curve(probs_ij: np.ndarray, probs_ji: np.ndarray, steps: int) -> np.ndarray:
    """The network's cost (−log p) of every azimuth ``a`` on a grid of ``steps`` with
    ``p_j = Rz(a) p_i`` (the visibility search's convention for the pair i<j), from both orders
    of the pair: ``[i, j]`` judges ``D = −a``, ``[j, i]`` judges ``a``. Bin probabilities are
    spread evenly over the grid steps inside each bin."""
    bins = len(probs_ij)
    grid = np.arange(steps) * (360.0 / steps)
    k_plus = np.floor(grid / (360.0 / bins)).astype(int) % bins               # bin of a
    k_minus = np.floor(((-grid) % 360.0) / (360.0 / bins)).astype(int) % bins  # bin of −a
    eps = 1e-4
    return -0.5 * (np.log(probs_ji[k_plus] + eps) + np.log(probs_ij[k_minus] + eps))


def joint_azimuths(views: list[ViewGeometry], steps: int = 360, coarse_steps: int = 72,
                   beam: int = 2000, top_k: int = 3, min_separation_deg: float = 20.0,
                   max_points: int = 600, seed: int = 0,
                   pair_costs: dict[tuple[int, int], np.ndarray] | None = None,
                   pair_cost_weight: float = 0.0) -> list[JointAzimuths]:
    """The ``top_k`` most consistent azimuth assignments of ``views`` (view 0 is the reference).

    Every pair's score curve is computed once on a fine grid; a beam search over a coarse grid
    (each coarse bin takes the best fine score inside it, so narrow minima survive) adds one view
    at a time and keeps the ``beam`` best partial assignments by the sum of their pair scores;
    each survivor is then refined view by view on the fine grid. Hypotheses differ by at least
    ``min_separation_deg`` for some view.

    ``pair_costs[i, j]`` (i < j, a curve over the same ``steps`` and convention as
    ``pair_scores``: ``p_j = Rz(a) p_i``) adds another judge of each pair's azimuth, e.g. the
    pair-azimuth network's −log p, weighted by ``pair_cost_weight``; the reported ``score`` then
    includes it.
    """
    n = len(views)
    if n == 1:
        return [JointAzimuths([0.0], 0.0)]
    if steps % coarse_steps:
        raise ValueError(f"steps ({steps}) must be a multiple of coarse_steps ({coarse_steps})")
    rng = np.random.default_rng(seed)
    # S[i, j][a]: score of p_j = Rz(a) p_i. With p_0 = Rz(θ_i) p_i, p_j = Rz(θ_i - θ_j) p_i.
    S = {}
    for i in range(n):
        for j in range(i + 1, n):
            S[i, j] = pair_scores(views[i], views[j], steps, max_points, rng)
            if pair_costs is not None and pair_cost_weight:
                cost = np.asarray(pair_costs[i, j], float)
                if cost.shape != (steps,):
                    raise ValueError(f"pair cost ({i}, {j}) has shape {cost.shape}, expected ({steps},)")
                S[i, j] = S[i, j] + pair_cost_weight * cost
    f = steps // coarse_steps
    coarse = {k: v.reshape(coarse_steps, f).min(axis=1) for k, v in S.items()}
    # Beam over coarse bins, view by view (view 0 fixed at 0).
    states = np.zeros((1, 1), int)
    totals = np.zeros(1)
    for k in range(1, n):
        cand = np.repeat(states, coarse_steps, axis=0)
        th_k = np.tile(np.arange(coarse_steps), len(states))
        add = np.zeros(len(cand))
        for i in range(k):
            add += coarse[i, k][(cand[:, i] - th_k) % coarse_steps]
        new_totals = np.repeat(totals, coarse_steps) + add
        keep = np.argsort(new_totals, kind="stable")[:beam]
        states = np.concatenate([cand[keep], th_k[keep, None]], axis=1)
        totals = new_totals[keep]
    # Refine the best distinct assignments on the fine grid.
    picked: list[JointAzimuths] = []
    sep = min_separation_deg / 360.0 * steps
    for state in states:
        fine = _refine(state * f, S, steps, f)
        if any(np.all(_circ_dist(fine, np.asarray(h.azimuths) / (2 * np.pi) * steps, steps) < sep)
               for h in picked):
            continue
        score = total_pair_cost(np.round(fine), S, steps) / (n * (n - 1) / 2)
        picked.append(JointAzimuths([float(a) * 2 * np.pi / steps for a in fine], float(score)))
        if len(picked) == top_k:
            break
    picked.sort(key=lambda h: h.score)
    return picked


def total_pair_cost(th: np.ndarray, S: dict, steps: int) -> float:
    """The summed pair costs of azimuths ``th`` (in steps): each pair's cost curve ``S[(i, j)]``
    read at their difference. What the search minimises, for scoring any set of azimuths."""
    return float(sum(curve[int(th[i] - th[j]) % steps] for (i, j), curve in S.items()))


def _refine(th: np.ndarray, S: dict, steps: int, window: int, rounds: int = 3) -> np.ndarray:
    """Coordinate descent: each non-reference view moves within ±``window`` fine steps to the
    best sum of its pair scores, others fixed; a last pass puts every view at the centre of its
    flat minimum (fractional steps), the least biased estimate when the score is flat there."""
    th = th.astype(int).copy()
    n = len(th)
    offsets = np.arange(-window, window + 1)

    def cost_of(k: int, cand: np.ndarray) -> np.ndarray:
        cost = np.zeros(len(cand))
        for i in range(n):
            if i < k:
                cost += S[i, k][(th[i] - cand) % steps]
            elif i > k:
                cost += S[k, i][(cand - th[i]) % steps]
        return cost

    for _ in range(rounds):
        moved = False
        for k in range(1, n):
            cand = th[k] + offsets
            best = cand[int(np.argmin(cost_of(k, cand)))] % steps
            moved |= best != th[k]
            th[k] = best
        if not moved:
            break
    out = th.astype(float)
    for k in range(1, n):
        cost = cost_of(k, th[k] + offsets)
        c = window
        lo = hi = 0
        while c - lo - 1 >= 0 and cost[c - lo - 1] <= cost[c]:
            lo += 1
        while c + hi + 1 < len(cost) and cost[c + hi + 1] <= cost[c]:
            hi += 1
        out[k] = (th[k] + (hi - lo) / 2.0) % steps
    return out


def _circ_dist(a: np.ndarray, b: np.ndarray, steps: int) -> np.ndarray:
    d = np.abs(np.asarray(a) - np.asarray(b)) % steps
    return np.minimum(d, steps - d)


def _plateau_centre(score: np.ndarray, i: int) -> float:
    """The middle (in steps, may be fractional) of the run of equal scores around index ``i``
    (circular): a minimum is often flat, and its centre is the least biased estimate."""
    n = len(score)
    lo = hi = 0
    while lo < n // 2 and score[(i - lo - 1) % n] <= score[i]:
        lo += 1
    while hi < n // 2 and score[(i + hi + 1) % n] <= score[i]:
        hi += 1
    return (i + (hi - lo) / 2.0) % n
