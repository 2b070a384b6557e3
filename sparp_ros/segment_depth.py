"""Objects on a support plane from depth alone: no detector, no mask topic (DESIGN.md §2).

Per frame (``segment_frame``):

1. back-project the valid depth (camera frame; world frame when the frame has ``T_world_camera``);
2. find the support plane by RANSAC (``geometry.support.ransac_plane``, seeded) and refit it to
   its inliers;
   with a world frame the plane must face world up (a wall is skipped, the next plane tried);
3. keep the points above the plane (higher than ``height_sigmas`` times the plane's own measured
   noise at their depth) inside the workspace box; group them into Euclidean clusters
   (``open3d`` ``cluster_dbscan`` on a subsample, labels spread back to every point), and join
   clusters nearer than ``merge_distance_m``;
4. project each cluster back into the image, close its holes (morphological closing), and let
   GrabCut settle by colour only the border pixels the depth cannot decide (no depth, or at table
   level: the object's base or the table); drop small ones.

Across frames (``segment_depth``), clusters become objects with one id for all keyframes: with
camera poses by their centroids on the table and the overlap of their surfaces in the world
(parts of one object a view saw apart are joined), without by what does not change with the
viewpoint (height above the plane, size, colour histogram).

Errors: ``NoDepthError`` / ``NoPlaneError`` (both ``DepthSegmentationError``, a
``SegmentationError``, i.e. a ``ValueError``) name the frame; no object above the plane is an
empty list, not an error. Objects must stand apart (more than ``merge_distance_m``): touching
objects are one. numpy, scipy, OpenCV and open3d; no ROS.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import cv2
import numpy as np
from scipy.ndimage import binary_fill_holes
from scipy.spatial import cKDTree

from .assignment import link_across_views
from .capture import Frame
from .geometry.support import fit_plane, ransac_plane
from .segmentation import SegmentationError

WORLD_UP = np.array([0.0, 0.0, 1.0])
UNMATCHED_COST = 1e6
GRABCUT_ITERATIONS = 3
POINTS_KEPT = 1500
NOISE_WINDOW_M = 0.04                  # heights within this of the plane measure its noise
NOISE_BINS = 8


class DepthSegmentationError(SegmentationError):
    """Depth segmentation cannot run on a frame; ``frame`` is its index."""

    def __init__(self, frame: int, message: str) -> None:
        super().__init__(f"frame {frame}: {message}")
        self.frame = frame


class NoDepthError(DepthSegmentationError):
    """The frame has no depth image, or too few valid depth pixels."""


class NoPlaneError(DepthSegmentationError):
    """No support plane was found in the frame's depth."""


