"""The object's own print, matched between two RGB-D views: image features lifted to 3-D by the
depth under them, and the rigid placement most of the matches agree on.

Why: a label, a box's print or a painted figure is fixed on the object, and where two views see
the same print, it measures their relative pose in every degree of freedom, including the ones
the object's surfaces leave open: the turn of a labelled pill bottle about its axis, the half
turn of a printed box whose two halves have the same shape. The surfaces' registration
(``registration.register_pair``) starts ICP from the model's poses; the print adds a start that
does not depend on them, and says which candidates it confirms (``match_support``).

A print may repeat on an object (a mug's pattern on both sides, a lunch box's front and back):
the matches then agree on a wrong placement just as firmly. So the print never decides alone:
a placement it confirms must still keep its surface out of the space the other camera saw
empty (``registration``'s free-space test).

Features: OpenCV's SIFT on the grey image within the object's mask (eroded, so that no
keypoint's descriptor is mostly background), cropped to the mask's box (a fifth of the full
frame's time). A keypoint keeps the measured depth of its pixel; keypoints without depth are
dropped. Matches: nearest neighbours both ways, each passing Lowe's ratio test. Placement: a
seeded RANSAC over triples of matches (Kabsch), refined on its inliers.

ROS-free; numpy and OpenCV. Frames: camera frames in metres.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..camera import PinholeCamera

MAX_FEATURES = 1500
"""SIFT keypoints per view at most (the strongest): a label seen at 640×480 gives 100–300."""
CONTRAST_THRESHOLD = 0.02
"""SIFT's contrast threshold, half OpenCV's default: printed labels under soft light are faint."""
MASK_EROSION_PX = 3
"""Keypoints this near the mask's edge are not the object's (their patch is half background)."""
RATIO = 0.8
"""Lowe's ratio test: a match's nearest descriptor must be this much nearer than the second."""
RANSAC_HYPOTHESES = 400
"""Triples tried; with half the matches right, 400 triples miss the placement with a chance of
(1 − 0.5³)⁴⁰⁰ ≈ 1e-23."""
RANSAC_SEED = 0
"""Fixed: the same capture gives the same placement every time."""


@dataclass(frozen=True)
class ViewFeatures:
    """One view's features: each keypoint's point in the camera frame (metres, from the measured
    depth) and its SIFT descriptor."""

    points: np.ndarray        # Nx3
    descriptors: np.ndarray   # Nx128 float32

    def __len__(self) -> int:
        return len(self.points)


def view_features(image: np.ndarray, depth: np.ndarray, mask: np.ndarray,
                  camera: PinholeCamera) -> ViewFeatures | None:
    """The object's features in one RGB image (HxWx3 uint8) with its depth (HxW metres, 0 =
    unknown) and mask; None when the mask is empty or too few keypoints have depth."""
    if mask is None or not mask.any():
        return None
    inner = cv2.erode(mask.astype(np.uint8), np.ones((2 * MASK_EROSION_PX + 1,) * 2, np.uint8))
    if not inner.any():
        return None
    ys, xs = np.nonzero(inner)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    grey = cv2.cvtColor(np.ascontiguousarray(image[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
    sift = cv2.SIFT_create(nfeatures=MAX_FEATURES, contrastThreshold=CONTRAST_THRESHOLD)
    keypoints, descriptors = sift.detectAndCompute(grey, np.ascontiguousarray(inner[y0:y1, x0:x1]))
    if descriptors is None or len(keypoints) < 3:
        return None
    uv = np.array([k.pt for k in keypoints], np.float64) + (x0, y0)
    col = np.clip(np.round(uv[:, 0]).astype(int), 0, depth.shape[1] - 1)
    row = np.clip(np.round(uv[:, 1]).astype(int), 0, depth.shape[0] - 1)
    z = depth[row, col].astype(np.float64)
    keep = np.isfinite(z) & (z > 0)
    if keep.sum() < 3:
        return None
    K = camera.K
    points = np.stack([(uv[keep, 0] - K[0, 2]) / K[0, 0] * z[keep],
                       (uv[keep, 1] - K[1, 2]) / K[1, 1] * z[keep], z[keep]], axis=1)
    return ViewFeatures(points, descriptors[keep].astype(np.float32))


def match_features(a: ViewFeatures, b: ViewFeatures, ratio: float = RATIO) -> np.ndarray:
    """Mx2 indices (into ``a``, into ``b``) of the mutual nearest neighbours that pass the ratio
    test both ways."""
    if len(a) < 2 or len(b) < 2:
        return np.zeros((0, 2), int)
    matcher = cv2.BFMatcher(cv2.NORM_L2)

    def one_way(x: np.ndarray, y: np.ndarray) -> dict[int, int]:
        return {m[0].queryIdx: m[0].trainIdx for m in matcher.knnMatch(x, y, k=2)
                if len(m) == 2 and m[0].distance < ratio * m[1].distance}

    ab = one_way(a.descriptors, b.descriptors)
    ba = one_way(b.descriptors, a.descriptors)
    pairs = [(p, q) for p, q in ab.items() if ba.get(q) == p]
    return np.array(sorted(pairs), int).reshape(-1, 2)


def _kabsch(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """...x4x4 rigid transforms moving ``source`` (...xNx3) onto ``target`` by least squares."""
    cs, ct = source.mean(axis=-2, keepdims=True), target.mean(axis=-2, keepdims=True)
    H = np.swapaxes(source - cs, -1, -2) @ (target - ct)
    U, _, Vt = np.linalg.svd(H)
    d = np.sign(np.linalg.det(np.swapaxes(Vt, -1, -2) @ np.swapaxes(U, -1, -2)))
    D = np.zeros(H.shape)
    D[..., 0, 0] = 1.0
    D[..., 1, 1] = 1.0
    D[..., 2, 2] = d
    R = np.swapaxes(Vt, -1, -2) @ D @ np.swapaxes(U, -1, -2)
    T = np.zeros(H.shape[:-2] + (4, 4))
    T[..., :3, :3] = R
    T[..., :3, 3] = ct[..., 0, :] - (R @ cs[..., 0, :, None])[..., 0]
    T[..., 3, 3] = 1.0
    return T


def match_support(a: ViewFeatures, b: ViewFeatures, matches: np.ndarray, T_a_b: np.ndarray,
                  gate: float) -> int:
    """How many ``matches`` (indices into ``a``, ``b``) agree with the placement ``T_a_b`` (b's
    camera frame into a's): b's point moved lands within ``gate`` metres of a's."""
    if len(matches) == 0:
        return 0
    moved = b.points[matches[:, 1]] @ T_a_b[:3, :3].T + T_a_b[:3, 3]
    return int((np.linalg.norm(moved - a.points[matches[:, 0]], axis=1) < gate).sum())


def matched_placement(a: ViewFeatures, b: ViewFeatures, matches: np.ndarray, gate: float,
                      min_inliers: int) -> tuple[np.ndarray, int] | None:
    """The placement ``T_a_b`` (b's camera frame into a's) that most ``matches`` agree with
    (within ``gate`` metres), and how many do; None when fewer than ``min_inliers`` (at least 3)
    agree on any."""
    n = len(matches)
    if n < max(3, min_inliers):
        return None
    target, source = a.points[matches[:, 0]], b.points[matches[:, 1]]
    rng = np.random.default_rng(RANSAC_SEED)
    triples = np.stack([rng.choice(n, 3, replace=False) for _ in range(RANSAC_HYPOTHESES)])
    T = _kabsch(source[triples], target[triples])                      # Kx4x4
    moved = np.einsum("kij,nj->kni", T[:, :3, :3], source) + T[:, None, :3, 3]
    counts = (np.linalg.norm(moved - target[None], axis=2) < gate).sum(axis=1)
    best = T[int(np.argmax(counts))]
    for _ in range(2):                 # refine on the inliers (more points, less noise), recount
        moved = source @ best[:3, :3].T + best[:3, 3]
        inliers = np.linalg.norm(moved - target, axis=1) < gate
        if inliers.sum() < 3:
            return None
        best = _kabsch(source[inliers], target[inliers])
    support = match_support(a, b, matches, best, gate)
    return (best, support) if support >= max(3, min_inliers) else None
