"""Relative poses between RGB-D views from their measured surfaces: robust ICP between every pair
that overlaps, made consistent by a pose graph (open3d's registration pipelines).

Why: with depth in every view, the surfaces themselves say how the views fit together, to a
fraction of a degree where they overlap; the model's poses (NOCS + azimuth search, ~15° median)
only have to bring ICP into its basin. Each view's pose starts from the model's, every pair with
enough overlap is registered by point-to-plane ICP with a robust (Tukey) loss, coarse to fine,
from a few starts turned about the object's up axis (the azimuth is what the model gets wrong
most), and open3d's ``global_optimization`` makes the pairwise results one set of poses
(Levenberg–Marquardt, edges that disagree pruned). A pair's candidates are judged by shape
(overlap minus free-space violations) and by colour (the chromaticity of the overlap): shapes
alone cannot tell a box from the box turned 180°, its print can. The winner is trusted only when
its overlap, violations and RMSE pass, and when the two images agree where the surfaces meet
(``image_agreement``: the grey values of one view's surface against the other's image). Where
both views see the table around the object (``table.py``), the tables judge first: their own
best placements start ICP too, and a placement whose tables agree wins (README "The table
measures the turn"). Where both views see the object's print (``features.py``), the placement
most of its matches agree on starts ICP too, and a placement the print confirms (and the free
space and images do not refute) wins next (README "The print measures the turn"). The chain of
trusted pairs admits a view only where it keeps out of the space the views already chained saw
empty (``_keeps_free_space``). A view that no trusted pair
connects to the reference is reported unregistered, never forced into the pose graph;
``place_unregistered`` then tries it against all registered views together, and it keeps the
model's pose unless its surface fits there without cutting through space they saw empty.
Where the objects' shading shows the light (``lighting.py``), ``turn_to_light`` turns a view
whose light disagrees with the others' about up to it (README "The light measures the turn").

ROS-free; numpy + open3d. Poses are ``T_camera_object`` (object frame -> camera), metres.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

from ..camera import PinholeCamera
from ..conventions import invert_rigid, rot_z, rotation_angle_deg, rotation_between, transform_points
from .features import ViewFeatures, match_features, match_support, matched_placement
from .lighting import LightEstimate, angle_deg, turn_about_up
from .support import SupportPlane
from .table import TableView, table_agreement, table_search

MIN_POINTS = 50
"""A view with fewer usable depth points is not registered."""
VIOLATION_WEIGHT = 3.0
"""How much a share of points in seen-empty space costs against the same share of overlap."""
MOVE_MARGIN = 0.08
"""ICP's result must agree better than its start by this (fitness minus violations) to replace it:
on partial surfaces ICP gains a few points of overlap by sliding even from the true pose (a
rendered pair from exact poses slid 4° for +0.05 of overlap), while from a pose the model got
wrong by 10° or more it gains far more."""
PAIR_WORKERS = 2
"""Threads that register pairs at once (the robots and CI this runs on have 2 or more cores)."""
HYPOTHESIS_TIE_BREAK = 0.02
"""A pair's later hypotheses must agree better by this (fitness minus violations) to win."""
GREY_BLUR_PX = 2.0
"""Blur (Gaussian sigma, pixels) of a view's grey image before images are compared: a placement
a pixel or two off still compares the same texture."""
MIN_IMAGE_POINTS = 30
"""Fewer points seen by both views than this say nothing about the images."""
ICP_RELATIVE_CHANGE = 1e-4
"""ICP stops when an iteration changes its fitness and inlier RMSE by less than this share
(open3d's default, 1e-6, lets the robust loss run most of its iterations for sub-micrometre
steps). ICP is most of the RGB-D stage's time; on the six 25-capture sets of README "Measured
surfaces" (2 threads) 1e-4 took 14 % off a capture (1.48–1.94 s → 1.24–1.80 s) with Acc@15 over
their 900 pairs 0.641 → 0.646 (seed 0, the bar's: 0.733 → 0.693; the photograph-like seed 100:
0.467 → 0.533) and F@5 % 0.873 → 0.877."""

NOISE_SIGMAS = 2.0
"""A point is in another view's free space only when it lies in front of that view's surface by
more than the free-space tolerance and more than this many standard deviations of the two views'
depth noise together (``depth_noise``). 2: on the seed-0 captures (a first, median-based noise
estimate) 3 gave Acc@15 0.71 and a 5.0° median, 2 gave 0.72 and 3.9° (README "Measured surfaces")."""


@dataclass(frozen=True)
class RegistrationParams:
    """Registration settings, in units of the fusion voxel or the object's size (why: one set of
    numbers for a cup and a chair)."""

    voxel: float                          # metres, the downsampling voxel
    object_size: float                    # metres, the object's diagonal (its scale)
    coarse_distance: float = 0.08         # ICP correspondence gate, coarse pass, × object size
    fine_distance: float = 0.02           # ... fine pass
    iterations: int = 30                  # per pass
    min_fitness: float = 0.3              # a pair with less overlap (of the smaller cloud) is untrusted
    max_rmse: float = 0.015               # ... or with a larger inlier RMSE, × object size
    azimuth_starts_deg: tuple[float, ...] = (0.0, -20.0, 20.0)  # ICP starts about the up axis
    max_correction_deg: float = 45.0      # a pair moved further than this from its start is untrusted
    free_space_tolerance: float = 0.02    # × object size: a point this far in front of the other
                                          # view's measured surface is one that view saw through
    max_violation: float = 0.16           # a pair whose points violate the other view's free space
                                          # (or silhouette) more often than this is untrusted
    edge_prune_threshold: float = 0.25    # pose graph: line-process weight below which edges drop
    colour_weight: float = 5.0            # a candidate's score loses this × the colour difference
                                          # of the overlapping surfaces (mean L1 of chromaticity)
    min_image_agreement: float = 0.5      # a pair whose images agree less than this where its
                                          # surfaces meet (image_agreement) is untrusted; 0: off
    min_table_agreement: float = 0.5      # a candidate whose views' tables agree at least this
                                          # much (table.table_agreement) is the table's: it wins
                                          # over candidates the tables do not confirm; 0: off
    min_matches: int = 15                 # a candidate that at least this many of the object's
                                          # print matches agree with (features.py) is the
                                          # print's: it wins over those the print does not
                                          # confirm where its free space allows; 0: off

    def __post_init__(self) -> None:
        for name in ("voxel", "object_size", "coarse_distance", "fine_distance", "max_rmse"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"RegistrationParams.{name} must be positive, got {value}")
        if not 0 <= self.min_fitness <= 1:
            raise ValueError(f"RegistrationParams.min_fitness must be in [0, 1], got {self.min_fitness}")
        if self.iterations < 1:
            raise ValueError(f"RegistrationParams.iterations must be >= 1, got {self.iterations}")
        if not (np.isfinite(self.colour_weight) and self.colour_weight >= 0):
            raise ValueError(f"RegistrationParams.colour_weight must be >= 0, got {self.colour_weight}")
        if not 0 <= self.min_image_agreement <= 1:
            raise ValueError("RegistrationParams.min_image_agreement must be in [0, 1], got "
                             f"{self.min_image_agreement}")
        if not 0 <= self.min_table_agreement <= 1:
            raise ValueError("RegistrationParams.min_table_agreement must be in [0, 1], got "
                             f"{self.min_table_agreement}")
        if self.min_matches < 0:
            raise ValueError(f"RegistrationParams.min_matches must be >= 0, got {self.min_matches}")


@dataclass
class PairResult:
    """ICP between views ``i`` (target) and ``j`` (source): ``T_ci_cj`` maps j's points into i."""

    i: int
    j: int
    T_ci_cj: np.ndarray
    fitness: float
    rmse: float
    violation: float
    trusted: bool
    message: str = ""
    colour: float = 0.0            # colour_difference at T_ci_cj (0 when not weighed)
    image: float | None = None     # image_agreement at T_ci_cj (None: not measured)
    shape_trusted: bool = False    # the surfaces' tests pass (the images may still refuse it)
    table: float | None = None     # table_agreement at T_ci_cj (None: no tables, or no overlap)
    table_confirmed: bool = False  # the tables agree (min_table_agreement): the table chose it
    matches: int | None = None     # print matches that agree with T_ci_cj (None: not matched)
    match_confirmed: bool = False  # enough of them (min_matches): the object's print chose it

    def to_dict(self) -> dict:
        return {"views": [self.i, self.j], "fitness": self.fitness, "rmse_m": self.rmse,
                "violation": self.violation, "colour_difference": self.colour,
                "image_agreement": self.image, "table_agreement": self.table,
                "table_confirmed": self.table_confirmed, "matches": self.matches,
                "match_confirmed": self.match_confirmed, "trusted": self.trusted,
                "shape_trusted": self.shape_trusted, "message": self.message}


@dataclass
class Registration:
    """Registered poses (``None`` entries keep the caller's), which views were registered, the
    pairs behind them and one score (mean fitness of the trusted pairs at the final poses,
    minus their RMSE relative to the gate: higher is better)."""

    T_camera_object: list[np.ndarray | None]
    registered: list[bool]
    pairs: list[PairResult] = field(default_factory=list)
    score: float = -np.inf
    message: str = ""

    def to_dict(self) -> dict:
        return {"registered": self.registered, "score": self.score, "message": self.message,
                "pairs": [p.to_dict() for p in self.pairs]}


@dataclass
class RegistrationView:
    """What registration needs of one view: its usable depth as camera-frame points (metres), and
    the depth image, mask and camera that say where the view saw empty space."""

    points: np.ndarray             # Nx3 camera frame
    depth: np.ndarray              # HxW metres, 0 = unknown
    mask: np.ndarray               # HxW bool
    camera: PinholeCamera
    chromaticity: np.ndarray | None = None   # Nx3, each point's r, g, b / (r + g + b)
    noise_m: float = 0.0           # the depth's noise (one standard deviation, metres): depth_noise
    support: SupportPlane | None = None      # the plane the object stands on (support.py), or None
    grey: np.ndarray | None = None # HxW float32: the view's grey image blurred within its mask
                                   # (grey_image), for image_agreement; None: images not compared
    table: TableView | None = None # the support plane around the object from above (table.py),
                                   # for table_agreement; None: no table seen
    light: LightEstimate | None = None  # the light its object's shading shows (lighting.py),
                                   # for turn_to_light; None: not measured
    features: ViewFeatures | None = None  # its object's print: SIFT keypoints lifted by the
                                   # depth (features.py), for register_pair; None: not matched
    _silhouettes: dict = field(default_factory=dict, repr=False, compare=False)

    def silhouette(self, margin_px: int) -> np.ndarray:
        """The mask dilated by ``margin_px`` (made once per margin: the free-space test asks for
        it for every candidate placement)."""
        if margin_px not in self._silhouettes:
            import cv2
            kernel = np.ones((2 * margin_px + 1,) * 2, np.uint8)
            self._silhouettes[margin_px] = cv2.dilate(self.mask.astype(np.uint8), kernel) > 0
        return self._silhouettes[margin_px]