@dataclass(frozen=True)
class DepthSegmentationParams:
    """Parameters (metres, pixels). Defaults suit a stereo RGB-D camera 0.4–1.5 m from a table."""

    max_depth_m: float = 3.0                 # farther depth is ignored
    min_valid_pixels: int = 500              # fewer valid depth pixels: NoDepthError
    plane_distance_m: float = 0.008          # RANSAC inlier distance
    plane_iterations: int = 500
    plane_sample_points: int = 30000         # RANSAC runs on at most this many points
    min_plane_fraction: float = 0.1          # plane inliers / valid points, else NoPlaneError
    max_plane_tilt_deg: float = 30.0         # with T_world_camera: plane normal vs world z
    max_plane_tries: int = 3                 # planes tried when one is too tilted
    min_height_m: float = 0.008              # points lower than this belong to the plane, and
    height_sigmas: float = 3.0               # lower than this many times the plane's measured
                                             # noise at their depth
    max_height_m: float = 1.0
    workspace_min: tuple[float, float, float] | None = None   # world frame with T_world_camera,
    workspace_max: tuple[float, float, float] | None = None   # else camera frame; None: no box
    cluster_eps_m: float = 0.012             # DBSCAN neighbourhood (grows with pixel spacing)
    cluster_min_points: int = 8              # DBSCAN core-point neighbours
    cluster_sample_points: int = 40000       # DBSCAN runs on at most this many points
    merge_distance_m: float = 0.03           # clusters nearer than this are one object
    min_object_pixels: int = 150             # smaller clusters (after closing) are dropped
    closing_px: int = 5                      # closing kernel diameter
    refine_px: int = 6                       # GrabCut decides table-level pixels this near a
                                             # mask (its base or the table); 0: no GrabCut
    refine_no_depth_px: int = 20             # ... and pixels without depth this near
    match_distance_m: float = 0.05           # with poses: centroids on the table this near
                                             # (plus half the object's size) may be one object
    overlap_radius_m: float = 0.015          # with poses: surfaces this near overlap ...
    min_overlap: float = 0.2                 # ... and objects whose surfaces overlap this much
                                             # (fraction of the smaller) are one
    seed: int = 0                            # RANSAC seed

    def __post_init__(self) -> None:
        for name in ("max_depth_m", "plane_distance_m", "min_height_m", "max_height_m",
                     "cluster_eps_m", "match_distance_m", "overlap_radius_m"):
            if not getattr(self, name) > 0:
                raise ValueError(f"DepthSegmentationParams.{name} must be > 0, "
                                 f"got {getattr(self, name)!r}")
        for name in ("height_sigmas", "merge_distance_m", "min_object_pixels", "refine_px",
                     "refine_no_depth_px"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"DepthSegmentationParams.{name} must be >= 0, "
                                 f"got {getattr(self, name)!r}")
        for name in ("min_plane_fraction", "min_overlap"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"DepthSegmentationParams.{name} must be in (0, 1), "
                                 f"got {getattr(self, name)!r}")
        if self.max_height_m <= self.min_height_m:
            raise ValueError(f"max_height_m ({self.max_height_m}) must exceed min_height_m "
                             f"({self.min_height_m})")
        if (self.workspace_min is None) != (self.workspace_max is None):
            raise ValueError("give workspace_min and workspace_max together")
        if self.workspace_min is not None and not np.all(np.less(self.workspace_min,
                                                                 self.workspace_max)):
            raise ValueError(f"workspace_min {self.workspace_min} must be below workspace_max "
                             f"{self.workspace_max} on every axis")


@dataclass
class Plane:
    """n·p + d = 0 in the frame's working frame (world or camera), n unit, towards the camera."""

    normal: np.ndarray
    offset: float
    inlier_fraction: float

    def height(self, points: np.ndarray) -> np.ndarray:
        return points @ self.normal + self.offset


@dataclass
class FrameObject:
    """One cluster in one frame."""

    mask: np.ndarray                         # HxW bool
    centroid: np.ndarray                     # 3D, working frame (world or camera)
    centroid_camera: np.ndarray
    height_m: float                          # top above the plane (95th percentile)
    extent_m: float                          # largest footprint side
    histogram: np.ndarray                    # hue-saturation histogram, sums to 1
    pixel_centroid: np.ndarray               # (u, v)
    points: np.ndarray                       # Nx3 working frame, a subsample (<= POINTS_KEPT)


@dataclass
class FrameSegmentation:
    plane: Plane
    objects: list[FrameObject]
    in_world: bool


@dataclass
class ObjectMasks:
    """One object across the keyframes. ``id`` is stable within one call: 0, 1, ... in the order
    of the first frame that sees the object, nearest that image's centre first."""

    id: int
    masks: list[np.ndarray | None]           # per frame HxW bool, None where not seen
    centroid_world: np.ndarray | None        # mean over the frames that see it; None without poses
    centroids_camera: list[np.ndarray | None] = field(default_factory=list)
    height_m: float = 0.0

    @property
    def frames_seen(self) -> list[int]:
        return [i for i, m in enumerate(self.masks) if m is not None]


