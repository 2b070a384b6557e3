"""Objects someone pointed at: a clicked point or a box per object, grown into masks on every
keyframe (DESIGN.md §2, the ``prompt`` segmentation; no detector, no mask topic).

A prompt per object, in one of three forms:

- :class:`PointPrompt`: a 3D point (RViz "Publish Point" gives a ``geometry_msgs/PointStamped``
  on the surface it clicked), in the camera frame of one keyframe, or in the world frame when the
  keyframes carry ``T_world_camera``;
- :class:`PixelPrompt`: a pixel of one keyframe;
- :class:`BoxPrompt`: a ``sensor_msgs/RegionOfInterest`` (x_offset, y_offset, width, height) in
  the pixels of one keyframe.

:func:`segment_prompts` returns one :class:`~sparp_ros.segment_depth.ObjectMasks` per prompt, in
prompt order (``id`` = the prompt's index), a mask per keyframe (None where not seen):

1. **With depth** (every keyframe has a depth image): the objects above the support plane are
   found once for all prompts by :func:`~sparp_ros.segment_depth.segment_depth` (RANSAC plane,
   Euclidean clusters, one id per object across the keyframes: by world centroids with poses, by
   appearance without), and each prompt picks the object it hits: a pixel the mask that holds it,
   a box the mask that fills it best, a 3D point the object whose measured surface is nearest
   (pooled over every posed view: the point is effectively projected into every view). Measuring
   first, as everywhere in this package: depth decides what is an object; a point on the table is
   on no cluster and is refused. When no support plane is found the keyframes are handled as
   without depth (logged).
2. **Without depth**: OpenCV GrabCut in the prompt's keyframe, initialised from the box, or for a
   point from growing boxes around it with the point as sure foreground: the object is the first
   result a box encloses and the next box reproduces. The table or background is never enclosed,
   or shares its colours with the rest of the image (colour histograms: at most 0.10 overlap for
   the objects of the renders, 0.39 and more for a patch of table), so a point on the table is
   refused. A world point is grown in the view where it projects nearest the image centre. The
   other keyframes:

   - with camera poses, the object's centre lies on the ray through its box centre in the
     prompt's keyframe (near the point's depth for a 3D point); the depth along the ray where the
     other views together see the object's colours stand out most from their surroundings (box
     sizes follow from the depth) places a box in each view, grown by GrabCut;
   - without poses, by appearance alone: in each view the square of about the object's size where
     its colours stand out most (a colour-likelihood map, Swain and Ballard's ratio histogram),
     grown by GrabCut. Weaker: another object or a patch of background of the same colours wins.

Errors (all :class:`PromptError`, a ``SegmentationError``, i.e. a ``ValueError``, naming the
prompt): :class:`PromptMissError` when a prompt hits nothing (a point on the table or outside the
image, a box without an object); :class:`PromptError` for a prompt that cannot apply (a view
index out of range, a world point without camera poses, an empty box). Two prompts on one object
give two entries with the same masks. Objects touching each other are one object with depth
(``segment_depth``'s limit). numpy, OpenCV, scipy and open3d (through segment_depth); no ROS.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence, Union

import cv2
import numpy as np
from scipy.spatial import cKDTree

from .capture import Frame
from .segment_depth import (DepthSegmentationParams, NoPlaneError, ObjectMasks, Plane,
                            segment_depth, segment_frame)
from .segmentation import SegmentationError

LOG = logging.getLogger("sparp_ros.segment_prompt")
GRABCUT_SEED = 0                    # OpenCV's RNG (this thread's) is seeded with it: GrabCut
                                    # initialises its colour models by k-means
SURFACE_POINTS_KEPT = 4000          # per object and view, for the point-to-surface distance
SURFACE_ERODE = np.ones((5, 5), np.uint8)   # mask borders (where depth may be the table behind)
                                            # are no surface


class PromptError(SegmentationError):
    """A prompt cannot be used; ``prompt`` is its index in the list given."""

    def __init__(self, prompt: int, message: str) -> None:
        super().__init__(f"prompt {prompt}: {message}")
        self.prompt = prompt


class PromptMissError(PromptError):
    """The prompt hits no object: a point on the support plane, on the background or outside the
    image, a box with no object in it."""


@dataclass(frozen=True)
class PointPrompt:
    """A 3D point on the object, metres. ``in_world``: in the world frame (every keyframe needs
    ``T_world_camera``); else in the camera frame of keyframe ``view`` (OpenCV optical axes)."""

    point: tuple[float, float, float]
    view: int = 0
    in_world: bool = False

    def __post_init__(self) -> None:
        p = np.asarray(self.point, dtype=np.float64).reshape(-1)
        if p.shape != (3,) or not np.all(np.isfinite(p)):
            raise ValueError(f"PointPrompt.point must be 3 finite numbers, got {self.point!r}")
        object.__setattr__(self, "point", tuple(float(x) for x in p))


@dataclass(frozen=True)
class PixelPrompt:
    """A pixel (u right, v down, pixel centres at integers) on the object in keyframe ``view``."""

    u: float
    v: float
    view: int = 0


@dataclass(frozen=True)
class BoxPrompt:
    """A box around the object in keyframe ``view``, as a ``sensor_msgs/RegionOfInterest``:
    columns [x_offset, x_offset + width), rows [y_offset, y_offset + height)."""

    x_offset: int
    y_offset: int
    width: int
    height: int
    view: int = 0

    @classmethod
    def from_roi(cls, roi: Any, view: int = 0) -> "BoxPrompt":
        """From anything with a RegionOfInterest's fields (the message itself: no ROS import)."""
        return cls(int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height), view)