DARK = 90.0
"""Colours with r + g + b below this (of 765) have no reliable chromaticity (sensor noise is
most of it): they are left out of the colour comparison."""


def chromaticity(rgb: np.ndarray) -> np.ndarray:
    """Nx3 colours (0–255) as r, g, b over their sum: the colour without its brightness, which
    changes with the angle a view sees a surface at while its chromaticity does not. Dark
    colours (``DARK``) are NaN."""
    c = np.asarray(rgb, np.float64)
    total = c.sum(axis=1, keepdims=True)
    out = c / np.maximum(total, 1.0)
    out[total[:, 0] < DARK] = np.nan
    return out


def _cloud(points: np.ndarray, voxel: float, colours: np.ndarray | None = None):
    """The points downsampled to ``voxel`` with normals facing the camera; ``colours`` (Nx3, the
    points' chromaticity) are averaged per voxel with them."""
    import open3d as o3d
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, np.float64)))
    if colours is not None:
        pcd.colors = o3d.utility.Vector3dVector(np.asarray(colours, np.float64))
    pcd = pcd.voxel_down_sample(voxel)
    pcd.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=4 * voxel, max_nn=30))
    pcd.orient_normals_towards_camera_location(np.zeros(3))     # camera frame: the camera at 0
    return pcd


def _icp(source, target, init: np.ndarray, distance: float, iterations: int):
    import open3d as o3d
    reg = o3d.pipelines.registration
    loss = reg.TukeyLoss(k=distance)
    return reg.registration_icp(
        source, target, distance, init, reg.TransformationEstimationPointToPlane(loss),
        reg.ICPConvergenceCriteria(relative_fitness=ICP_RELATIVE_CHANGE,
                                   relative_rmse=ICP_RELATIVE_CHANGE, max_iteration=iterations))


def _turn_about_up(T_ci_cj: np.ndarray, T_ci_o: np.ndarray, angle_deg: float) -> np.ndarray:
    """``T_ci_cj`` with view j turned by ``angle_deg`` about the object's up axis (through the
    object's origin): the start ICP gets when the model's azimuth between the views is off."""
    if angle_deg == 0.0:
        return T_ci_cj
    turn = np.eye(4)
    turn[:3, :3] = rot_z(np.radians(angle_deg))
    return T_ci_o @ turn @ invert_rigid(T_ci_o) @ T_ci_cj


def snap_to_support(T_ci_cj: np.ndarray, view_i: RegistrationView, view_j: RegistrationView,
                    centre_in_i: np.ndarray) -> np.ndarray:
    """``T_ci_cj`` made to agree with both views' support planes when both have one: turned about
    ``centre_in_i`` (the object's centre) by the smallest rotation that maps j's up onto i's, then
    moved along i's up until j's plane lies on i's. What the tables measured (tilt and height,
    three of the six degrees of freedom) is then exact; ICP and the model keep only the heading
    and the position along the table. Unchanged without two planes."""
    a, b = view_i.support, view_j.support
    if a is None or b is None:
        return T_ci_cj
    T = np.asarray(T_ci_cj, float).copy()
    Q = rotation_between(T[:3, :3] @ b.normal, a.normal)
    c = np.asarray(centre_in_i, float)
    T[:3, :3] = Q @ T[:3, :3]
    T[:3, 3] = Q @ (T[:3, 3] - c) + c
    on_j = -b.offset * b.normal                       # j's plane point nearest to j's camera
    T[:3, 3] -= a.height(T[:3, :3] @ on_j + T[:3, 3]) * a.normal
    return T


def violation_rate(points_in_i: np.ndarray, view_i: RegistrationView, tolerance: float,
                   silhouette_margin_px: int = 2) -> float:
    """Share of points (view i's camera frame) that view i would have seen where it saw nothing:
    in its image but outside its silhouette (dilated by the margin), or more than ``tolerance`` in
    front of its measured surface. Points behind its surface (occluded) or outside its image are
    free. 0 when no point falls in the image. Why: a partial surface slides along another with a
    good ICP fitness; it cannot slide into space the other camera saw through."""
    z = points_in_i[:, 2]
    front = z > 1e-6
    if not front.any():
        return 0.0
    uv = view_i.camera.project(points_in_i[front])
    u, v = np.rint(uv[:, 0]).astype(int), np.rint(uv[:, 1]).astype(int)
    H, W = view_i.depth.shape
    inside = (u >= 0) & (u < W) & (v >= 0) & (v < H)
    if not inside.any():
        return 0.0
    silhouette = view_i.silhouette(silhouette_margin_px)
    u, v, zf = u[inside], v[inside], z[front][inside]
    d = view_i.depth[v, u]
    bad = ~silhouette[v, u] | ((d > 0) & (zf < d - tolerance))
    return float(bad.mean())


def depth_noise(depth: np.ndarray, valid: np.ndarray) -> float:
    """The depth's noise on the object, one standard deviation in metres, from the depth itself:
    the second differences d[k-1] - 2 d[k] + d[k+1] along rows and columns where all three pixels
    are usable (a surface's slope cancels, its curvature over three pixels is far below a depth
    sensor's noise; independent noise gives them sqrt(6) sigma), their RMS over the central 95 %
    (flying pixels out) / 0.88 (a Gaussian's RMS within ±1.96 sigma). 0 with fewer than 50
    such triples. Why: two views' measurements of one surface differ by their noise, so a
    free-space test whose tolerance is below it calls points of the true placement violations
    (stereo noise grows with z²: at 1 m it is about 3 mm, and 8 % of a toy airplane's truly
    overlapping points were called violations)."""
    ok = np.asarray(valid, bool)
    rows, cols = np.flatnonzero(ok.any(axis=1)), np.flatnonzero(ok.any(axis=0))
    if rows.size < 3 or cols.size < 3:
        return 0.0
    box = np.s_[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]     # the object's box: less to scan
    d = np.asarray(depth, np.float64)[box]
    ok = ok[box] & np.isfinite(d) & (d > 0)
    second = []
    for a in (d, d.T):
        m = (ok if a is d else ok.T)
        both = m[:, :-2] & m[:, 1:-1] & m[:, 2:]
        second.append((a[:, :-2] - 2.0 * a[:, 1:-1] + a[:, 2:])[both])
    residual = np.abs(np.concatenate(second))
    if residual.size < 50:
        return 0.0
    kept = residual[residual <= np.quantile(residual, 0.95)]
    return float(np.sqrt(np.mean(kept ** 2)) / 0.88 / np.sqrt(6.0))


def _pair_violation(views, i: int, j: int, T_ci_cj: np.ndarray, tolerance: float, seed: int = 0) -> float:
    """Free-space violations both ways (j's points in i, i's in j), the larger. The tolerance
    grows to ``NOISE_SIGMAS`` standard deviations of the two views' depth noise together where
    that is larger (``depth_noise``)."""
    noise = float(np.hypot(views[i].noise_m, views[j].noise_m))
    tolerance = max(tolerance, NOISE_SIGMAS * noise)
    rates = []
    for a, b, T in ((i, j, T_ci_cj), (j, i, invert_rigid(T_ci_cj))):
        P = views[b].points
        if len(P) > 3000:
            P = P[np.random.default_rng(seed).choice(len(P), 3000, replace=False)]
        rates.append(violation_rate(P @ T[:3, :3].T + T[:3, 3], views[a], tolerance))
    return max(rates)


MIN_COLOUR_PAIRS = 30
"""Fewer overlapping points than this say nothing about colour (difference 0)."""


def colour_difference(clouds, i: int, j: int, T_ci_cj: np.ndarray, distance: float,
                      trees: dict | None = None) -> float:
    """Mean L1 difference of chromaticity between view j's points (moved by ``T_ci_cj``) and
    their nearest neighbours in view i within ``distance``, both ways, averaged: how badly the
    overlapping surfaces disagree in colour. 0 without colours or overlap. Why: a partial surface
    slides into a wrong overlap that fits as well in shape (a box turned 180°, a mug with its
    handle hidden), but its print and paint then lie on the wrong places; at the true pose the
    colours agree (on the 25 shared objects the true poses' difference was lower than the
    registration's wrong ones on 10 of 12 failing captures, ``benchmarks/registration_pairs.py``)."""
    from scipy.spatial import cKDTree
    if not (clouds[i].has_colors() and clouds[j].has_colors()):
        return 0.0
    trees = {} if trees is None else trees             # the caller's cache: one tree per cloud
    values, counts = [], []
    for a, b, T in ((i, j, T_ci_cj), (j, i, invert_rigid(T_ci_cj))):
        target, source = clouds[a], clouds[b]
        if a not in trees:
            trees[a] = cKDTree(np.asarray(target.points))
        P = np.asarray(source.points) @ T[:3, :3].T + T[:3, 3]
        d, idx = trees[a].query(P, distance_upper_bound=distance)
        near = np.isfinite(d)
        if near.sum() >= MIN_COLOUR_PAIRS:
            diff = np.abs(np.asarray(target.colors)[idx[near]] - np.asarray(source.colors)[near])
            diff = diff.sum(axis=1)
            diff = diff[np.isfinite(diff)]                 # dark on either side: not compared
            if diff.size >= MIN_COLOUR_PAIRS:
                values.append(float(diff.mean()))
                counts.append(int(diff.size))
    return float(np.average(values, weights=counts)) if values else 0.0


def grey_image(image: np.ndarray, mask: np.ndarray, sigma_px: float = GREY_BLUR_PX) -> np.ndarray:
    """The view's grey values (HxWx3 RGB in) blurred within its mask by normalised convolution,
    so that the background does not bleed into the object's rim; 0 outside its reach."""
    import cv2
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY).astype(np.float32)
    weight = np.asarray(mask, np.float32)
    num = cv2.GaussianBlur(grey * weight, (0, 0), sigma_px)
    den = cv2.GaussianBlur(weight, (0, 0), sigma_px)
    return np.where(den > 1e-3, num / np.maximum(den, 1e-3), 0.0).astype(np.float32)