# -- one frame ---------------------------------------------------------------------------------
def segment_frame(frame: Frame, params: DepthSegmentationParams = DepthSegmentationParams(),
                  index: int = 0) -> FrameSegmentation:
    """Support plane and object clusters of one frame (see the module docstring); ``index``
    names the frame in errors."""
    p = params
    # 1. Valid depth, back-projected.
    if frame.depth is None:
        raise NoDepthError(index, "no depth image (depth segmentation needs an RGB-D frame)")
    depth = frame.depth
    valid = (depth > 0) & (depth < p.max_depth_m)
    n_valid = int(valid.sum())
    if n_valid < p.min_valid_pixels:
        raise NoDepthError(index, f"{n_valid} valid depth pixels (< {p.min_valid_pixels})")
    rays = frame.camera.normalized_rays(frame.camera.pixel_grid().reshape(-1, 2))
    rows, cols = np.nonzero(valid)
    flat = rows * depth.shape[1] + cols
    cam_pts = rays[flat] * depth[rows, cols, None].astype(np.float64)
    in_world = frame.T_world_camera is not None
    if in_world:
        T = np.asarray(frame.T_world_camera, float)
        pts = cam_pts @ T[:3, :3].T + T[:3, 3]
        eye = T[:3, 3]
    else:
        pts, eye = cam_pts, np.zeros(3)
    # 2. Support plane.
    plane = _find_plane(pts, eye, in_world, p, index)
    h = plane.height(pts)
    # 3. Points above the plane, in the workspace, clustered.
    low_limit = _height_threshold(h, cam_pts[:, 2], p)
    above = (h > low_limit) & (h < p.max_height_m)
    low = (h >= -low_limit) & (h <= low_limit)
    if p.workspace_min is not None:
        above &= np.all((pts >= p.workspace_min) & (pts <= p.workspace_max), axis=1)
    labels = np.full(len(pts), -1, np.int64)
    idx_above = np.flatnonzero(above)
    if len(idx_above):
        f = float(frame.camera.K[0, 0])
        labels[idx_above] = _cluster(pts[idx_above], cam_pts[idx_above, 2], f, p)
        _merge_near(pts, labels, p.merge_distance_m)
    # 4. Each cluster's base, mask, and description.
    basis = _plane_basis(plane.normal)
    H, W = depth.shape
    label_img = np.full(H * W, -1, np.int64)
    label_img[flat] = labels
    label_img = label_img.reshape(H, W)
    table = np.zeros(H * W, bool)
    table[flat] = low & (labels < 0)
    table = table.reshape(H, W)
    hsv = cv2.cvtColor(frame.image, cv2.COLOR_RGB2HSV)
    objects = []
    for k in range(int(labels.max()) + 1):
        member = labels == k
        if not member.any():
            continue
        mask = _object_mask(label_img, k, table, valid, frame.image, p)
        if mask.sum() < p.min_object_pixels:
            continue
        P, hk = pts[member], h[member]
        c = P.mean(axis=0)
        foot = (P - np.outer(hk, plane.normal)) @ basis.T
        ys, xs = np.nonzero(mask)
        objects.append(FrameObject(
            mask=mask, centroid=c, centroid_camera=cam_pts[member].mean(axis=0),
            height_m=float(np.percentile(hk, 95)), extent_m=float(np.ptp(foot, axis=0).max()),
            histogram=_hs_histogram(hsv, mask), pixel_centroid=np.array([xs.mean(), ys.mean()]),
            points=P[:: max(1, len(P) // POINTS_KEPT)]))
    return FrameSegmentation(plane=plane, objects=objects, in_world=in_world)


def _find_plane(pts: np.ndarray, eye: np.ndarray, in_world: bool, p: DepthSegmentationParams,
                index: int) -> Plane:
    """The dominant plane (RANSAC on a subsample, least-squares refit on all its inliers),
    oriented towards the camera; in the world, the first of up to ``max_plane_tries`` planes
    within ``max_plane_tilt_deg`` of horizontal."""
    rng = np.random.default_rng(p.seed)
    stride = max(1, int(np.ceil(len(pts) / p.plane_sample_points)))
    sample = pts[::stride]
    remaining = np.ones(len(sample), bool)
    reasons = []
    for _ in range(max(1, p.max_plane_tries)):
        found = ransac_plane(sample[remaining], p.plane_distance_m, rng, p.plane_iterations)
        if found is None:
            break
        n, d = found
        inliers = np.abs(pts @ n + d) < p.plane_distance_m
        n, d = fit_plane(pts[inliers], n)
        inliers = np.abs(pts @ n + d) < p.plane_distance_m
        if n @ eye + d < 0:                       # the camera is on the positive side
            n, d = -n, -d
        fraction = float(inliers.mean())
        tilt = float(np.degrees(np.arccos(np.clip(n @ WORLD_UP, -1.0, 1.0))))
        if fraction < p.min_plane_fraction:
            reasons.append(f"best plane holds {100 * fraction:.0f} % of the depth "
                           f"(< {100 * p.min_plane_fraction:.0f} %)")
            break
        if in_world and tilt > p.max_plane_tilt_deg:
            reasons.append(f"a plane tilted {tilt:.0f}° from world up "
                           f"(> {p.max_plane_tilt_deg}°)")
            remaining &= np.abs(sample @ n + d) >= p.plane_distance_m
            continue
        return Plane(normal=n, offset=d, inlier_fraction=fraction)
    raise NoPlaneError(index, "no support plane found (" + "; ".join(reasons or ["no points"])
                       + "): depth segmentation needs the objects standing on a table or floor")


def _height_threshold(h: np.ndarray, z: np.ndarray, p: DepthSegmentationParams) -> np.ndarray:
    """Per point, the height below which it cannot be told from the plane: ``height_sigmas``
    times the plane's noise at its depth (robust spread of the heights near the plane in depth
    bins; stereo noise grows with z²), at least ``min_height_m``."""
    near = np.abs(h) < NOISE_WINDOW_M
    floor = np.full(len(h), p.min_height_m)
    if near.sum() < NOISE_BINS * 100:
        return floor
    zn, hn = z[near], h[near]
    edges = np.quantile(zn, np.linspace(0.0, 1.0, NOISE_BINS + 1))
    centres, sigmas = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (zn >= lo) & (zn <= hi)
        if sel.sum() < 50:
            continue
        centres.append(float(np.median(zn[sel])))
        sigmas.append(1.4826 * float(np.median(np.abs(hn[sel] - np.median(hn[sel])))))
    if not centres:
        return floor
    return np.maximum(floor, p.height_sigmas * np.interp(z, centres, sigmas))


def _plane_basis(n: np.ndarray) -> np.ndarray:
    """2x3: two orthonormal in-plane axes (the first along world/camera x where possible)."""
    a = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = a - (a @ n) * n
    e1 /= np.linalg.norm(e1)
    return np.stack([e1, np.cross(n, e1)])


def _cluster(points: np.ndarray, z_camera: np.ndarray, focal_px: float,
             p: DepthSegmentationParams) -> np.ndarray:
    """DBSCAN labels (-1 noise) for every point: clustered on a stride subsample, spread to the
    rest by the nearest clustered neighbour within eps. The neighbourhood grows to 3 sample
    spacings at the median depth, so a far or subsampled object still is one cluster."""
    import open3d as o3d
    stride = max(1, int(np.ceil(len(points) / p.cluster_sample_points)))
    sample = points[::stride]
    spacing = float(np.median(z_camera)) / focal_px * np.sqrt(stride)
    eps = max(p.cluster_eps_m, 3.0 * spacing)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(sample))
    sample_labels = np.asarray(cloud.cluster_dbscan(eps, p.cluster_min_points), np.int64)
    if stride == 1:
        return sample_labels
    labelled = sample_labels >= 0
    out = np.full(len(points), -1, np.int64)
    if labelled.any():
        dist, nearest = cKDTree(sample[labelled]).query(points, distance_upper_bound=eps)
        hit = np.isfinite(dist)
        out[hit] = sample_labels[labelled][nearest[hit]]
    return out


def _merge_near(pts: np.ndarray, labels: np.ndarray, distance: float,
                max_points: int = 3000) -> None:
    """Join clusters whose nearest points are closer than ``distance`` (parts of one object that
    dropouts or a dark band cut apart); relabels 0..n-1 in place."""
    n = int(labels.max()) + 1
    if n < 2:
        return
    members = [np.flatnonzero(labels == k) for k in range(n)]
    clouds = [pts[m[:: max(1, len(m) // max_points)]] for m in members]
    lo = np.array([c.min(axis=0) for c in clouds])
    hi = np.array([c.max(axis=0) for c in clouds])
    trees = [cKDTree(c) for c in clouds]
    parent = list(range(n))

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a in range(n):
        for b in range(a + 1, n):
            if np.any(lo[a] - hi[b] > distance) or np.any(lo[b] - hi[a] > distance):
                continue                      # boxes apart: cannot be near
            small, big = (a, b) if len(clouds[a]) < len(clouds[b]) else (b, a)
            d, _ = trees[big].query(clouds[small], distance_upper_bound=distance)
            if np.isfinite(d).any():
                parent[root(a)] = root(b)
    roots = sorted({root(a) for a in range(n)})
    remap = {r: i for i, r in enumerate(roots)}
    for k in range(n):
        labels[members[k]] = remap[root(k)]


def _object_mask(label_img: np.ndarray, k: int, table: np.ndarray, valid: np.ndarray,
                 image: np.ndarray, p: DepthSegmentationParams) -> np.ndarray:
    """Cluster ``k``'s pixels, closed, then (``refine_px``) settled by colour where the depth
    cannot decide: pixels near the plane within ``refine_px`` of the mask (its base or the
    table), pixels without depth within ``refine_no_depth_px``, and the holes the mask encloses
    (a plate's middle, a mug's handle) go to GrabCut, initialised with the cluster as sure
    foreground and the table and other objects as sure background. Depth-decided pixels stay."""
    own = label_img == k
    others = (label_img >= 0) & ~own
    mask = own
    if p.closing_px > 1:
        mask = cv2.morphologyEx(own.astype(np.uint8), cv2.MORPH_CLOSE, _disk(p.closing_px // 2)) > 0
        mask &= ~table & ~others
    if p.refine_px <= 0 or own.sum() < p.min_object_pixels:
        return mask
    near = (cv2.dilate(mask.astype(np.uint8), _disk(p.refine_px)) > 0) & ~mask
    far = (cv2.dilate(mask.astype(np.uint8), _disk(max(p.refine_no_depth_px, p.refine_px))) > 0)
    ring = (near & table) | (far & ~mask & ~valid)
    holes = binary_fill_holes(mask) & ~mask & ~others     # e.g. a plate's low middle
    ring &= ~holes
    if not (ring.any() or holes.any()):
        return mask
    ys, xs = np.nonzero(mask | ring | holes)
    pad = 2 * p.refine_px
    y0, y1 = max(ys.min() - pad, 0), min(ys.max() + pad + 1, mask.shape[0])
    x0, x1 = max(xs.min() - pad, 0), min(xs.max() + pad + 1, mask.shape[1])
    sl = np.s_[y0:y1, x0:x1]
    gc = np.full((y1 - y0, x1 - x0), cv2.GC_BGD, np.uint8)
    gc[ring[sl]] = cv2.GC_PR_BGD
    gc[(mask & ~own)[sl] | holes[sl]] = cv2.GC_PR_FGD
    gc[own[sl]] = cv2.GC_FGD
    gc[others[sl]] = cv2.GC_BGD
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(np.ascontiguousarray(image[sl][..., ::-1]), gc, None, bgd, fgd,
                    GRABCUT_ITERATIONS, cv2.GC_INIT_WITH_MASK)
    except cv2.error:                         # degenerate colour models: keep the depth's mask
        return mask
    out = mask.copy()
    out[sl] = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
    return out


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _hs_histogram(hsv: np.ndarray, mask: np.ndarray, bins: tuple[int, int] = (18, 8)) -> np.ndarray:
    hist = cv2.calcHist([hsv], [0, 1], mask.astype(np.uint8), list(bins), [0, 180, 0, 256])
    return (hist / max(float(hist.sum()), 1.0)).astype(np.float32)


# -- across frames -----------------------------------------------------------------------------
def segment_depth(frames: Sequence[Frame],
                  params: DepthSegmentationParams = DepthSegmentationParams()) -> list[ObjectMasks]:
    """The objects standing on the support plane, each with a mask per frame (None where not
    seen) and one id across the frames. [] when nothing stands on the plane. Raises
    ``NoDepthError`` / ``NoPlaneError`` naming the first frame without depth or plane.

    Identity: frame by frame, clusters are matched (Hungarian) to the objects found so far.
    When every frame has ``T_world_camera``: by the distance of their centroids on the table in
    the world (within ``match_distance_m`` plus half the object's size) or the overlap of their
    surfaces, and objects whose surfaces overlap are joined at the end. Otherwise by height above
    the plane, size and colour histogram (objects that look alike can swap ids).
    """
    if not frames:
        raise ValueError("frames is empty: depth segmentation needs at least one frame")
    segs = [segment_frame(f, params, i) for i, f in enumerate(frames)]
    posed = all(s.in_world for s in segs)
    # 1. Frame by frame, clusters join the objects found so far (Hungarian) or start new ones.
    tracks: list[dict[int, FrameObject]] = link_across_views(
        [sorted(seg.objects, key=lambda o: _centre_distance(o, f)) for seg, f in zip(segs, frames)],
        lambda t, o: _match_cost(t, o, posed, params), UNMATCHED_COST)
    # 2. With poses, objects whose surfaces overlap in the world are one (the parts of an object
    #    that one view saw apart, e.g. a handle hidden at its joint).
    if posed:
        tracks = _merge_overlapping(tracks, params)
    out = []
    for k, t in enumerate(tracks):
        cams = [t[i].centroid_camera if i in t else None for i in range(len(frames))]
        out.append(ObjectMasks(
            id=k, masks=[t[i].mask if i in t else None for i in range(len(frames))],
            centroid_world=np.mean([o.centroid for o in t.values()], axis=0) if posed else None,
            centroids_camera=cams, height_m=float(np.median([o.height_m for o in t.values()]))))
    return out


def _centre_distance(o: FrameObject, frame: Frame) -> float:
    c = np.array([(frame.camera.width - 1) / 2.0, (frame.camera.height - 1) / 2.0])
    return float(np.linalg.norm(o.pixel_centroid - c))


def _overlap(a: np.ndarray, b: np.ndarray, radius: float) -> float:
    """Fraction of the smaller point set lying within ``radius`` of the other."""
    small, big = (a, b) if len(a) <= len(b) else (b, a)
    if len(small) == 0:
        return 0.0
    d, _ = cKDTree(big).query(small, distance_upper_bound=radius)
    return float(np.isfinite(d).mean())


def _match_cost(track: dict[int, FrameObject], o: FrameObject, posed: bool,
                p: DepthSegmentationParams) -> float:
    """Cost of giving cluster ``o`` the track's id; UNMATCHED_COST when it cannot be the same."""
    members = list(track.values())
    if posed:
        # In the world: the centroids' distance on the (level) table, less where surfaces overlap.
        centre = np.mean([m.centroid for m in members], axis=0)
        dist = float(np.linalg.norm((centre - o.centroid)[:2]))
        size = max(max(m.extent_m for m in members), o.extent_m)
        overlap = _overlap(np.concatenate([m.points for m in members]), o.points,
                           p.overlap_radius_m)
        if dist < p.match_distance_m + 0.5 * size or overlap >= p.min_overlap:
            return dist * (1.0 - overlap)
        return UNMATCHED_COST
    # Without poses: what the viewpoint does not change (much).
    height = float(np.median([m.height_m for m in members]))
    size = float(np.median([m.extent_m for m in members]))
    colour = min(cv2.compareHist(m.histogram, o.histogram, cv2.HISTCMP_BHATTACHARYYA)
                 for m in members)
    dh = abs(height - o.height_m) / max(height, o.height_m, 1e-3)
    ds = abs(size - o.extent_m) / max(size, o.extent_m, 1e-3)
    cost = colour + dh + 0.5 * ds
    return cost if colour < 0.7 and dh < 0.5 else UNMATCHED_COST


def _merge_overlapping(tracks: list[dict[int, FrameObject]],
                       p: DepthSegmentationParams) -> list[dict[int, FrameObject]]:
    """Join tracks whose world surfaces overlap by ``min_overlap``; the order of first
    appearance is kept. In a frame where both were seen their masks are united."""
    merged: list[dict[int, FrameObject]] = []
    for t in tracks:
        pts = np.concatenate([m.points for m in t.values()])
        for m in merged:
            if _overlap(np.concatenate([o.points for o in m.values()]), pts,
                        p.overlap_radius_m) >= p.min_overlap:
                for i, o in t.items():
                    m[i] = _union(m[i], o) if i in m else o
                break
        else:
            merged.append(dict(t))
    return merged


def _union(a: FrameObject, b: FrameObject) -> FrameObject:
    """Two clusters of one frame as one object."""
    wa, wb = len(a.points), len(b.points)
    w = wa + wb
    return replace(
        a, mask=a.mask | b.mask, centroid=(wa * a.centroid + wb * b.centroid) / w,
        centroid_camera=(wa * a.centroid_camera + wb * b.centroid_camera) / w,
        height_m=max(a.height_m, b.height_m), extent_m=max(a.extent_m, b.extent_m),
        histogram=(wa * a.histogram + wb * b.histogram) / w,
        pixel_centroid=(wa * a.pixel_centroid + wb * b.pixel_centroid) / w,
        points=np.concatenate([a.points, b.points]))


def centre_object(objects: Sequence[ObjectMasks], frames: Sequence[Frame],
                  view: int = 0) -> ObjectMasks | None:
    """The object seen in ``view`` whose mask is centred nearest that image's centre (None when
    the view sees none): the one to reconstruct when nobody said which."""
    f = frames[view]
    c = np.array([(f.camera.width - 1) / 2.0, (f.camera.height - 1) / 2.0])
    best, best_d = None, np.inf
    for o in objects:
        m = o.masks[view]
        if m is None or not m.any():
            continue
        ys, xs = np.nonzero(m)
        d = float(np.hypot(xs.mean() - c[0], ys.mean() - c[1]))
        if d < best_d:
            best, best_d = o, d
    return best


def frames_masked_from_depth(frames: Sequence[Frame],
                             params: DepthSegmentationParams = DepthSegmentationParams()
                             ) -> tuple[list[Frame], list[int], ObjectMasks, list[ObjectMasks]]:
    """Keyframes without masks, masked by depth segmentation for the object to reconstruct.

    The object is the one nearest the first view's image centre (``centre_object``); the frames
    that do not see it are left out (the first view always sees it). Returns the masked frames,
    their indices in ``frames``, the chosen object and every object found. Raises
    ``DepthSegmentationError`` (no depth, no plane, or no object in the first view).
    """
    objects = segment_depth(frames, params)
    chosen = centre_object(objects, frames, 0)
    if chosen is None:
        raise DepthSegmentationError(0, f"no object stands on the support plane in view 0 "
                                        f"({len(objects)} found in the other views)")
    kept = chosen.frames_seen
    return [replace(frames[i], mask=chosen.masks[i]) for i in kept], kept, chosen, objects


def mask_from_depth_if_needed(frames: Sequence[Frame], log=None, what: str = "capture"
                              ) -> tuple[list[Frame], dict | None]:
    """Keyframes as the pipeline needs them when nobody gave a mask: with no mask in any frame and
    depth in every frame, the object nearest the first image's centre, segmented from depth
    (:func:`frames_masked_from_depth`), in the frames that see it, and a record of what was done
    (``source``, ``object``, ``objects_found``, ``views``: the kept indices). Otherwise (masks
    given, or a frame without depth: the pipeline then refuses with its own message) the frames
    as they are and None. One rule for the CLI and the node (``what`` names the frames' source in
    the log). Raises ``DepthSegmentationError``."""
    if any(f.mask is not None for f in frames) or any(f.depth is None for f in frames):
        return list(frames), None
    import logging
    log = log or logging.getLogger("sparp_ros.segment_depth")
    masked, kept, chosen, objects = frames_masked_from_depth(frames)
    log.info("no masks in the %s: %d object(s) on the support plane from depth; reconstructing "
             "object %d (nearest the centre of view 0, %d px there)", what, len(objects), chosen.id,
             int(chosen.masks[0].sum()))
    if len(kept) < len(frames):
        log.warning("views %s do not see object %d and are left out",
                    [i for i in range(len(frames)) if i not in kept], chosen.id)
    return masked, {"source": "depth", "object": chosen.id, "objects_found": len(objects),
                    "views": list(kept)}