Prompt = Union[PointPrompt, PixelPrompt, BoxPrompt]


@dataclass(frozen=True)
class PromptSegmentationParams:
    """Parameters (metres, pixels); ``depth``: the depth segmentation used where there is depth."""

    depth: DepthSegmentationParams = field(default_factory=DepthSegmentationParams)
    use_depth: bool = True                   # False: GrabCut even where there is depth
    point_tolerance_m: float = 0.02          # a 3D point this near an object's surface hits it
    min_point_height_m: float = 0.005        # ... if it is this far above the support plane
                                             # (a pair of scissors lying flat: 8 mm)
    pixel_tolerance_px: float = 4.0          # a pixel this near an object's mask hits it
    min_box_iou: float = 0.1                 # a box hits the object whose mask fills it best,
                                             # if that mask's IoU with the box reaches this
    grabcut_iterations: int = 5
    grabcut_max_side: int = 320              # GrabCut runs on crops scaled down to this side
    box_context: float = 0.5                 # the crop: the box enlarged by this on each side
    point_box_fractions: tuple[float, ...] = (0.12, 0.2, 0.3, 0.45, 0.65)
                                             # boxes tried around a point (of the short side)
    seed_radius_fraction: float = 0.04       # sure foreground disk at the point (of the box)
    max_border_fraction: float = 0.05        # a mask covering more of the box border is not
                                             # enclosed by it
    min_mask_pixels: int = 150               # smaller GrabCut results are no object
    max_shared_colours: float = 0.25         # a point's region whose colour histogram overlaps
                                             # the rest of the image's this much is the table

    def __post_init__(self) -> None:
        for name in ("point_tolerance_m", "pixel_tolerance_px", "box_context", "min_point_height_m",
                     "seed_radius_fraction", "max_border_fraction", "min_mask_pixels"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"PromptSegmentationParams.{name} must be >= 0, "
                                 f"got {getattr(self, name)!r}")
        for name in ("min_box_iou", "max_shared_colours"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"PromptSegmentationParams.{name} must be in (0, 1], "
                                 f"got {getattr(self, name)!r}")
        if self.grabcut_iterations < 1 or self.grabcut_max_side < 32:
            raise ValueError("PromptSegmentationParams: grabcut_iterations >= 1 and "
                             "grabcut_max_side >= 32 are needed, got "
                             f"{self.grabcut_iterations}, {self.grabcut_max_side}")
        if not self.point_box_fractions or not all(0 < f <= 1 for f in self.point_box_fractions):
            raise ValueError(f"PromptSegmentationParams.point_box_fractions must be fractions in "
                             f"(0, 1], got {self.point_box_fractions!r}")


def segment_prompts(frames: Sequence[Frame], prompts: Sequence[Prompt],
                    params: PromptSegmentationParams = PromptSegmentationParams()
                    ) -> list[ObjectMasks]:
    """One object per prompt, masks on every keyframe (see the module docstring).

    Raises :class:`PromptMissError` when a prompt hits nothing, :class:`PromptError` when one
    cannot apply, ValueError for no frames or no prompts."""
    # 1. Check inputs.
    frames = list(frames)
    prompts = list(prompts)
    if not frames:
        raise ValueError("frames is empty: prompt segmentation needs at least one keyframe")
    if not prompts:
        raise ValueError("prompts is empty: give a point or a box per object")
    posed = all(f.T_world_camera is not None for f in frames)
    for k, pr in enumerate(prompts):
        _check_prompt(k, pr, frames, posed)
    cv2.setRNGSeed(GRABCUT_SEED)             # GrabCut's k-means: the same result every call
    # 2. With depth: the objects on the support plane, each prompt picks the one it hits.
    if params.use_depth and all(f.depth is not None for f in frames):
        try:
            objects = segment_depth(frames, params.depth)
        except NoPlaneError as exc:
            LOG.warning("prompt segmentation: %s; growing the prompts by colour (GrabCut)", exc)
        else:
            surfaces = _Surfaces(frames, objects, posed)
            return [_as_prompt_object(k, _pick(k, pr, frames, objects, surfaces, params))
                    for k, pr in enumerate(prompts)]
    # 3. Without depth: GrabCut in the prompt's view, then in the other views.
    return [_grow_by_colour(k, pr, frames, posed, params) for k, pr in enumerate(prompts)]


