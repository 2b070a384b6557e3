"""One hand-eye correction shared by every view, from the views' measured surfaces.

A camera on an arm gets its poses from TF as ``T_world_camera = T_world_flange @ X``, where ``X``
is the hand-eye calibration. When ``X`` is off, every view is off by the *same* transform in its
camera frame: the true pose is ``T_world_camera @ D`` for one unknown correction ``D``. Relative
poses then become ``D⁻¹ T_ci_cj D``: the surfaces of two views no longer meet, and a fused mesh
is smeared by a few millimetres per degree.

Registering each pair freely (six unknowns per view) cannot remove such an error: ICP on partial
surfaces slides by a few degrees itself, about as much as the error (README "Measured
surfaces"). The structure helps: one ``D`` (six unknowns) must make *every* pair's surfaces meet
at once. This module finds it by Gauss-Newton on the symmetric point-to-plane distances of all
pairs together (coarse to fine gates, Huber weights), the views' points fixed in their own camera
frames, so only ``D`` moves. open3d's pair ICP and pose graph have no way to share one
transform between all views, hence these few lines of our own; the clouds, their normals and
the gates follow the registration's (``registration.py``). Three gate schedules start from TF's
poses; the registration's own score (``registration.agreement``: overlap minus free-space
violations) picks one, and the correction is applied only when it brings the surfaces closer
and raises that score.

What the surfaces cannot see: a turn of ``D`` about an axis that every relative rotation
shares, and a shift along it, change no relative pose (``D⁻¹ R D = R`` then). A weak prior
holds ``D`` near identity there (the steps are per point, not summed over thousands of
correlated points, so the prior counts). Measured (``benchmarks/hand_eye.py``, README "Hand-eye
correction"): a 3° / 1 cm error on the 25 shared objects falls to 0.26° median and the fused
surface gets back most of its fine detail; on exact TF it was applied on 5 of 75 captures, at a
small cost. A repair for a calibration known to be off, so off by default.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..conventions import invert_rigid, rotation_angle_deg, transform_points
from .registration import RegistrationParams, RegistrationView, _cloud, agreement


@dataclass(frozen=True)
class HandEyeParams:
    """Gates are fractions of the object's size, coarse to fine, one schedule per start (the
    best by ``registration.agreement`` is kept); ``iterations`` per gate."""

    schedules: tuple[tuple[float, ...], ...] = ((0.04, 0.02), (0.08, 0.04, 0.02), (0.16, 0.08, 0.04, 0.02))
    iterations: int = 8
    huber: float = 0.3                    # Huber threshold, as a fraction of the current gate
    damping: float = 1e-6                 # Marquardt damping, relative to the normal matrix' diagonal
    prior_rotation_deg: float = 10.0      # the prior on the correction (module docstring): its
    prior_translation: float = 0.2        # scale in rotation and in translation (× size), against
    noise: float = 0.01                   # a point-to-plane noise of this × size
    max_points: int = 1500                # per view, after the voxel downsampling
    min_correspondences: int = 200        # over all pairs, at the finest gate
    max_rotation_deg: float = 10.0        # a larger correction is refused (TF kept)
    max_translation: float = 0.25         # ditto, as a fraction of the object's size
    min_gain: float = 0.17                # applied only when it lowers the surfaces' distance and
                                          # raises registration.agreement by this much per
                                          # pair of views (its sum over 6 pairs: on exact TF
                                          # 0.5 median, under a 1° / 3 mm error at least 1.4)


DEFAULT_PARAMS = HandEyeParams()
"""What the pipeline uses (``benchmarks/hand_eye.py --prior-translation`` replaces it)."""


@dataclass
class HandEyeCorrection:
    """``T``: the correction in the camera frame (corrected ``T_world_camera = T_world_camera @
    T``; identity when refused), how far it turns and moves, the surfaces' distance over all
    pairs before and after (point-to-plane RMS at the finest gate, truncated there, every point
    counted), the correspondences it rests on, and whether it was accepted (``message`` says
    why not)."""

    T: np.ndarray
    rotation_deg: float
    translation_m: float
    rms_before_m: float
    rms_after_m: float
    correspondences: int
    accepted: bool
    message: str = ""
    views: list[int] = field(default_factory=list)
    agreement_before: float = float("nan")
    agreement_after: float = float("nan")

    def to_dict(self) -> dict:
        return {"accepted": self.accepted, "rotation_deg": self.rotation_deg,
                "translation_m": self.translation_m, "rms_before_m": self.rms_before_m,
                "rms_after_m": self.rms_after_m, "correspondences": self.correspondences,
                "views": self.views, "message": self.message,
                "agreement_before": self.agreement_before, "agreement_after": self.agreement_after,
                "T_camera_correction": np.asarray(self.T).tolist()}


def _skew(v: np.ndarray) -> np.ndarray:
    """Per row of ``v`` (Nx3), the 3x3 matrix of the cross product ``v ×``."""
    out = np.zeros((len(v), 3, 3))
    out[:, 0, 1], out[:, 0, 2] = -v[:, 2], v[:, 1]
    out[:, 1, 0], out[:, 1, 2] = v[:, 2], -v[:, 0]
    out[:, 2, 0], out[:, 2, 1] = -v[:, 1], v[:, 0]
    return out


def _exp(xi: np.ndarray) -> np.ndarray:
    """The rigid transform of the twist ``xi`` = (rotation vector, translation), first order in
    the translation (the steps are small)."""
    import cv2
    T = np.eye(4)
    T[:3, :3] = cv2.Rodrigues(np.asarray(xi[:3], float).reshape(3, 1))[0]
    T[:3, 3] = xi[3:]
    return T


def _log_rotation(R: np.ndarray) -> np.ndarray:
    """The rotation vector of ``R``."""
    import cv2
    return cv2.Rodrigues(np.asarray(R, float))[0].ravel()


def _prepared(points: np.ndarray, voxel: float, max_points: int, seed: int):
    """A view's points (camera frame) and normals as the registration prepares them
    (``registration._cloud``: downsampled on ``voxel``, normals facing the camera), at most
    ``max_points`` of them."""
    cloud = _cloud(points, voxel)
    P, N = np.asarray(cloud.points), np.asarray(cloud.normals)
    if len(P) > max_points:
        pick = np.random.default_rng(seed).choice(len(P), max_points, replace=False)
        P, N = P[pick], N[pick]
    return P, N


def estimate_hand_eye(views: Sequence[RegistrationView | None],
                      T_world_camera: Sequence[np.ndarray | None], object_size: float, voxel: float,
                      params: HandEyeParams | None = None) -> HandEyeCorrection:
    """The correction ``D`` (module docstring) that makes every pair of views' measured surfaces
    meet: ``views[k]`` holds view k's measured object points in its camera frame, its depth and
    mask (None: no depth), ``T_world_camera[k]`` its pose from TF. Needs two views with points
    and a turn between them; refused (identity, ``accepted`` False) when the surfaces meet in
    too few points, the correction is larger than ``max_rotation_deg`` / ``max_translation`` ×
    size, or it does not bring them closer and raise their agreement by ``min_gain`` a pair."""
    from scipy.spatial import cKDTree

    params = DEFAULT_PARAMS if params is None else params
    keys = [k for k, (v, T) in enumerate(zip(views, T_world_camera))
            if v is not None and T is not None and len(v.points) >= 3]

    def refused(message: str, rms: float = float("nan"), count: int = 0,
                agreements: tuple[float, float] = (float("nan"), float("nan"))) -> HandEyeCorrection:
        return HandEyeCorrection(np.eye(4), 0.0, 0.0, rms, rms, count, False, message, keys,
                                 *agreements)

    if len(keys) < 2:
        return refused("fewer than two views with depth and a camera pose")
    clouds = {k: _prepared(views[k].points, voxel, params.max_points, seed=k) for k in keys}
    trees = {k: cKDTree(clouds[k][0]) for k in keys}
    # T_ci_cj from TF, for every ordered pair (each view's points matched in the other's cloud)
    relative = {(i, j): invert_rigid(np.asarray(T_world_camera[i], float))
                @ np.asarray(T_world_camera[j], float) for i in keys for j in keys if i != j}

    def matched(D: np.ndarray, gate: float):
        """Per ordered pair (i, j): view j's points, where D puts them in camera i, their nearest
        point of view i within ``gate`` (index; ``len`` of i's cloud where none) and G = T_ci_cj."""
        D_inv = invert_rigid(D)
        for (i, j), M in relative.items():
            G = D_inv @ M @ D                         # view j's camera -> view i's camera
            X = transform_points(G, clouds[j][0])
            _, index = trees[i].query(X, distance_upper_bound=gate)
            yield i, j, G, X, index

    def linearised(D: np.ndarray, gate: float):
        """Residuals (each matched pair's symmetric point-to-plane distance), their Jacobian in
        the twist of D (D <- D exp(xi), the normals held), over all pairs."""
        rows, residuals = [], []
        for i, j, G, X, index in matched(D, gate):
            hit = index < len(clouds[i][0])
            if not hit.any():
                continue
            P, X = clouds[j][0][hit], X[hit]
            # the symmetric point-to-plane distance: along both points' normals together, not
            # the target's alone (Rusinkiewicz, "A symmetric objective function for ICP", 2019):
            # on curved partial surfaces the one-sided one is biased, by a few millimetres here
            Q = clouds[i][0][index[hit]]
            N = clouds[i][1][index[hit]] + clouds[j][1][hit] @ G[:3, :3].T
            residuals.append(np.einsum("ij,ij->i", N, X - Q))
            # d X = (-R_G [p]x + [x]x) w + (R_G - I) v
            d_omega = -np.einsum("ab,nbc->nac", G[:3, :3], _skew(P)) + _skew(X)
            rows.append(np.hstack([np.einsum("na,nab->nb", N, d_omega),
                                   N @ (G[:3, :3] - np.eye(3))]))
        if not rows:
            return np.zeros(0), np.zeros((0, 6))
        return np.concatenate(residuals), np.vstack(rows)

    def cost(D: np.ndarray, gate: float) -> tuple[float, int]:
        """The truncated RMS over every point of every pair (a point with no match within
        ``gate``, or farther from its match's plane, counts as ``gate``: the same points are
        counted before and after), and how many points matched."""
        values, count = [], 0
        for i, j, G, X, index in matched(D, gate):
            hit = index < len(clouds[i][0])
            r = np.full(len(X), gate)
            Q, N = clouds[i][0][index[hit]], clouds[i][1][index[hit]]
            r[hit] = np.minimum(np.abs(np.einsum("ij,ij->i", N, X[hit] - Q)), gate)
            values.append(r)
            count += int(hit.sum())
        return float(np.sqrt(np.mean(np.concatenate(values) ** 2))), count

    sigma = params.noise * object_size
    prior = np.concatenate([np.full(3, (sigma / np.radians(params.prior_rotation_deg)) ** 2),
                            np.full(3, (sigma / (params.prior_translation * object_size)) ** 2)])
    judge = min(min(g) for g in params.schedules) * object_size
    before, _ = cost(np.eye(4), judge)

    def solved(gates: Sequence[float]) -> np.ndarray:
        D = np.eye(4)
        for gate in (g * object_size for g in gates):
            for _ in range(params.iterations):
                r, J = linearised(D, gate)
                if len(r) < 6:
                    break
                scale = params.huber * gate
                weights = np.where(np.abs(r) <= scale, 1.0, scale / np.maximum(np.abs(r), 1e-12))
                # per point (the mean, not the sum): neighbouring points' errors are not
                # independent, so thousands of them must not drown the prior, which then holds
                # the directions the surfaces barely see (a pill bottle's turn about its axis)
                A = J.T @ (weights[:, None] * J) / weights.sum()
                b = -J.T @ (weights * r) / weights.sum()
                A[np.diag_indices(6)] += params.damping * np.maximum(np.diag(A), 1e-12)
                # the prior pulls the whole correction (log D, to first order) towards identity
                total = np.concatenate([_log_rotation(D[:3, :3]), D[:3, 3]])
                A[np.diag_indices(6)] += prior
                b -= prior * total
                xi = np.linalg.solve(A, b)
                D = D @ _exp(xi)
                if np.linalg.norm(xi[:3]) < 1e-6 and np.linalg.norm(xi[3:]) < 1e-7:
                    break
        return D

    # Each schedule from TF's poses; the registration's own score picks among them: wide gates
    # reach a larger error, narrow ones keep partial surfaces from matching the wrong part
    # (seen on renders: each alone lands in a wrong minimum on some captures where the other
    # does not), and a wrong minimum cuts through space the views saw empty.
    registration = RegistrationParams(voxel=voxel, object_size=object_size)
    scored = []
    for gates in params.schedules:
        D = solved(gates)
        poses = [None if T is None else invert_rigid(np.asarray(T, float) @ D) for T in T_world_camera]
        scored.append((agreement(views, poses, registration), D))
    as_told = agreement(views, [None if T is None else invert_rigid(np.asarray(T, float))
                                for T in T_world_camera], registration)
    score, D = max(scored, key=lambda sD: sD[0])
    after, count = cost(D, judge)
    turn, shift = rotation_angle_deg(D[:3, :3]), float(np.linalg.norm(D[:3, 3]))
    if count < params.min_correspondences:
        return refused(f"the views' surfaces meet in {count} points "
                       f"(< {params.min_correspondences})", before, count, (as_told, score))
    if turn > params.max_rotation_deg or shift > params.max_translation * object_size:
        return refused(f"a correction of {turn:.1f}° / {1000 * shift:.0f} mm is beyond the "
                       f"limits ({params.max_rotation_deg}°, "
                       f"{1000 * params.max_translation * object_size:.0f} mm)", before, count,
                       (as_told, score))
    pairs = len(keys) * (len(keys) - 1) / 2
    if not after < before or score < as_told + params.min_gain * pairs:
        return refused(f"it brings the surfaces no closer ({1000 * before:.2f} -> "
                       f"{1000 * after:.2f} mm RMS; agreement {as_told:.2f} -> {score:.2f})",
                       before, count, (as_told, score))
    return HandEyeCorrection(D, turn, shift, before, after, count, True, "", keys, as_told, score)


__all__ = ["DEFAULT_PARAMS", "HandEyeCorrection", "HandEyeParams", "estimate_hand_eye"]