def _sample(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """``image`` at the Nx2 pixel positions (u, v), bilinear, edge pixels beyond the border."""
    from scipy.ndimage import map_coordinates
    return map_coordinates(image, [uv[:, 1], uv[:, 0]], order=1, mode="nearest")


def image_agreement(views, i: int, j: int, T_ci_cj: np.ndarray, tolerance: float) -> float | None:
    """How well the two views' images agree where their surfaces meet at ``T_ci_cj``: each
    view's measured points (every second one), moved into the other camera, that land inside its
    mask on its measured surface (within ``tolerance``) are compared by the normalised
    cross-correlation of their grey value (``RegistrationView.grey``) with the other image's
    there; both ways, weighted by the points compared. None when a view has no grey image; 0
    when fewer than ``MIN_IMAGE_POINTS`` points are seen by both either way (surfaces that
    overlap in space where neither camera sees the other's surface do not agree).

    Why: where shape and chromaticity cannot tell a placement from a wrong one (a mug turned so
    that its handle hides, a box flipped, a label turned away), the print, the texture and the
    shading can: a Lambertian surface under a light fixed in the world looks the same from every
    camera, while a wrong placement puts other grey values on top of each other. The
    normalised correlation ignores each view's exposure and gain; gloss, blur and a faint print
    still lower it at the true pose (README "Images in the trust test" has how much), which is
    why a refused pair can still place a view nothing else reaches (``chain_past_images``)."""
    if views[i].grey is None or views[j].grey is None:
        return None
    values, counts = [], []
    for a, b, T in ((i, j, T_ci_cj), (j, i, invert_rigid(T_ci_cj))):
        P = views[b].points[::2]
        own = _sample(views[b].grey, views[b].camera.project(P))
        Q = P @ T[:3, :3].T + T[:3, 3]
        ok = Q[:, 2] > 1e-6
        uv = np.zeros((len(Q), 2))
        uv[ok] = views[a].camera.project(Q[ok])
        H, W = views[a].depth.shape
        u, v = np.rint(uv[:, 0]).astype(int), np.rint(uv[:, 1]).astype(int)
        ok &= (u >= 0) & (u < W) & (v >= 0) & (v < H)
        u, v = np.where(ok, u, 0), np.where(ok, v, 0)
        depth = views[a].depth[v, u]
        ok &= views[a].mask[v, u] & (depth > 0) & (np.abs(depth - Q[:, 2]) < tolerance)
        if ok.sum() < MIN_IMAGE_POINTS:
            continue
        x, y = _sample(views[a].grey, uv[ok]), own[ok]
        x, y = x - x.mean(), y - y.mean()
        norm = float(np.sqrt((x * x).sum() * (y * y).sum()))
        values.append(float((x * y).sum()) / norm if norm > 1e-6 else 0.0)
        counts.append(int(ok.sum()))
    return float(np.average(values, weights=counts)) if values else 0.0


@dataclass(frozen=True)
class PairFit:
    """How well view j's surface, moved by ``T_ci_cj``, agrees with view i's: ``fitness`` the
    larger share of either view's points with a partner within the fine gate (so that a small
    view wholly inside a large one overlaps), ``rmse`` the inlier RMSE of j's points on i
    (metres), ``violation`` the free-space violations both ways, the larger (``_pair_violation``)."""

    fitness: float
    rmse: float
    violation: float


def pair_fit(views, clouds, i: int, j: int, T_ci_cj: np.ndarray, params: RegistrationParams) -> PairFit:
    """The measured surfaces' agreement of one placement of the pair (i, j): what every candidate
    of :func:`register_pair` is judged by, and what a diagnostic measures at the true poses."""
    import open3d as o3d
    reg = o3d.pipelines.registration
    fine = params.fine_distance * params.object_size
    there = reg.evaluate_registration(clouds[j], clouds[i], fine, T_ci_cj)
    back = reg.evaluate_registration(clouds[i], clouds[j], fine, invert_rigid(T_ci_cj))
    return PairFit(float(max(there.fitness, back.fitness)), float(there.inlier_rmse),
                   _pair_violation(views, i, j, T_ci_cj, params.free_space_tolerance * params.object_size))


def candidate_score(fitness: float, violation: float, *, moved: bool = False, rank: int = 0,
                    colour: float = 0.0, colour_weight: float = 0.0) -> float:
    """One candidate placement's score (higher is better): its overlap, minus
    ``VIOLATION_WEIGHT`` × its free-space violations, a hair (``HYPOTHESIS_TIE_BREAK``) per
    hypothesis rank after the model's first, ``MOVE_MARGIN`` when ICP moved it from its start,
    and ``colour_weight`` × the colour difference of the overlap. The one formula of the pair
    search, the placement and the diagnostics that replay them."""
    return (fitness - VIOLATION_WEIGHT * violation - HYPOTHESIS_TIE_BREAK * rank
            - (MOVE_MARGIN if moved else 0.0) - colour_weight * colour)


def untrusted_because(fit: PairFit, correction_deg: float, params: RegistrationParams,
                      image: float | None = None) -> str:
    """Why a pair's winning placement cannot be trusted ("" when it can): too little overlap, too
    much of it in the other view's free space, too large an RMSE, moved too far from the
    model's pose, or images that disagree where the surfaces meet (``image``: its
    ``image_agreement``, None when not measured)."""
    if fit.fitness < params.min_fitness:
        return f"overlap {fit.fitness:.2f} < {params.min_fitness:.2f}"
    if fit.violation > params.max_violation:
        return f"{fit.violation:.0%} of the points in the other view's free space"
    if fit.rmse > params.max_rmse * params.object_size:
        return f"rmse {fit.rmse * 1000:.1f} mm too large"
    if correction_deg > params.max_correction_deg:
        return f"moved {correction_deg:.0f}° from the model's pose"
    if image is not None and image < params.min_image_agreement:
        return f"images agree {image:.2f} < {params.min_image_agreement:.2f} where the surfaces meet"
    return ""


TABLE_BAND = 0.1
"""Among the candidates the tables confirm, those within this of the best table agreement are
alike to the table (a fine print resolved to a few cells); the object's surfaces choose among
them."""


@dataclass
class _Candidate:
    """One placement :func:`register_pair` weighs: its score (``candidate_score``), transform,
    surface fit, colour difference (0 until it wins its start), the start it came from, its
    tables' agreement (None: no tables or no overlap), where the start came from and whether
    ICP moved it."""

    key: float
    T: np.ndarray
    fit: PairFit
    colour: float
    start: np.ndarray
    table: float | None
    model_start: bool              # from the caller's starts (not the table's own placements)
    moved: bool = False            # ICP moved it from its start
    matches: int | None = None     # print matches that agree with it (None: not matched)
    printed: bool = False          # the print confirms it (_confirmed_by_print)


MATCH_BAND = 0.8
"""Among the candidates the print confirms, those with at least this share of the most matches
are alike to the print (the matches' depth is noisy); the object's surfaces choose among them."""
MIN_MATCH_SHARE = 0.5
"""A placement the print confirms must agree with at least this share of the pair's matches as
well as ``min_matches`` of them: a repeated print (a lunch box's dinosaurs) gives many matches
that scatter over several placements."""
MIN_PRINT_IMAGE_AGREEMENT = 0.6
"""A placement the print confirms must also have images that agree at least this well where the
surfaces meet (``image_agreement``), stricter than a pair's ``min_image_agreement``: the same
print seen twice agrees well beyond it. Of the 41 pairs the print confirmed with 0.5 on the
plain seeds 0, 100, 300, 500 and 700 and the photograph-like 0, 100 and 300, the 40 right ones
agreed 0.62–0.99; the wrong one (seed 700's mug, whose pattern repeats round it: 120° off)
0.53. It does not refuse that pair: the print's own placement there agrees 0.60 (violations
0.12), while the truth overlaps 0.22 with images at −0.38; nothing measured tells them apart."""
STRONG_IMAGE_AGREEMENT = 0.93
"""A pair whose images agree at least this well where its surfaces meet, with free-space
violations of at most ``STRONG_IMAGE_MAX_VIOLATION``, is not held to the move limit
(``max_correction_deg``): the limit guards against ICP turning a surface of revolution freely
from the model's pose, and there the images of two views lit by one fixed light disagree once
the surface is turned (the shading moves with the turn, the object does not). The model's pose
of one view may be far off (seed 0's teapot: its views 1 and 2 registered 86° from it, 1.6° from
the truth, images 0.993). Such a pair is also confirmed as the print's and the table's are: a
view placed on its own follows its partner through it (``_follow_confirmed``). Of the 9 pairs the
move limit alone refused with images of at least 0.93 on the plain seeds 0, 100, 300, 500 and
700 and the photograph-like 0, 100 and 300 (before this rule), the 6 with violations of at most
0.02 were all within 2° of the truth; the other 3 were the Android figure's right one
(violations 0.04) and the bell's two wrong ones (16.5° and 117.5° off, violations 0.10 and
0.05)."""
STRONG_IMAGE_MAX_VIOLATION = 0.02
"""See ``STRONG_IMAGE_AGREEMENT``: a pair waived from the move limit keeps out of the other view's
free space almost everywhere."""


def _images_confirm(image: float | None, violation: float) -> bool:
    """Whether a placement's images agree so well where its surfaces meet, and its surfaces keep
    each other's free space so well, that the images confirm it (``STRONG_IMAGE_AGREEMENT``)."""
    return (image is not None and image >= STRONG_IMAGE_AGREEMENT
            and violation <= STRONG_IMAGE_MAX_VIOLATION)


def _confirmed_by(p: PairResult) -> str:
    """What confirmed a pair (``_pair_confirmed``), in words: "table", "print" or "images"."""
    return "table" if p.table_confirmed else "print" if p.match_confirmed else "images"


def _pair_confirmed(p: PairResult) -> bool:
    """Whether something beyond the surfaces measured the pair's relative pose: the table, the
    print or images that agree as well as ``STRONG_IMAGE_AGREEMENT`` asks."""
    return p.trusted and (p.table_confirmed or p.match_confirmed
                          or _images_confirm(p.image, p.violation))


MATCH_GATE = 0.03
"""A match agrees with a placement when its two points land within this share of the object's
size of each other, or three standard deviations of the two views' depth noise together."""


def _confirmed_by_print(views, i: int, j: int, T_ci_cj: np.ndarray, fit: PairFit,
                        matches: int | None, pair_matches: int, params: RegistrationParams) -> bool:
    """Whether the object's print confirms the placement ``T_ci_cj`` of the pair (i, j): enough
    of the pair's ``pair_matches`` print matches agree with it (``matches`` of them), its
    surface keeps out of the space the other camera saw empty, and the two images agree where
    the surfaces meet (``image_agreement`` at least ``MIN_PRINT_IMAGE_AGREEMENT``, where
    ``min_image_agreement`` is on). A repeated print (a mug's pattern round it) agrees as firmly
    on a wrong placement; there the rest of the image disagrees (seed 0's mug: 0.41 against 0.68
    at the truth), or the free space refutes it."""
    if not (params.min_matches > 0 and matches is not None and matches >= params.min_matches
            and matches >= MIN_MATCH_SHARE * pair_matches
            and fit.violation <= params.max_violation):
        return False
    if params.min_image_agreement <= 0:
        return True
    image = image_agreement(views, i, j, T_ci_cj, params.free_space_tolerance * params.object_size)
    return image is not None and image >= max(params.min_image_agreement, MIN_PRINT_IMAGE_AGREEMENT)


def _choose(candidates: Sequence[_Candidate], params: RegistrationParams,
            caller_starts_only: bool = True) -> tuple[_Candidate, str]:
    """The candidate :func:`register_pair` keeps, and what confirmed it ("table", "print" or
    ""): the ones the tables confirm (table agreement at least ``min_table_agreement``) beat
    the others; among them, those the surfaces' free space accepts beat those it refutes, and
    among the rest the ones within ``TABLE_BAND`` of the best table agreement are compared by
    their score. Next, the ones the object's print confirms (``_confirmed_by_print``) beat the
    rest; among them those within ``MATCH_BAND`` of the most
    matches are compared by their score. With none confirmed: the best score among the caller's
    starts (the table's and the print's own starts count only when they confirm them;
    ``caller_starts_only`` False: among all, for one start's own candidates)."""
    agreed = [c for c in candidates if c.table is not None and c.table >= params.min_table_agreement]
    if agreed:
        free = [c for c in agreed if c.fit.violation <= params.max_violation] or agreed
        top = max(c.table for c in free)
        return max((c for c in free if c.table >= top - TABLE_BAND), key=lambda c: c.key), "table"
    printed = [c for c in candidates if c.printed]
    if printed:
        top = max(c.matches for c in printed)
        return max((c for c in printed if c.matches >= MATCH_BAND * top), key=lambda c: c.key), "print"
    pool = [c for c in candidates if c.model_start or not caller_starts_only]
    return max(pool, key=lambda c: c.key), ""


def register_pair(views, clouds, i: int, j: int, starts: Sequence[np.ndarray],
                  T_ci_o: np.ndarray, params: RegistrationParams,
                  trees: dict | None = None, prefer_first: bool = True,
                  recentre: int = 1) -> PairResult:
    """ICP of view j's cloud onto view i's from each start ``T_ci_cj`` (the model's hypotheses,
    best first) and turns of it about the up axis (``azimuth_starts_deg``); the result that agrees
    best (fitness minus free-space violations minus ``colour_weight`` × the colour difference of
    the overlap, a hair less for later hypotheses so that the model's first choice wins a tie,
    e.g. on a symmetric object) wins. ``trees``: a cache of the clouds' KD-trees (colour).
    ``prefer_first`` False: no hair per rank (the starts are turns all round, not the model's
    hypotheses in order: :func:`search_all_round`).

    Where both views see the table around the object (``RegistrationView.table``), the tables
    judge first: a candidate whose tables agree at least ``min_table_agreement`` is *confirmed*,
    and a confirmed candidate beats every unconfirmed one (among the confirmed, those within
    ``TABLE_BAND`` of the best table agreement, the surfaces' score chooses). The
    tables' own best placements (``table.table_search``: every turn and shift) start ICP too;
    their winners count only when the tables confirm them. A confirmed pair is trusted on its
    surfaces' free space and RMSE alone: the table measured the turn the overlap, the images and
    the move limit otherwise guard (a confirmed pair may share little of the object).

    Where both views see the object's print (``RegistrationView.features``), its matches judge
    next, the same way: the placement most of them agree on (``features.matched_placement``)
    starts ICP too, and a candidate that ``min_matches`` of them agree with and whose surface
    keeps the other view's free space is *confirmed by the print* (``_choose``).

    ``recentre``: where no candidate overlaps ``min_fitness``, the first ``recentre`` starts
    (each turned by ``azimuth_starts_deg``) are tried again with the two clouds' centres made
    to coincide (``_centred``): the ``RECENTRED_PICKS`` turns whose centred clouds overlap most
    (:func:`_recentred_starts`); the winner is chosen among all. 0: never.
    Why: the model's position of a view is the object centre its NOCS and depth agree on,
    often centimetres off; where that keeps the two surfaces further apart than ICP's coarse
    gate, no start of the model's finds their overlap, whatever its turn (seed 0's scissors:
    two edge-on views 6° apart in turn but 9 cm apart overlap 0.00 from the model's start,
    0.91 centred). The pairs of :func:`register_views` recentre the model's first hypothesis,
    the search all round (:func:`search_all_round`) every one of its turns."""
    fine = params.fine_distance * params.object_size
    tables = (params.min_table_agreement > 0 and views[i].table is not None
              and views[j].table is not None)
    matches = np.zeros((0, 2), int)
    if params.min_matches > 0 and views[i].features is not None and views[j].features is not None:
        matches = match_features(views[i].features, views[j].features)
    gate = max(MATCH_GATE * params.object_size, 3.0 * float(np.hypot(views[i].noise_m, views[j].noise_m)))

    def support(T: np.ndarray) -> int | None:
        if len(matches) == 0:
            return None
        return match_support(views[i].features, views[j].features, matches, T, gate)

    candidates: list[_Candidate] = []

    def run(start: np.ndarray, angles: Sequence[float], rank: int, model_start: bool,
            centred: bool = False) -> None:
        for angle in angles:
            # where both views see the table under the object, its tilt and height are measured:
            # every start and every ICP result keeps them (snap_to_support)
            init = _turn_about_up(start, T_ci_o, angle)
            if centred:
                init = _centred(clouds[j], clouds[i], init)
            init = snap_to_support(init, views[i], views[j], T_ci_o[:3, 3])
            # candidates: the start itself, fine ICP from it, coarse-then-fine ICP from it. ICP
            # slides partial surfaces towards more overlap; the free-space test says when that
            # slide went through space a camera saw empty, and the start (or the finer,
            # shorter slide) is kept instead. Shape alone picks among one start's candidates
            # (colour is sharp: a few degrees off raise it as much as a wrong placement);
            # colour joins when the starts' winners compete
            local = []
            placements = _icp_candidates(clouds[j], clouds[i], init, params)
            if centred:
                placements = [(True, T) for _, T in placements]     # a centred start moved too
            if not model_start:
                # the table measured the turn, the object's surfaces measure the position best:
                # ICP on a round object turns it freely, so the start's turn is also kept while
                # only the position slides onto the other view's surface
                placements.append((True, _slide(clouds[j], clouds[i], init, params)))
            for moved, T in placements:
                T = snap_to_support(T, views[i], views[j], T_ci_o[:3, 3])
                fit = pair_fit(views, clouds, i, j, T, params)
                key = candidate_score(fit.fitness, fit.violation, moved=moved, rank=rank)
                table = table_agreement(views[i].table, views[j].table, T) if tables else None
                agree = support(T)
                printed = _confirmed_by_print(views, i, j, T, fit, agree, len(matches), params)
                local.append(_Candidate(key, T, fit, 0.0, start, table, model_start, moved,
                                        agree, printed))
            winner, _ = _choose(local, params, caller_starts_only=False)
            colour = (colour_difference(clouds, i, j, winner.T, fine, trees)
                      if params.colour_weight > 0 else 0.0)
            key = candidate_score(winner.fit.fitness, winner.fit.violation, moved=winner.moved,
                                  rank=rank, colour=colour, colour_weight=params.colour_weight)
            candidates.append(replace(winner, key=key, colour=colour))

    for rank, start in enumerate(starts):
        # the turns about up only around the model's first choice: later hypotheses are already
        # the search's other azimuths
        run(start, params.azimuth_starts_deg if rank == 0 else (0.0,),
            rank if prefer_first else 0, True)
    if tables:
        # the tables' own best placements (turn and shift) start ICP too: the model's starts
        # may all be a half turn off on a box or a boot, or miss the turn of a round object
        for _, start in table_search(views[i].table, views[j].table, params.object_size):
            run(start, (0.0,), len(starts) if prefer_first else 0, False)
    if len(matches) >= params.min_matches > 0:
        # the print's own placement starts ICP too: the model's starts may all be a half turn
        # off on a printed box, or miss the turn of a labelled bottle
        matched = matched_placement(views[i].features, views[j].features, matches, gate,
                                    params.min_matches)
        if matched is not None:
            run(matched[0], (0.0,), len(starts) if prefer_first else 0, False)
    best, agreed = _choose(candidates, params)
    if recentre and best.fit.fitness < params.min_fitness:
        # the model's position may keep the surfaces further apart than ICP's gates reach: the
        # starts' turns again, the position from the surfaces (RECENTRED_PICKS)
        for start, angle in _recentred_starts(clouds[j], clouds[i], starts[:recentre],
                                              params.azimuth_starts_deg, T_ci_o, params):
            run(start, (angle,), 0, True, centred=True)
        best, agreed = _choose(candidates, params)
    T, fit = best.T, best.fit
    correction = rotation_angle_deg(T[:3, :3] @ best.start[:3, :3].T)
    # the images only judge the winner (as a score term among the candidates they gained little:
    # README "What bounds the search"); a winner they contradict is not trusted
    image = (image_agreement(views, i, j, T, params.free_space_tolerance * params.object_size)
             if params.min_image_agreement > 0 else None)
    if agreed:
        # the table or the print measured the turn: only the surfaces' free space and RMSE can
        # refuse it
        shape = untrusted_because(fit, 0.0, replace(params, min_fitness=0.0))
        message = shape
    else:
        if _images_confirm(image, fit.violation):
            correction = 0.0      # the images confirm the move (STRONG_IMAGE_AGREEMENT)
        shape = untrusted_because(fit, correction, params)
        message = shape or untrusted_because(fit, correction, params, image)
    return PairResult(i, j, T, fit.fitness, fit.rmse, fit.violation, not message, message,
                      best.colour, image, shape_trusted=not shape, table=best.table,
                      table_confirmed=agreed == "table", matches=best.matches,
                      match_confirmed=agreed == "print")


SLIDE_ITERATIONS = 15
"""Steps of :func:`_slide` per gate at most (it stops when a step moves less than 1e-5 of the
object's size)."""


def _slide(source, target, init: np.ndarray, params: RegistrationParams) -> np.ndarray:
    """``init`` moved without turning until ``source`` lies on ``target``: point-to-plane in the
    translation alone (three unknowns, least squares over the pairs within the gate), coarse gate
    then fine (``RegistrationParams``). Why not ICP: on a round object ICP turns the surface
    freely about its axis, undoing the turn the table measured; the position is what the
    surfaces measure there."""
    from scipy.spatial import cKDTree
    points = np.asarray(source.points)
    target_points = np.asarray(target.points)
    normals = np.asarray(target.normals)
    tree = cKDTree(target_points)
    T = np.asarray(init, float).copy()
    for gate in (params.coarse_distance, params.fine_distance):
        for _ in range(SLIDE_ITERATIONS):
            moved = points @ T[:3, :3].T + T[:3, 3]
            d, k = tree.query(moved, distance_upper_bound=gate * params.object_size)
            near = np.isfinite(d)
            if near.sum() < MIN_POINTS:
                return T
            n = normals[k[near]]
            residual = np.einsum("ij,ij->i", target_points[k[near]] - moved[near], n)
            step = np.linalg.lstsq(n.T @ n + 1e-9 * np.eye(3), n.T @ residual, rcond=None)[0]
            T[:3, 3] += step
            if np.linalg.norm(step) < 1e-5 * params.object_size:
                break
    return T


def _centred(source, target, init: np.ndarray) -> np.ndarray:
    """``init`` moved without turning until the centre of ``source``'s points lies on the centre
    of ``target``'s. Why not ``_slide``: the slide needs the surfaces within its coarse gate to
    start; two views of a thin object seen from one side (the scissors' blade edge-on) are often
    further apart at the model's position, while their centres nearly coincide at the truth."""
    T = np.asarray(init, float).copy()
    T[:3, 3] = (np.asarray(target.points).mean(axis=0)
                - T[:3, :3] @ np.asarray(source.points).mean(axis=0))
    return T


RECENTRED_PICKS = 2
"""How many recentred turns a pair that overlapped too little tries again (``register_pair``'s
``recentre``): the ones whose centred clouds overlap most within the coarse gate. Each costs
one start's ICP; every turn, centred and also slid onto the surface (``_slide``), cost 0.8 s a
capture on the bar's captures, where the search all round recentres its twelve (README "A pair
registered from its surfaces' centres")."""


def _recentred_starts(source, target, starts: Sequence[np.ndarray], angles: Sequence[float],
                      T_ci_o: np.ndarray, params: RegistrationParams) -> list[tuple[np.ndarray, float]]:
    """The (start, turn about up) pairs of ``starts`` × ``angles`` to try again recentred: the
    ``RECENTRED_PICKS`` whose clouds, centred (``_centred``), overlap most within the coarse
    gate (earlier ones first on a tie)."""
    import open3d as o3d
    coarse = params.coarse_distance * params.object_size
    ranked = []
    for start in starts:
        for angle in angles:
            T = _centred(source, target, _turn_about_up(start, T_ci_o, angle))
            overlap = o3d.pipelines.registration.evaluate_registration(source, target, coarse, T).fitness
            ranked.append((-overlap, len(ranked), start, angle))
    ranked.sort(key=lambda r: r[:2])
    return [(start, angle) for _, _, start, angle in ranked[:RECENTRED_PICKS]]


def _icp_candidates(source, target, init: np.ndarray, params: RegistrationParams
                    ) -> list[tuple[bool, np.ndarray]]:
    """The placements of ``source`` on ``target`` one start gives: (moved, transform) for the
    start itself, fine ICP from it, and coarse-then-fine ICP from it."""
    fine = params.fine_distance * params.object_size
    coarse = params.coarse_distance * params.object_size
    fine_only = _icp(source, target, init, fine, params.iterations).transformation
    coarse_fine = _icp(source, target, _icp(source, target, init, coarse,
                                            params.iterations).transformation,
                       fine, params.iterations).transformation
    return [(False, np.array(init, dtype=np.float64)), (True, np.array(fine_only, dtype=np.float64)),
            (True, np.array(coarse_fine, dtype=np.float64))]


def _distinct_starts(starts: Sequence[np.ndarray], min_angle_deg: float = 5.0) -> list[np.ndarray]:
    """The starts, in order, without those within ``min_angle_deg`` of an earlier one."""
    out: list[np.ndarray] = []
    for T in starts:
        if all(rotation_angle_deg(T[:3, :3] @ U[:3, :3].T) >= min_angle_deg for U in out):
            out.append(T)
    return out


def register_views(views: Sequence[RegistrationView | None],
                   hypotheses: Sequence[Sequence[np.ndarray | None]],
                   params: RegistrationParams, reference: int = 0) -> Registration:
    """Register the views' measured surfaces (``None`` or too few points: not registered) from
    the model's poses ``T_camera_object``, one set per azimuth hypothesis, best first (or a single
    set). Every pair starts ICP from each hypothesis' relative pose; the trusted pairs are chained
    from the reference view (best first) into start poses and made consistent by a pose graph.
    The reference view keeps its pose (it fixes the object frame); a view that no trusted pair
    connects to it keeps the first hypothesis' pose (``registered`` False)."""
    import open3d as o3d
    reg = o3d.pipelines.registration

    if len(hypotheses) and (len(hypotheses[0]) == 0 or not isinstance(hypotheses[0], (list, tuple))):
        hypotheses = [hypotheses]                       # a single set of poses
    first = hypotheses[0]
    n = len(views)
    if any(len(h) != n for h in hypotheses):
        raise ValueError(f"{n} views but pose sets of {[len(h) for h in hypotheses]}")
    usable = [k for k in range(n) if views[k] is not None and first[k] is not None
              and len(views[k].points) >= MIN_POINTS]
    registered = [k == reference for k in range(n)]
    out_poses: list[np.ndarray | None] = [None if T is None else np.asarray(T, float).copy()
                                          for T in first]
    if reference not in usable or len(usable) < 2:
        return Registration(out_poses, registered, message="fewer than two views with depth")
    clouds = {k: _cloud(views[k].points, params.voxel, views[k].chromaticity) for k in usable}
    trees = _colour_trees(clouds) if params.colour_weight > 0 else {}

    def pair(i: int, j: int) -> PairResult:
        starts = _distinct_starts([np.asarray(h[i], float) @ invert_rigid(np.asarray(h[j], float))
                                   for h in hypotheses if h[i] is not None and h[j] is not None])
        return register_pair(views, clouds, i, j, starts, np.asarray(first[i], float), params, trees)

    # pairs are independent: open3d's ICP and numpy release the GIL for much of their work, so
    # two threads take about a quarter off the stage on 2 cores (the results are the same)
    with ThreadPoolExecutor(PAIR_WORKERS) as pool:
        pairs = list(pool.map(lambda ij: pair(*ij), [(i, j) for a, i in enumerate(usable)
                                                      for j in usable[a + 1:]]))
    trusted = [p for p in pairs if p.trusted]
    chained = _chain(reference, np.asarray(first[reference], float), trusted,
                     _keeps_free_space(views, params))
    if len(chained) < 2:
        return Registration(out_poses, registered, pairs,
                            message="no view overlaps the reference enough")
    # pose graph over the chained views: node pose = T_object_camera, edge j -> i = T_ci_cj
    order = [k for k in usable if k in chained]
    index = {k: a for a, k in enumerate(order)}
    graph = reg.PoseGraph()
    for k in order:
        graph.nodes.append(reg.PoseGraphNode(invert_rigid(chained[k])))
    fine = params.fine_distance * params.object_size
    for p in trusted:
        if p.i in index and p.j in index:
            info = reg.get_information_matrix_from_point_clouds(clouds[p.j], clouds[p.i], fine, p.T_ci_cj)
            graph.edges.append(reg.PoseGraphEdge(index[p.j], index[p.i], p.T_ci_cj, info,
                                                 uncertain=True))
    option = reg.GlobalOptimizationOption(max_correspondence_distance=fine,
                                          edge_prune_threshold=params.edge_prune_threshold,
                                          reference_node=index[reference])
    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        reg.global_optimization(graph, reg.GlobalOptimizationLevenbergMarquardt(),
                                reg.GlobalOptimizationConvergenceCriteria(), option)
    T_o_ref = np.asarray(graph.nodes[index[reference]].pose)
    anchor = np.asarray(first[reference], float) @ T_o_ref     # keeps the reference fixed
    for k in order:
        out_poses[k] = anchor @ invert_rigid(np.asarray(graph.nodes[index[k]].pose))
        registered[k] = True
    missing = [k for k in usable if k not in chained]
    message = "" if not missing else f"views {missing} overlap no registered view enough"
    return Registration(out_poses, registered, pairs, _score(views, clouds, order, out_poses, params),
                        message)


LOW_OVERLAP_VIOLATION = 0.5
"""A group that overlaps the registered views less than ``min_fitness`` keeps the model's turn
(at the model's position, or moved onto the registered surfaces without turning) and is placed
only when its free-space violations stay below this share of ``max_violation``: with little
overlap the free space is the only check of the model's turn."""


@dataclass
class Placement:
    """How :func:`place_unregistered` placed a group of views that no trusted pair registered to
    the reference (views that trusted pairs join to one another move together): the share of
    their points that overlap the registered views' union, their worst free-space violation
    against any registered view, the colour difference, how far the group turned from the
    model's pose, and whether it is placed (its surfaces may be fused) or not (and why)."""

    views: list[int]
    placed: bool
    fitness: float
    violation: float
    colour: float
    correction_deg: float
    message: str = ""

    def to_dict(self) -> dict:
        return {"views": self.views, "placed": self.placed, "fitness": self.fitness,
                "violation": self.violation, "colour_difference": self.colour,
                "correction_deg": self.correction_deg, "message": self.message}


def place_unregistered(views: Sequence[RegistrationView | None],
                       poses: Sequence[np.ndarray | None], registered: Sequence[bool],
                       params: RegistrationParams, pairs: Sequence[PairResult] = ()
                       ) -> tuple[list[np.ndarray | None], list[Placement]]:
    """Place the views with depth that the registration left unregistered against the union of
    the registered views' surfaces. Unregistered views that trusted ``pairs`` join move as one
    group (their relative poses the pairs'); a group starts from the model's pose of its first
    view: the pose itself, turned about the up axis (``azimuth_starts_deg``), and ICP (fine, and
    coarse then fine) from each, judged as pairs are (overlap minus free-space violations minus
    the colour difference, an ICP move paying ``MOVE_MARGIN``, none further than
    ``max_correction_deg``). The winner is placed when it keeps out of the space every registered
    view saw empty (``max_violation``). A group that overlaps the union less than
    ``min_fitness`` gives ICP too little to hold on to: it keeps the model's turn, at the model's
    position or moved without turning onto the registered surfaces (``_slide``), whichever
    agrees better (``candidate_score``), placed only when its violations stay below
    ``LOW_OVERLAP_VIOLATION`` × ``max_violation``. Why the slide: the turn is what the model
    infers and too little overlap cannot measure, but the position is measured by the depth,
    and the model's is often off by centimetres (the object centre its NOCS and depth agree on):
    seed 0's pill bottle, its far view 3 at the model's turn 7.6° off, put 28 % of its points in
    the registered views' free space at the model's position and 8 % slid; placed, the search
    all round no longer turns it 92° off on the cylinder. A group not placed keeps the model's
    poses.

    Why: a view is unregistered when no *single* registered view overlaps it enough to trust a
    pair (a side-on view of a box, a view from below); together the registered views often do,
    and their free space tells a placement from one that cuts through what they saw. Its
    measured surface then joins the fused mesh instead of being left out (README "Measured"
    has the effect on the bar's captures). Returns the poses (placed views moved, the rest as
    given) and one :class:`Placement` per group tried. A group that cannot be placed as a whole
    (its pairs, or its first view's model pose, may be wrong) is tried member by member, each
    from its own model pose. The views placed join the registered ones as anchors of the groups
    after them (in the order of ``poses``)."""
    out = [None if T is None else np.asarray(T, float).copy() for T in poses]
    anchors, todo = _fixed_and_unfixed(views, out, registered)
    if not anchors or not todo:
        return out, []
    target = _union_cloud(views, {i: out[i] for i in anchors}, params.voxel)
    within = [p for p in pairs if p.trusted and p.i in todo and p.j in todo]
    placements, done = [], set()
    for first in todo:
        if first in done:
            continue
        group = _chain(first, out[first], within)           # member -> pose, first's as the model's
        done.update(group)
        tried = [_place_group(views, group, out, anchors, target, params)]
        if not tried[0][0].placed and len(group) > 1:
            # the group does not fit as a whole (its pairs, or its first view's model pose, may be
            # wrong): each member on its own, from its own model pose
            tried = [_place_group(views, {m: out[m]}, out, anchors, target, params) for m in group]
        for placement, members in tried:
            if placement.placed:
                for m, T_m in members.items():
                    out[m] = T_m
            placements.append(placement)
        if len(tried) > 1:
            placements += _follow_confirmed(views, out, {p.views[0]: p for p, _ in tried}, within,
                                            anchors, params)
        # the views placed so far join the anchors of the groups after them: a view may overlap
        # a placed view where it overlaps no registered one (seed 0's cardboard viewer: its
        # edge-on view 3 overlaps the reference 0.26 at the truth, view 2 (placed) 0.81 at 6° off)
        joined = sorted({m for p in placements if p.placed for m in p.views} - set(anchors))
        if joined:
            anchors = anchors + joined
            target = _union_cloud(views, {i: out[i] for i in anchors}, params.voxel)
    return out, placements


CONFIRMED_PAIR_TOLERANCE_DEG = 15.0
"""Two views placed one by one disagree with the pair the print or the table confirmed between
them when their relative rotation is this far from the pair's."""


def _follow_confirmed(views, out: list[np.ndarray | None], tried: dict[int, Placement],
                      pairs: Sequence[PairResult], anchors: list[int], params: RegistrationParams
                      ) -> list[Placement]:
    """After a group's members were placed one by one (``tried``: member -> its placement), each
    pair between them that the print, the table or the images confirmed (``_pair_confirmed``)
    and that their placements contradict (``CONFIRMED_PAIR_TOLERANCE_DEG``)
    or that joins a placed member to one not placed: the member placed less well (or not at
    all) follows the other through the pair, when its surface so placed keeps out of the space
    every registered view saw empty (``max_violation``). Moves ``out`` in place; returns one
    :class:`Placement` per member moved.

    Why: placed alone, each member starts from its own model pose, and a box's two views may
    both fit the registered ones, one of them turned 180° (seed 0's cardboard viewer: both
    overlapping 0.91, the wrong one with more violations, 0.10 against 0.05); the print seen by
    both measured their relative pose, which the member-by-member placement cannot keep. Seed
    0's teapot: its view 2 could not be placed alone, and its pair with view 1 (images 0.993)
    brings it along (before, the search all round put it 116° off)."""
    tolerance = params.free_space_tolerance * params.object_size

    def score(k: int) -> float:
        t = tried[k]
        return candidate_score(t.fitness, t.violation) if t.placed else -np.inf

    moved: list[Placement] = []
    for p in sorted(pairs, key=lambda p: p.violation - p.fitness):
        if not _pair_confirmed(p) or p.i not in tried or p.j not in tried:
            continue
        if not (tried[p.i].placed or tried[p.j].placed):
            continue
        if tried[p.i].placed and tried[p.j].placed:
            relative = out[p.i] @ invert_rigid(out[p.j])
            if rotation_angle_deg(relative[:3, :3] @ p.T_ci_cj[:3, :3].T) <= CONFIRMED_PAIR_TOLERANCE_DEG:
                continue
        leader, follower = (p.i, p.j) if score(p.i) >= score(p.j) else (p.j, p.i)
        if any(m.views == [follower] for m in moved):
            continue
        T = (invert_rigid(p.T_ci_cj) @ out[p.i] if follower == p.j else p.T_ci_cj @ out[p.j])
        violation = _worst_violation(views, {a: out[a] for a in anchors}, follower, T, tolerance)
        if violation > params.max_violation:
            continue
        correction = rotation_angle_deg(T[:3, :3] @ out[follower][:3, :3].T)
        out[follower] = T
        tried[follower] = Placement([follower], True, p.fitness, violation, 0.0, correction,
                                    f"follows view {leader} through the pair the "
                                    f"{_confirmed_by(p)} confirmed")
        moved.append(tried[follower])
    return moved


def _place_group(views, group: dict[int, np.ndarray], poses: Sequence[np.ndarray | None],
                 anchors: list[int], target, params: RegistrationParams
                 ) -> tuple[Placement, dict[int, np.ndarray]]:
    """One group of :func:`place_unregistered` (``group``: view -> its pose as the model and the
    group's pairs give it): the placement, and the members' poses where it is placed."""
    source = _union_cloud(views, group, params.voxel)
    trees: dict = {}                                       # the colour test's KD-trees

    def judged(T: np.ndarray, moved: bool) -> tuple | None:
        """(score, T, overlap, violations, colour, turn from the model's pose) of the placement
        ``T`` levelled on the table (``_level_placement``); None when it turned further than
        ``max_correction_deg``."""
        T = _level_placement(T, views, group, poses, anchors)
        correction = rotation_angle_deg(T[:3, :3])
        if correction > params.max_correction_deg:
            return None
        fitness, violation, colour = _placement_fit(views, group, poses, anchors, source,
                                                    target, T, params, trees)
        return (candidate_score(fitness, violation, moved=moved, colour=colour,
                                colour_weight=params.colour_weight),
                T, fitness, violation, colour, correction)

    best = as_model = None
    # the model's own pose (turn 0) always: it is the fallback of a group with little overlap
    for angle in (0.0, *(a for a in params.azimuth_starts_deg if a != 0.0)):
        init = np.eye(4)
        init[:3, :3] = rot_z(np.radians(angle))
        # T maps the group's object frame into the registered views' object frame; a turned
        # start counts as a move even where ICP leaves it where it started
        for moved, T in _icp_candidates(source, target, init, params):
            moved = moved or angle != 0.0
            candidate = judged(T, moved)
            if candidate is None:
                continue
            if best is None or candidate[0] > best[0]:
                best = candidate
            if not moved:
                as_model = candidate
    _, T, fitness, violation, colour, correction = best
    max_violation = params.max_violation
    if fitness < params.min_fitness:
        # too little overlap for ICP to hold on to: its turns are not trusted, and the model's
        # turn stands if it keeps well clear of the space the registered views saw empty. Its
        # position is what the surfaces still measure: moved without turning onto them
        # (_slide), where that agrees better than the model's own position
        slid = judged(_slide(source, target, np.eye(4), params), moved=True)
        _, T, fitness, violation, colour, correction = max(
            (c for c in (as_model, slid) if c is not None), key=lambda c: c[0])
        max_violation = LOW_OVERLAP_VIOLATION * params.max_violation
    message = ("" if violation <= max_violation else
               f"{violation:.0%} of its points in the registered views' free space"
               + (f" (overlap {fitness:.2f}: at most {max_violation:.0%} allowed)"
                  if max_violation < params.max_violation else ""))
    placement = Placement(sorted(group), not message, fitness, violation, colour, correction, message)
    return placement, {m: T_m @ invert_rigid(T) for m, T_m in group.items()}


def _placement_fit(views, group: dict[int, np.ndarray], poses: Sequence[np.ndarray | None],
                   anchors: list[int], source, target, T: np.ndarray, params: RegistrationParams,
                   trees: dict) -> tuple[float, float, float]:
    """How a group of views (``group``: view -> pose; ``source`` their union cloud) placed by
    ``T`` (its object frame -> the anchors') agrees with the anchors (``target`` their union):
    the share of its points within the fine gate of theirs, its worst free-space violation
    against any anchor, and the colour difference of the overlap (0 when colour is not
    weighed). What the placement and the light's turns judge a candidate by."""
    import open3d as o3d
    fine = params.fine_distance * params.object_size
    tolerance = params.free_space_tolerance * params.object_size
    fitness = float(o3d.pipelines.registration.evaluate_registration(source, target, fine, T).fitness)
    violation = max(_pair_violation(views, i, m, poses[i] @ T @ invert_rigid(group[m]), tolerance)
                    for i in anchors for m in group)
    colour = (colour_difference({0: target, 1: source}, 0, 1, T, fine, trees)
              if params.colour_weight > 0 else 0.0)
    return fitness, violation, colour


def _table_height(view: RegistrationView, T_camera_object: np.ndarray) -> float:
    """Where the view's support plane lies along the object frame's z (the frame levelled on
    it, so that z is its normal)."""
    T = np.asarray(T_camera_object, float)
    return -float(view.support.normal @ T[:3, 3] + view.support.offset)


def _level_placement(T: np.ndarray, views, group: dict[int, np.ndarray],
                     poses: Sequence[np.ndarray | None], anchors: list[int]) -> np.ndarray:
    """A placement ``T`` (the group's object frame -> the registered views' object frame) that
    keeps the support plane: when every member and every anchor sees it (their poses levelled on
    it, z up), ``T`` only turns about z, and it puts the group's table at the anchors' height.
    Unchanged otherwise."""
    if any(views[k].support is None for k in (*group, *anchors)):
        return T
    T = np.asarray(T, float).copy()
    T[:3, :3] = rotation_between(T[:3, 2], np.array([0.0, 0.0, 1.0])) @ T[:3, :3]
    height = np.mean([_table_height(views[k], poses[k]) for k in anchors])
    T[2, 3] = height - np.mean([_table_height(views[m], group[m]) for m in group])
    return T


def _union_cloud(views: Sequence[RegistrationView | None], poses: dict[int, np.ndarray], voxel: float):
    """The given views' points in the object frame (``poses``: view -> ``T_camera_object``), one
    cloud, with their chromaticity where every view has it."""
    points = np.concatenate([transform_points(invert_rigid(np.asarray(T, float)), views[k].points)
                             for k, T in poses.items()])
    colours = [views[k].chromaticity for k in poses]
    return _cloud(points, voxel, None if any(c is None for c in colours) else np.concatenate(colours))


def _colour_trees(clouds: dict) -> dict:
    """Every cloud's KD-tree for ``colour_difference``, made before the pairs run in threads (so
    that none of them writes the shared cache)."""
    from scipy.spatial import cKDTree
    return {k: cKDTree(np.asarray(c.points)) for k, c in clouds.items()}


def _chain(reference: int, T_ref: np.ndarray, pairs: Sequence[PairResult],
           admits: Callable[[dict[int, np.ndarray], int, np.ndarray], bool] | None = None
           ) -> dict[int, np.ndarray]:
    """Start poses ``T_camera_object`` of the views a chain of trusted pairs links to the
    reference, each from the best-agreeing pair that reaches it first (a spanning tree grown
    from the reference, best pairs first; ``admits``: :func:`_grow`'s)."""
    return _grow({reference: T_ref}, pairs, admits)


def _keeps_free_space(views, params: RegistrationParams
                      ) -> Callable[[dict[int, np.ndarray], int, np.ndarray], bool]:
    """``_grow``'s test of a view joining the chain: at the pose its pair gives it, its surface
    keeps out of the space every view already chained saw empty, and theirs out of its
    (``_pair_violation`` at most ``max_violation`` with each). Why: a chain has no loop that
    could show a wrong pair; a pair the table or the print confirmed on a repeated pattern (seed
    100's boat shoe, photograph-like: its views 1 and 3 a half turn apart) is trusted on its own
    free space, and chained through it the view would cut through what the reference saw."""
    tolerance = params.free_space_tolerance * params.object_size

    def admits(poses: dict[int, np.ndarray], k: int, T_k: np.ndarray) -> bool:
        return _worst_violation(views, poses, k, T_k, tolerance) <= params.max_violation
    return admits


def _worst_violation(views, poses: dict[int, np.ndarray], k: int, T_k: np.ndarray,
                     tolerance: float) -> float:
    """The largest free-space violation (``_pair_violation``, both ways) between view k at pose
    ``T_k`` and each view of ``poses`` at its own (poses ``T_camera_object``)."""
    return max(_pair_violation(views, m, k, T_m @ invert_rigid(T_k), tolerance)
               for m, T_m in poses.items())


def _fixed_and_unfixed(views: Sequence[RegistrationView | None], poses: Sequence[np.ndarray | None],
                       fixed: Sequence[bool]) -> tuple[list[int], list[int]]:
    """The views with a pose and enough depth to register, split into those already fixed
    (anchors) and those still to place."""
    usable = [k for k, v in enumerate(views)
              if v is not None and poses[k] is not None and len(v.points) >= MIN_POINTS]
    return [k for k in usable if fixed[k]], [k for k in usable if not fixed[k]]


def chain_past_images(poses: Sequence[np.ndarray | None], fixed: Sequence[bool],
                      pairs: Sequence[PairResult]) -> tuple[list[np.ndarray | None], list[int]]:
    """The views that neither a trusted pair nor the placement fixed, chained to the fixed ones
    by pairs whose surfaces passed every test but whose images disagreed
    (``PairResult.shape_trusted``). Returns the poses (those views moved) and the views chained.

    Why: the images' veto is a preference, not proof. Where it refuses a wrong pair, the view
    goes to the placement, which the registered views' free space judges (the seed-0 mug). But a
    glossy surface, a camera's own exposure and blur, or a low-contrast print lower the agreement
    at the true pose too (the photograph-like captures: README "Images in the trust test"); when
    the placement cannot place such a view either, the pair its surfaces trusted is still better
    evidence than the model's pose."""
    start = {k: np.asarray(T, float) for k, T in enumerate(poses) if fixed[k] and T is not None}
    grown = _grow(dict(start), [p for p in pairs if not p.trusted and p.shape_trusted])
    out = [None if T is None else np.asarray(T, float).copy() for T in poses]
    chained = sorted(k for k in grown if k not in start)
    for k in chained:
        out[k] = grown[k]
    return out, chained


SEARCH_MIN_IMAGE_AGREEMENT = 0.0
"""The search all round (:func:`search_all_round`) refuses a pair whose images are
anti-correlated where its surfaces meet (a box or a teapot turned 180°), even when its surfaces
pass: among twelve turns a wrong one that fits the shape is likelier than among the model's few."""


def search_all_round(views: Sequence[RegistrationView | None], poses: Sequence[np.ndarray | None],
                     fixed: Sequence[bool], params: RegistrationParams, step_deg: float = 30.0
                     ) -> tuple[list[np.ndarray | None], list[PairResult]]:
    """The views with depth that are still at the model's pose, each registered to a fixed view
    by a pair search from turns every ``step_deg`` all round the up axis (not only the model's
    hypotheses and ±20°). The first fixed view whose pair passes every trust test places the
    view; failing that, the best pair whose surfaces pass, unless its images are anti-correlated
    (``SEARCH_MIN_IMAGE_AGREEMENT``). A placed view then anchors the next. Returns the poses and
    the pairs that placed a view."""
    anchors, todo = _fixed_and_unfixed(views, poses, fixed)
    out = [None if T is None else np.asarray(T, float).copy() for T in poses]
    if not anchors or not todo:
        return out, []
    # no turn is preferred, and no move is too far: the model's pose of a view that nothing
    # else placed is off in tilt as often as in heading (ICP fixed a 47° tilt of seed 0's orca
    # to within 1°, its images agreeing 0.99), so only the surfaces and images judge the result
    single = replace(params, azimuth_starts_deg=(0.0,), max_correction_deg=180.0)
    clouds = {k: _cloud(views[k].points, params.voxel, views[k].chromaticity) for k in anchors + todo}
    trees = _colour_trees(clouds) if params.colour_weight > 0 else {}
    turns = sorted(np.arange(0.0, 360.0, step_deg), key=lambda a: min(a, 360.0 - a))
    placed: list[PairResult] = []

    def search(f: int, k: int) -> PairResult:
        start = out[f] @ invert_rigid(out[k])
        starts = [_turn_about_up(start, out[f], float(a)) for a in turns]
        return register_pair(views, clouds, f, k, starts, out[f], single, trees,
                             prefer_first=False, recentre=len(starts))

    for k in todo:
        best = None
        for f in list(anchors):
            p = search(f, k)
            # the surfaces must pass; images that contradict them (anti-correlated: a flip)
            # refuse the search's pick, images that merely agree little do not (gloss, blur)
            if not p.shape_trusted or (p.image is not None and p.image < SEARCH_MIN_IMAGE_AGREEMENT):
                continue
            key = (p.trusted, candidate_score(p.fitness, p.violation))
            if best is None or key > best[0]:
                best = (key, f, p)
            if p.trusted:
                break           # surfaces and images agree: the other anchors cost time only
        if best is not None:
            _, f, p = best
            out[k] = invert_rigid(p.T_ci_cj) @ out[f]                 # T_ck_o = T_ck_cf T_cf_o
            anchors.append(k)
            placed.append(p)
    return out, placed


LIGHT_TURN_TOLERANCE_DEG = 15.0
"""Two views' lights (in the object frame of their poses) agree when the turn about up between
them is within this. At the true poses, 58 of the 61 pairs of views whose lights
``lighting.estimate_light`` accepts and that lie ``LIGHT_MIN_HORIZONTAL`` off the up axis are
within 15° (plain and photograph-like captures of seeds 0, 100 and 300; the Android figure's
two pairs at 21° and 25°, the school bus's at 21°)."""
LIGHT_TOLERANCE_DEG = 10.0
"""A placement turned to the light keeps it: the two lights within this angle (the turn about
up matches by construction; what remains is the tilt, which the surfaces measured)."""
LIGHT_MIN_HORIZONTAL = 0.25
"""The light must lie this far off the up axis (the sine of its angle to it, in both views'
object frames) to measure a turn: a light overhead turns with no turn of the view, and the
turn's error grows as the light's error over this (the brass bell's light, at 0.26–0.33,
measured its turn within 12°)."""
LIGHT_VIOLATION_MARGIN = 0.05
"""A turn the light asks for is taken when the view's surface, so turned, cuts through the space
the anchors saw empty at most this much more often (``_pair_violation``) than where it was. Not
the overlap: on a surface of revolution the overlap is largest where a view's surface lies on the
other's, turned onto the side that view saw (a domed cylinder seen 70° apart overlaps 0.50 at
the truth and 0.88 turned 90°), while the free space is kept at any turn; on a shape that
measures its own turn the wrong one cuts through what the anchors saw."""


@dataclass
class LightTurn:
    """What :func:`turn_to_light` did with one view whose light disagreed with the anchor's: the
    light's disagreement before (and after, None when no candidate was tried), the turn the
    light asked for, the surfaces' score at the old pose and at the best turned candidate, and
    whether the view was turned (or why not)."""

    view: int
    anchor: int
    before_deg: float
    turn_deg: float | None
    after_deg: float | None
    score_before: float
    score_after: float | None
    turned: bool
    message: str = ""

    def to_dict(self) -> dict:
        return {"view": self.view, "anchor": self.anchor, "light_before_deg": self.before_deg,
                "turn_deg": self.turn_deg, "light_after_deg": self.after_deg,
                "score_before": self.score_before, "score_after": self.score_after,
                "turned": self.turned, "message": self.message}


def light_moves_with_camera(views: Sequence[RegistrationView | None]) -> bool:
    """Whether every view with a light sees it from the same side of its camera (within
    ``LIGHT_TOLERANCE_DEG``): a light mounted on the camera (a ring light on the wrist) that
    moves with it, or an overhead light seen from one height all round. Either way the light
    measures no turn between the views."""
    lights = [v.light.direction for v in views if v is not None and v.light is not None]
    return len(lights) > 1 and all(angle_deg(a, b) <= LIGHT_TOLERANCE_DEG
                                   for n, a in enumerate(lights) for b in lights[n + 1:])


def object_light(view: RegistrationView, T_camera_object: np.ndarray) -> np.ndarray:
    """The view's light direction in the object frame of its pose."""
    return np.asarray(T_camera_object, float)[:3, :3].T @ view.light.direction


def _horizontal(direction: np.ndarray) -> float:
    """How far a direction lies off the up axis: the sine of its angle to it."""
    return float(np.hypot(direction[0], direction[1]) / max(np.linalg.norm(direction), 1e-12))


def _lights_disagree(L_k: np.ndarray, L_anchor: np.ndarray) -> bool:
    """Whether a view's light asks for a turn about up beyond ``LIGHT_TURN_TOLERANCE_DEG`` (and
    lies far enough off the up axis to measure one)."""
    return (_horizontal(L_k) >= LIGHT_MIN_HORIZONTAL
            and abs(turn_about_up(L_anchor, L_k)) > LIGHT_TURN_TOLERANCE_DEG)


def turn_to_light(views: Sequence[RegistrationView | None], poses: Sequence[np.ndarray | None],
                  fixed: Sequence[bool], params: RegistrationParams, reference: int = 0
                  ) -> tuple[list[np.ndarray | None], list[LightTurn]]:
    """Turn about the object's up axis every view whose light (``RegistrationView.light``, in
    the object frame of its pose) disagrees with the anchor's, when the turned view's surface
    keeps out of the space the other views saw empty about as well as before.

    The anchor is the reference view when it has a light and a fixed pose, else the fixed view
    whose light fits best. Nothing is turned where the light moves with the camera
    (:func:`light_moves_with_camera`) or lies too near the up axis (``LIGHT_MIN_HORIZONTAL``).
    Views whose lights agree with the anchor's (a turn about up within
    ``LIGHT_TURN_TOLERANCE_DEG``), the views without a measured light and the other fixed views
    are the anchors of the surfaces' test; a view whose light disagrees is turned by the
    difference of the two lights' azimuths about up, then placed by rounds of ICP that keep the
    light's turn (:func:`_icp_under_light`, from the turned start and from coarse ICP's result)
    and by sliding without turning (``_slide``). Among the placements whose light agrees with
    the anchor's, that keep out of the anchors' free space (``max_violation``) and that overlap
    them (``min_fitness``), the best score (``candidate_score``: overlap, violations, an ICP
    move's margin, colour) is taken when its free-space violations exceed the old pose's by at
    most ``LIGHT_VIOLATION_MARGIN``. A turned view joins the anchors.

    Why: lights are fixed in the room, so a view turned the wrong way sees its light turned with
    it. On a bell, a plate or a ball the surfaces agree at any turn about the axis, and two
    opposite sides of a teapot overlap too little for the pairs to be trusted: the light then
    measures the turn that nothing else measured (``lighting.py``; README "The light measures
    the turn"). Returns the poses (turned views moved) and one :class:`LightTurn` per view whose
    light disagreed. A view without depth, pose or light is left as it is."""
    out = [None if T is None else np.asarray(T, float).copy() for T in poses]
    usable, _ = _fixed_and_unfixed(views, out, [True] * len(views))
    lit = [k for k in usable if views[k].light is not None]
    fixed_lit = [k for k in lit if fixed[k]]
    if len(lit) < 2 or not fixed_lit or light_moves_with_camera(views):
        return out, []
    anchor = (reference if reference in fixed_lit
              else max(fixed_lit, key=lambda k: views[k].light.fit))
    L_anchor = object_light(views[anchor], out[anchor])
    if _horizontal(L_anchor) < LIGHT_MIN_HORIZONTAL:
        return out, []
    disagree = [k for k in lit
                if k != anchor and _lights_disagree(object_light(views[k], out[k]), L_anchor)]
    anchors = [k for k in usable if fixed[k] and k not in disagree]
    tried: dict[int, LightTurn] = {}
    todo = sorted(disagree, key=lambda k: -views[k].light.fit)
    while todo:
        # a view turned joins the anchors, and may let one refused before pass: again until
        # nothing changes
        results = {k: _light_placement(views, out, k, anchors, anchor, L_anchor, params)
                   for k in todo}
        tried.update({k: t for k, (t, _) in results.items()})
        done = [k for k, (t, _) in results.items() if t.turned]
        for k in done:
            out[k] = results[k][1]
            anchors.append(k)
        todo = [k for k in todo if k not in done] if done else []
    return out, [tried[k] for k in sorted(tried)]


LIGHT_ROUNDS = 3
"""Rounds of fine ICP, each followed by the turn about up that restores the light
(:func:`_icp_under_light`)."""


def _turned_to_light(T: np.ndarray, L_k: np.ndarray, L_anchor: np.ndarray) -> np.ndarray:
    """``T`` (the view's object frame -> the anchors') turned about the anchors' up axis until the
    view's light ``L_k`` (its object frame) has the anchor's azimuth."""
    turn = np.eye(4)
    turn[:3, :3] = rot_z(np.radians(turn_about_up(L_anchor, np.asarray(T, float)[:3, :3] @ L_k)))
    return turn @ np.asarray(T, float)


def _icp_under_light(source, target, init: np.ndarray, L_k: np.ndarray, L_anchor: np.ndarray,
                     params: RegistrationParams) -> np.ndarray:
    """ICP that keeps the light: rounds of fine ICP (``LIGHT_ROUNDS``), each turned back about up
    to the light's azimuth, then slid onto the target without turning (``_slide``). Why: the
    model's tilt of a view is off as well as its turn, and ICP measures the tilt; but on a
    surface of revolution ICP turns freely about the axis, and the light holds that turn."""
    fine = params.fine_distance * params.object_size
    T = _turned_to_light(init, L_k, L_anchor)
    for _ in range(LIGHT_ROUNDS):
        T = _turned_to_light(np.asarray(_icp(source, target, T, fine, params.iterations).transformation,
                                        float), L_k, L_anchor)
    return _slide(source, target, T, params)


def _light_placement(views, poses, k: int, anchors: list[int], anchor: int, L_anchor: np.ndarray,
                     params: RegistrationParams) -> tuple[LightTurn, np.ndarray | None]:
    """One view of :func:`turn_to_light`: what the light asks of it, and its turned pose."""
    L_k = object_light(views[k], poses[k])
    before = angle_deg(L_k, L_anchor)
    group = {k: poses[k]}
    source = _union_cloud(views, group, params.voxel)
    target = _union_cloud(views, {a: poses[a] for a in anchors}, params.voxel)
    trees: dict = {}

    def score(T: np.ndarray, moved: bool) -> tuple[float, float, float]:
        fitness, violation, colour = _placement_fit(views, group, poses, anchors, source, target,
                                                    T, params, trees)
        return candidate_score(fitness, violation, moved=moved, colour=colour,
                               colour_weight=params.colour_weight), violation, fitness

    old, old_violation, _ = score(np.eye(4), False)
    turn = turn_about_up(L_anchor, L_k)
    init = np.eye(4)
    init[:3, :3] = rot_z(np.radians(turn))
    coarse = params.coarse_distance * params.object_size
    placements = [(False, _slide(source, target, init, params)),
                  (True, _icp_under_light(source, target, init, L_k, L_anchor, params)),
                  (True, _icp_under_light(source, target, _icp(source, target, init, coarse,
                                                               params.iterations).transformation,
                                          L_k, L_anchor, params))]
    best = None
    for moved, T in placements:
        T = _level_placement(T, views, group, poses, anchors)
        after = angle_deg(T[:3, :3] @ L_k, L_anchor)
        key, violation, fitness = score(T, moved)
        # too little overlap, and only the light would say where the view goes: the light cannot
        # tell the view's tilt from its turn (the teapot's light 70° up: two views turned with
        # 4–8 % overlap ended 46° and 106° off), while ICP measures the tilt only where the
        # surfaces overlap (``min_fitness``, as for a pair or a placement)
        if (after <= LIGHT_TOLERANCE_DEG and violation <= params.max_violation
                and fitness >= params.min_fitness and (best is None or key > best[0])):
            best = (key, T, after, violation)
    if best is None:
        return LightTurn(k, anchor, before, turn, None, old, None, False,
                         "no placement so turned keeps its light, the free space and an "
                         f"overlap of {params.min_fitness:.2f}"), None
    key, T, after, violation = best
    turned = bool(violation <= old_violation + LIGHT_VIOLATION_MARGIN)
    return (LightTurn(k, anchor, before, turn, after, old, key, turned,
                      "" if turned else f"so turned, {violation:.0%} of its points lie in the "
                      f"anchors' free space ({old_violation:.0%} before)"),
            poses[k] @ invert_rigid(T) if turned else None)


def _grow(poses: dict[int, np.ndarray], pairs: Sequence[PairResult],
          admits: Callable[[dict[int, np.ndarray], int, np.ndarray], bool] | None = None
          ) -> dict[int, np.ndarray]:
    """``poses`` extended by a spanning tree of ``pairs``, the best-agreeing pair first.
    ``admits(poses, k, T_k)``: whether view k may join at pose T_k (None: every view may); a
    view refused through one pair may still join through another."""
    ranked = sorted(pairs, key=lambda p: p.violation - p.fitness)
    grew = True
    while grew:
        grew = False
        for p in ranked:
            if p.i in poses and p.j not in poses:
                k, T_k = p.j, invert_rigid(p.T_ci_cj) @ poses[p.i]   # T_cj_o = T_cj_ci T_ci_o
            elif p.j in poses and p.i not in poses:
                k, T_k = p.i, p.T_ci_cj @ poses[p.j]
            else:
                continue
            if admits is None or admits(poses, k, T_k):
                poses[k] = T_k
                grew = True
    return poses


def _score(views, clouds, order: list[int], poses: list[np.ndarray | None],
           params: RegistrationParams) -> float:
    """Mean over the registered views' pairs of fitness minus free-space violations at the given
    poses: how well the views' surfaces agree (higher is better)."""
    import open3d as o3d
    reg = o3d.pipelines.registration
    fine = params.fine_distance * params.object_size
    tolerance = params.free_space_tolerance * params.object_size
    values = []
    for a, i in enumerate(order):
        for j in order[a + 1:]:
            T = poses[i] @ invert_rigid(poses[j])
            r = reg.evaluate_registration(clouds[j], clouds[i], fine, T)
            values.append(r.fitness - _pair_violation(views, i, j, T, tolerance))
    return float(np.mean(values)) if values else -np.inf


def agreement(views: Sequence[RegistrationView | None], poses: Sequence[np.ndarray | None],
              params: RegistrationParams) -> float:
    """How well the views' measured surfaces agree at the given poses ``T_camera_object``: the sum
    over every pair of views with points and a pose of their overlap (the larger share of either
    view's points within the fine gate of the other's surface) minus ``VIOLATION_WEIGHT`` × their
    free-space violations (``violation_rate``, both ways, the larger). A diagnostic of the
    registration: where the true poses agree better than the registered ones, the search missed
    them; where they do not, the score cannot tell (symmetric shapes).
    ``benchmarks/registration_pairs.py`` reports it per capture."""
    keys = [k for k, (v, T) in enumerate(zip(views, poses))
            if v is not None and T is not None and len(v.points) >= MIN_POINTS]
    clouds = {k: _cloud(views[k].points, params.voxel) for k in keys}
    total = 0.0
    for a, i in enumerate(keys):
        for j in keys[a + 1:]:
            T = np.asarray(poses[i], float) @ invert_rigid(np.asarray(poses[j], float))
            fit = pair_fit(views, clouds, i, j, T, params)
            total += candidate_score(fit.fitness, fit.violation)
    return float(total)


__all__ = ["LightTurn", "PairFit", "PairResult", "Placement", "Registration", "RegistrationParams",
           "RegistrationView", "agreement", "candidate_score", "grey_image", "image_agreement",
           "pair_fit", "place_unregistered",
           "register_pair", "register_views", "turn_to_light", "untrusted_because", "violation_rate"]