# -- checks -------------------------------------------------------------------------------------
def _check_prompt(k: int, pr: Prompt, frames: list[Frame], posed: bool) -> None:
    """PromptError for a prompt that cannot apply, PromptMissError for one outside its image:
    before any segmentation runs."""
    if not isinstance(pr, (PointPrompt, PixelPrompt, BoxPrompt)):
        raise PromptError(k, f"a {type(pr).__name__} is no prompt (PointPrompt, PixelPrompt or "
                             "BoxPrompt)")
    if isinstance(pr, PointPrompt) and pr.in_world:
        if not posed:
            missing = [i for i, f in enumerate(frames) if f.T_world_camera is None]
            raise PromptError(k, f"a point in the world frame needs every keyframe's camera pose "
                                 f"(T_world_camera); keyframes {missing} have none")
        return
    if not 0 <= pr.view < len(frames):
        raise PromptError(k, f"view {pr.view} out of range ({len(frames)} keyframes)")
    if isinstance(pr, BoxPrompt):
        if pr.width <= 0 or pr.height <= 0:
            raise PromptError(k, f"box is {pr.width}x{pr.height} pixels: empty")
        _box_in_image(k, pr, frames[pr.view])
    else:
        _pixel_of(k, pr, frames[pr.view])        # outside the image (or behind): a miss, now


def _pixel_of(k: int, pr: PointPrompt | PixelPrompt, frame: Frame) -> tuple[float, float]:
    """The prompt's pixel in its view; PromptMissError when outside the image (or behind)."""
    cam = frame.camera
    if isinstance(pr, PointPrompt):
        p = np.asarray(pr.point)
        if p[2] <= 0:
            raise PromptMissError(k, f"point {p.round(3).tolist()} is behind camera {pr.view}")
        u, v = cam.project(p[None])[0]
    else:
        u, v = pr.u, pr.v
    if not (-0.5 <= u < cam.width - 0.5 and -0.5 <= v < cam.height - 0.5):
        raise PromptMissError(k, f"pixel ({u:.1f}, {v:.1f}) is outside view {pr.view}'s "
                                 f"{cam.width}x{cam.height} image")
    return float(u), float(v)


def _box_in_image(k: int, pr: BoxPrompt, frame: Frame) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) clipped to the image; PromptMissError when nothing is left."""
    W, H = frame.camera.width, frame.camera.height
    x0, y0 = max(int(pr.x_offset), 0), max(int(pr.y_offset), 0)
    x1, y1 = min(int(pr.x_offset + pr.width), W), min(int(pr.y_offset + pr.height), H)
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise PromptMissError(k, f"box ({pr.x_offset}, {pr.y_offset}, {pr.width}x{pr.height}) is "
                                 f"outside view {pr.view}'s {W}x{H} image")
    return x0, y0, x1, y1


# -- with depth: pick the object the prompt hits --------------------------------------------------
class _Surfaces:
    """Measured surface points of each object in each view (its mask less its border), in the
    world (posed) or that view's camera frame, and the support plane of a view, each computed
    when first asked (only 3D points need them)."""

    def __init__(self, frames: list[Frame], objects: list[ObjectMasks], posed: bool) -> None:
        self.frames, self.objects, self.posed = frames, objects, posed
        self._trees: dict[tuple[int, int], cKDTree | None] = {}
        self._planes: dict[int, Plane] = {}

    def plane(self, view: int, params: DepthSegmentationParams) -> Plane:
        """The support plane of ``view`` (world frame when posed, else that camera's)."""
        if view not in self._planes:
            self._planes[view] = segment_frame(self.frames[view], params, view).plane
        return self._planes[view]

    def tree(self, obj: int, view: int) -> cKDTree | None:
        key = (obj, view)
        if key not in self._trees:
            f, m = self.frames[view], self.objects[obj].masks[view]
            tree = None
            if m is not None:
                sel = (cv2.erode(m.astype(np.uint8), SURFACE_ERODE) > 0) & (f.depth > 0)
                ys, xs = np.nonzero(sel)
                step = max(1, len(xs) // SURFACE_POINTS_KEPT)
                ys, xs = ys[::step], xs[::step]
                if len(xs):
                    pts = f.camera.unproject(np.stack([xs, ys], 1), f.depth[ys, xs])
                    if self.posed:
                        T = np.asarray(f.T_world_camera, float)
                        pts = pts @ T[:3, :3].T + T[:3, 3]
                    tree = cKDTree(pts)
            self._trees[key] = tree
        return self._trees[key]

    def distance(self, obj: int, point: np.ndarray, views: Sequence[int]) -> float:
        d = [self.tree(obj, v).query(point)[0] for v in views if self.tree(obj, v) is not None]
        return float(min(d)) if d else float("inf")


def _pick(k: int, pr: Prompt, frames: list[Frame], objects: list[ObjectMasks],
          surfaces: _Surfaces, p: PromptSegmentationParams) -> ObjectMasks:
    """The object of ``objects`` that prompt ``k`` hits; PromptMissError when none."""
    if not objects:
        raise PromptMissError(k, "no object stands on the support plane in any keyframe")
    if isinstance(pr, BoxPrompt):
        return _pick_by_box(k, pr, frames[pr.view], objects, p)
    if isinstance(pr, PixelPrompt):
        return _pick_by_pixel(k, pr, frames[pr.view], objects, p)
    # A 3D point: above the support plane, then the nearest measured surface, over every view
    # when they share the world.
    point = np.asarray(pr.point)
    plane_view = 0 if pr.in_world else pr.view
    plane = surfaces.plane(plane_view, p.depth)
    in_plane_frame = point
    if surfaces.posed and not pr.in_world:
        T = np.asarray(frames[pr.view].T_world_camera, float)
        in_plane_frame = T[:3, :3] @ point + T[:3, 3]
    height = float(plane.height(in_plane_frame[None])[0])
    if height < p.min_point_height_m:
        raise PromptMissError(
            k, f"point {np.round(point, 3).tolist()} is on no object: {height:.3f} m above the "
               f"support plane (< min_point_height_m {p.min_point_height_m} m), on the table")
    if pr.in_world or surfaces.posed:
        if not pr.in_world:
            T = np.asarray(frames[pr.view].T_world_camera, float)
            point = T[:3, :3] @ point + T[:3, 3]
        views = range(len(frames))
        where = "in the world"
    else:
        views = [pr.view]
        where = f"in view {pr.view}"
    dist = [surfaces.distance(j, point, views) for j in range(len(objects))]
    best = int(np.argmin(dist))
    if dist[best] > p.point_tolerance_m:
        raise PromptMissError(
            k, f"point {np.round(point, 3).tolist()} {where} is on no object above the support "
               f"plane (nearest object surface {_metres(dist[best])} away, > "
               f"point_tolerance_m {p.point_tolerance_m} m): on the table or the background?")
    return objects[best]


def _pick_by_pixel(k: int, pr: PixelPrompt, frame: Frame, objects: list[ObjectMasks],
                   p: PromptSegmentationParams) -> ObjectMasks:
    u, v = _pixel_of(k, pr, frame)
    c, r = int(round(u)), int(round(v))
    best, best_d = None, np.inf
    for o in objects:
        m = o.masks[pr.view]
        if m is None:
            continue
        if m[r, c]:
            return o
        ys, xs = np.nonzero(m)
        d = float(np.min(np.hypot(xs - u, ys - v))) if len(xs) else np.inf
        if d < best_d:
            best, best_d = o, d
    if best is None or best_d > p.pixel_tolerance_px:
        raise PromptMissError(k, f"pixel ({u:.0f}, {v:.0f}) in view {pr.view} is on no object "
                                 f"above the support plane (nearest object mask "
                                 f"{best_d:.0f} px away): on the table or the background?")
    return best


def _pick_by_box(k: int, pr: BoxPrompt, frame: Frame, objects: list[ObjectMasks],
                 p: PromptSegmentationParams) -> ObjectMasks:
    x0, y0, x1, y1 = _box_in_image(k, pr, frame)
    box_area = (x1 - x0) * (y1 - y0)
    scores = []
    for o in objects:
        m = o.masks[pr.view]
        if m is None:
            scores.append(0.0)
            continue
        inside = int(np.count_nonzero(m[y0:y1, x0:x1]))
        scores.append(inside / (box_area + int(np.count_nonzero(m)) - inside))
    best = int(np.argmax(scores))
    if scores[best] < p.min_box_iou:
        raise PromptMissError(k, f"box ({x0}, {y0})–({x1}, {y1}) in view {pr.view} holds no "
                                 f"object above the support plane (best mask IoU with the box "
                                 f"{scores[best]:.2f} < min_box_iou {p.min_box_iou})")
    return objects[best]


def _as_prompt_object(k: int, o: ObjectMasks) -> ObjectMasks:
    return ObjectMasks(id=k, masks=[None if m is None else m.copy() for m in o.masks],
                       centroid_world=None if o.centroid_world is None else o.centroid_world.copy(),
                       centroids_camera=list(o.centroids_camera), height_m=o.height_m)


def _metres(d: float) -> str:
    return "no measured surface" if not np.isfinite(d) else f"{d:.3f} m"


# -- without depth: GrabCut ---------------------------------------------------------------------
def _grow_by_colour(k: int, pr: Prompt, frames: list[Frame], posed: bool,
                    p: PromptSegmentationParams) -> ObjectMasks:
    """Prompt ``k``'s object by colour (module docstring, 2.); PromptMissError when its own view
    (any view, for a world point) finds nothing. Other views that do not find it get None."""
    n = len(frames)
    masks: list[np.ndarray | None] = [None] * n
    # 1. The prompt's view (a world point: the first view, nearest its centre, where it hits).
    if isinstance(pr, PointPrompt) and pr.in_world:
        view, mask, z_range = _world_point_view(k, pr, frames, p)
    else:
        view, f = pr.view, frames[pr.view]
        if isinstance(pr, BoxPrompt):
            x0, y0, x1, y1 = _box_in_image(k, pr, f)
            mask = _grabcut(f.image, (x0, y0, x1, y1), [], p)
            if mask.sum() < p.min_mask_pixels:
                raise PromptMissError(k, f"GrabCut found no object in the box ({x0}, {y0})–"
                                         f"({x1}, {y1}) of view {view}")
        else:
            mask = _grow_point(k, f, _pixel_of(k, pr, f), view, p)
        z_range = (_depth_range(np.asarray(pr.point)[2], mask, f)
                   if isinstance(pr, PointPrompt) else SEARCH_DEPTH_M)
    masks[view] = mask
    # 2. The other views: along the prompt's ray with camera poses, by colour without.
    others = [i for i in range(n) if i != view]
    if others:
        carried = (_carry_along_ray(frames, view, mask, others, z_range, p) if posed else
                   [_carry_by_colour(frames[view].image, mask, frames[i].image, p) for i in others])
        for i, m in zip(others, carried):
            masks[i] = m
    return ObjectMasks(id=k, masks=masks, centroid_world=None, centroids_camera=[None] * n)


SEARCH_DEPTH_M = (0.1, 5.0)              # where a 2D prompt's object may be along its ray
SEARCH_STEPS = 96
HIST_BINS = (18, 6, 4)                   # hue, saturation, value


def _world_point_view(k: int, pr: PointPrompt, frames: list[Frame],
                      p: PromptSegmentationParams) -> tuple[int, np.ndarray, tuple[float, float]]:
    """A world point's view: tried from the one it projects nearest the image centre."""
    point = np.asarray(pr.point)
    tries = []
    for i, f in enumerate(frames):
        T = np.linalg.inv(np.asarray(f.T_world_camera, float))
        p_cam = T[:3, :3] @ point + T[:3, 3]
        c = np.array([(f.camera.width - 1) / 2.0, (f.camera.height - 1) / 2.0])
        off = (float(np.linalg.norm(f.camera.project(p_cam[None])[0] - c)) if p_cam[2] > 0
               else np.inf)
        tries.append((off, i, p_cam))
    misses = []
    for _, i, p_cam in sorted(tries, key=lambda t: t[0]):
        try:
            uv = _pixel_of(k, PointPrompt(tuple(p_cam), i), frames[i])
            mask = _grow_point(k, frames[i], uv, i, p)
        except PromptMissError as exc:
            misses.append(str(exc))
            continue
        return i, mask, _depth_range(p_cam[2], mask, frames[i])
    raise PromptMissError(k, "the point hits no object in any view: " + "; ".join(misses))


def _depth_range(z: float, mask: np.ndarray, frame: Frame) -> tuple[float, float]:
    """Where the object's centre may be along the ray through its box centre, knowing that
    a point of its surface is at depth ``z``: within about the object's size of it."""
    ys, xs = np.nonzero(mask)
    size_m = (max(np.ptp(xs), np.ptp(ys)) + 1) * z / float(frame.camera.K[0, 0])
    return max(0.05, z - 0.5 * size_m), z + size_m


def _colour_model(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    h = cv2.calcHist([hsv], [0, 1, 2], mask.astype(np.uint8), list(HIST_BINS),
                     [0, 180, 0, 256, 0, 256])
    return h / max(float(h.sum()), 1.0)


def _object_likelihood(model: np.ndarray, image: np.ndarray, prior: float) -> np.ndarray:
    """Per pixel P(object | colour) in ``image`` (HxW float32 in [0, 1]): ``prior`` (the share of
    the image the object covers) times the object's colour histogram over the whole image's,
    clipped at 1 (Swain and Ballard's ratio histogram). Colours common everywhere (the table's)
    score low, colours found mostly on the object high."""
    whole = _colour_model(image, np.ones(image.shape[:2], bool))
    ratio = np.minimum(prior * model / (whole + 1e-9), 1.0).astype(np.float32)
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    back = cv2.calcBackProject([hsv], [0, 1, 2], ratio, [0, 180, 0, 256, 0, 256], scale=255)
    return back.astype(np.float32) / 255.0


def _shared_colours(image: np.ndarray, mask: np.ndarray) -> float:
    """How much of the mask's colour histogram the rest of the image has too (histogram
    intersection, 0..1): an object's colours are its own (measured on renders: at most 0.10 on
    true masks), a patch of the table shares most of its colours with the rest of the table
    (0.39 and more on what GrabCut grows from a point on the table)."""
    if not mask.any() or mask.all():
        return 1.0
    return float(np.minimum(_colour_model(image, mask), _colour_model(image, ~mask)).sum())


def _carry_along_ray(frames: list[Frame], view: int, mask: np.ndarray, others: list[int],
                     z_range: tuple[float, float], p: PromptSegmentationParams
                     ) -> list[np.ndarray | None]:
    """With camera poses: the object's centre lies on the ray through its box centre in
    ``view``; the depth along it where the other views together see the object's colours best
    (box size from the same depth, within CARRY_SIZE_RATIO of its size in ``view``) places a
    box in each view, grown by GrabCut. A view where the box leaves the image or finds nothing
    gets None."""
    f = frames[view]
    ys, xs = np.nonzero(mask)
    centre = np.array([[0.5 * (xs.min() + xs.max()), 0.5 * (ys.min() + ys.max())]])
    half_px = 0.5 * (max(np.ptp(xs), np.ptp(ys)) + 1)
    ray = f.camera.normalized_rays(centre)[0]
    T = np.asarray(f.T_world_camera, float)
    depths = np.geomspace(z_range[0], z_range[1], SEARCH_STEPS)
    X = (depths[:, None] * ray) @ T[:3, :3].T + T[:3, 3]             # world points on the ray
    radius_m = half_px * depths / float(f.camera.K[0, 0])
    model, prior = _colour_model(f.image, mask), float(mask.mean())
    boxes, scores = {}, np.zeros(SEARCH_STEPS)
    for i in others:
        g = frames[i]
        Tc = np.linalg.inv(np.asarray(g.T_world_camera, float))
        pc = X @ Tc[:3, :3].T + Tc[:3, 3]
        ok = pc[:, 2] > 1e-3
        uv = np.full((SEARCH_STEPS, 2), -1e9)
        uv[ok] = g.camera.project(pc[ok])
        half = np.where(ok, radius_m * float(g.camera.K[0, 0]) / np.maximum(pc[:, 2], 1e-3), 0)
        like = cv2.integral(_object_likelihood(model, g.image, prior))
        plausible = (half >= half_px / CARRY_SIZE_RATIO) & (half <= half_px * CARRY_SIZE_RATIO)
        scores += np.where(plausible, _contrast(like, uv, half), 0.0)
        boxes[i] = (uv, half)
    best = int(np.argmax(scores))
    out: list[np.ndarray | None] = []
    for i in others:
        uv, half = boxes[i]
        g = frames[i]
        h = CARRY_BOX_MARGIN * half[best]
        box = (int(max(uv[best, 0] - h, 0)), int(max(uv[best, 1] - h, 0)),
               int(min(uv[best, 0] + h + 1, g.camera.width)),
               int(min(uv[best, 1] + h + 1, g.camera.height)))
        if scores[best] <= 0 or box[2] - box[0] < 4 or box[3] - box[1] < 4:
            out.append(None)
            continue
        m = _grabcut(g.image, box, [], p)
        out.append(m if m.sum() >= p.min_mask_pixels else None)
    return out


def _rect_means(integral: np.ndarray, x0: np.ndarray, y0: np.ndarray, x1: np.ndarray,
                y1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the integrated image over [x0, x1) x [y0, y1) clipped to the image, and the
    number of pixels that mean is over."""
    H, W = integral.shape[0] - 1, integral.shape[1] - 1
    x0, x1 = np.clip(np.floor(x0), 0, W).astype(int), np.clip(np.ceil(x1), 0, W).astype(int)
    y0, y1 = np.clip(np.floor(y0), 0, H).astype(int), np.clip(np.ceil(y1), 0, H).astype(int)
    n = np.maximum(x1 - x0, 0) * np.maximum(y1 - y0, 0)
    total = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return total / np.maximum(n, 1), n


def _contrast(integral: np.ndarray, uv: np.ndarray, half: np.ndarray) -> np.ndarray:
    """How much an object of half-size ``half`` at ``uv`` stands out: the mean likelihood in
    the middle of its box (INNER_FRACTION) less the highest mean of the four strips around the
    box (out to RING_FRACTION; a strip mostly off the image counts as the object's colour).
    A region that has the object's colours everywhere, or along one side (a wall above the
    table's edge), scores 0 or less however likely its colours; an object stands clear on
    every side. 0 for boxes mostly off the image or under a pixel."""
    u, v = uv[:, 0], uv[:, 1]
    a, b, c = INNER_FRACTION * half, half, RING_FRACTION * half
    inner, n_in = _rect_means(integral, u - a, v - a, u + a + 1, v + a + 1)
    strips = [(u - c, v - c, u + c + 1, v - b), (u - c, v + b + 1, u + c + 1, v + c + 1),
              (u - c, v - b, u - b, v + b + 1), (u + b + 1, v - b, u + c + 1, v + b + 1)]
    sides = []
    for x0, y0, x1, y1 in strips:                  # above, below, left, right
        mean, n = _rect_means(integral, x0, y0, x1, y1)
        full = np.maximum(x1 - x0, 0) * np.maximum(y1 - y0, 0)
        sides.append(np.where(n >= 0.5 * full, mean, 1.0))   # off the image: no clear side
    ok = (half >= 1) & (n_in >= 0.5 * (2 * a + 1) ** 2)
    return np.where(ok, inner - np.max(sides, axis=0), 0.0)


def _carry_by_colour(image: np.ndarray, mask: np.ndarray, target: np.ndarray,
                     p: PromptSegmentationParams) -> np.ndarray | None:
    """Without poses: the square of about the object's size (within COLOUR_SIZE_RATIO: views of
    one object from similar distances) where ``target``'s object colours stand out most from
    their surroundings (``_contrast``), grown by GrabCut; None when none stands out."""
    ys, xs = np.nonzero(mask)
    half_px = 0.5 * (max(np.ptp(xs), np.ptp(ys)) + 1)
    like = cv2.integral(_object_likelihood(_colour_model(image, mask), target,
                                           float(mask.mean())))
    H, W = target.shape[:2]
    best, best_score = None, 0.0
    for scale in np.geomspace(1.0 / COLOUR_SIZE_RATIO, COLOUR_SIZE_RATIO, 5):
        half = scale * half_px
        step = max(2.0, half / 4.0)
        u, v = np.meshgrid(np.arange(0.0, W, step), np.arange(0.0, H, step))
        if u.size == 0:
            continue
        uv = np.stack([u.ravel(), v.ravel()], 1)
        score = _contrast(like, uv, np.full(len(uv), half))
        j = int(np.argmax(score))
        if score[j] > best_score:
            best, best_score = (uv[j], half), float(score[j])
    if best is None:
        return None
    (cu, cv), half = best
    h = CARRY_BOX_MARGIN * half
    box = (int(max(cu - h, 0)), int(max(cv - h, 0)),
           int(min(cu + h + 1, W)), int(min(cv + h + 1, H)))
    m = _grabcut(target, box, [], p)
    return m if m.sum() >= p.min_mask_pixels else None


CARRY_SIZE_RATIO = 2.5                   # an object's size may change this much between views
COLOUR_SIZE_RATIO = 1.6                  # ... and without poses, where nothing else keeps small
                                         # boxes off specks of the object's colours, this much
INNER_FRACTION = 0.6                     # the object's colours are scored in this much of its box
RING_FRACTION = 1.6                      # against a ring from its box to this much of it
CARRY_BOX_MARGIN = 1.2                   # GrabCut's box: the object's, this much larger


def _grow_point(k: int, frame: Frame, uv: tuple[float, float], view: int,
                p: PromptSegmentationParams) -> np.ndarray:
    """GrabCut from growing boxes centred on the point. An object is what a box a bit larger
    than it encloses and a larger box still finds (the first enclosed result that the next box
    reproduces, IoU >= STABLE_IOU; else the first enclosed one)."""
    H, W = frame.image.shape[:2]
    u, v = uv
    fractions = sorted(p.point_box_fractions)
    first = None
    previous = None
    for frac in fractions:
        half = 0.5 * frac * min(H, W)
        box = (max(int(round(u - half)), 0), max(int(round(v - half)), 0),
               min(int(round(u + half)) + 1, W), min(int(round(v + half)) + 1, H))
        radius = max(2, int(round(p.seed_radius_fraction * 2 * half)))
        m = _grabcut(frame.image, box, [(u, v)], p, seed_radius=radius)
        enclosed = (m.sum() >= p.min_mask_pixels and _enclosed(m, box, W, H, p.max_border_fraction)
                    and _shared_colours(frame.image, m) <= p.max_shared_colours)
        if previous is not None and enclosed and _iou(previous, m) >= STABLE_IOU:
            return previous
        previous = m if enclosed else None
        if enclosed and first is None:
            first = m
    if first is not None:
        return first
    raise PromptMissError(k, f"pixel ({u:.0f}, {v:.0f}) in view {view}: what GrabCut grows there "
                             f"fills every box up to {fractions[-1]:.0%} of the image or has the "
                             f"colours of the rest of the image: no object (on the table or the "
                             f"background?)")


STABLE_IOU = 0.8


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0
def _enclosed(mask: np.ndarray, box: tuple[int, int, int, int], W: int, H: int,
              max_fraction: float) -> bool:
    """Whether the mask stays off the box's border (the sides that are not the image's edge)."""
    x0, y0, x1, y1 = box
    border = []
    if x0 > 0:
        border.append(mask[y0:y1, x0:x0 + 2])
    if x1 < W:
        border.append(mask[y0:y1, x1 - 2:x1])
    if y0 > 0:
        border.append(mask[y0:y0 + 2, x0:x1])
    if y1 < H:
        border.append(mask[y1 - 2:y1, x0:x1])
    if not border:
        return True
    covered = sum(int(b.sum()) for b in border) / max(sum(b.size for b in border), 1)
    return covered <= max_fraction


def _grabcut(image: np.ndarray, box: tuple[int, int, int, int],
             seeds: Sequence[tuple[float, float]], p: PromptSegmentationParams,
             seed_radius: int = 3) -> np.ndarray:
    """GrabCut of ``image`` (RGB) inside ``box`` (x0, y0, x1, y1; outside is background) with
    sure-foreground disks at ``seeds``, on a crop of the box and its context scaled to at most
    ``grabcut_max_side``; the connected component(s) holding the seeds (else the largest)."""
    H, W = image.shape[:2]
    x0, y0, x1, y1 = box
    mx, my = int(p.box_context * (x1 - x0)), int(p.box_context * (y1 - y0))
    cx0, cy0, cx1, cy1 = max(x0 - mx, 0), max(y0 - my, 0), min(x1 + mx, W), min(y1 + my, H)
    s = min(1.0, p.grabcut_max_side / max(cx1 - cx0, cy1 - cy0))
    crop = image[cy0:cy1, cx0:cx1]
    cw, ch = max(1, int(round((cx1 - cx0) * s))), max(1, int(round((cy1 - cy0) * s)))
    small = cv2.resize(crop, (cw, ch), interpolation=cv2.INTER_AREA) if s < 1 else crop
    gc = np.full((ch, cw), cv2.GC_BGD, np.uint8)
    bx0, by0 = int((x0 - cx0) * s), int((y0 - cy0) * s)
    bx1 = max(int(np.ceil((x1 - cx0) * s)), bx0 + 1)
    by1 = max(int(np.ceil((y1 - cy0) * s)), by0 + 1)
    gc[by0:by1, bx0:bx1] = cv2.GC_PR_FGD
    r = max(1, int(round(seed_radius * s)))
    seed_px = [(int(round((u - cx0) * s)), int(round((v - cy0) * s))) for u, v in seeds]
    for c in seed_px:
        cv2.circle(gc, c, r, int(cv2.GC_FGD), -1)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(GRABCUT_SEED)
    try:
        cv2.grabCut(np.ascontiguousarray(small[..., ::-1]), gc, None, bgd, fgd,
                    p.grabcut_iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:                        # one colour only: no model to fit, no object
        return np.zeros((H, W), bool)
    fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.uint8)
    if s < 1:
        fg = cv2.resize(fg, (cx1 - cx0, cy1 - cy0), interpolation=cv2.INTER_LINEAR)
        seed_px = [(int(round(u - cx0)), int(round(v - cy0))) for u, v in seeds]
    fg = _components(fg > 0, seed_px)
    out = np.zeros((H, W), bool)
    out[cy0:cy1, cx0:cx1] = fg
    out[:y0], out[y1:], out[:, :x0], out[:, x1:] = False, False, False, False
    return out


def _components(fg: np.ndarray, seeds: Sequence[tuple[int, int]]) -> np.ndarray:
    """The connected components holding a seed, or the largest when no seed is given or hit."""
    n, labels = cv2.connectedComponents(fg.astype(np.uint8), connectivity=8)
    if n <= 1:
        return fg
    h, w = fg.shape
    keep = {int(labels[min(max(r, 0), h - 1), min(max(c, 0), w - 1)]) for c, r in seeds} - {0}
    if not keep:
        keep = {int(np.argmax(np.bincount(labels.ravel())[1:])) + 1}
    return np.isin(labels, list(keep))


__all__ = ["segment_prompts", "PointPrompt", "PixelPrompt", "BoxPrompt", "Prompt",
           "PromptSegmentationParams", "PromptError", "PromptMissError"]
