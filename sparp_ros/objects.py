"""Every object of one trigger: which segmented objects to reconstruct, one pipeline call each,
and where each one is (for stable IDs across triggers).

Why one pipeline call per object and not a batch: each object has its own views (an object that a
keyframe does not see is left out of that object's views only), its own crops and scale, and the
pipeline's stages already batch the views of one object; batching across objects would only pay
for the diffusion step on a GPU. The ROS node calls this and publishes the results; the CLI and the
benchmarks can call it too (ROS-free).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

from .capture import Frame
from .reconstruction import Reconstruction
from .segment_depth import ObjectMasks

MIN_MASK_PX = 64
"""An object smaller than this in every view it is seen in is left out: too few pixels to crop."""


@dataclass
class ObjectResult:
    """One segmented object: the keyframes that see it (indices into the trigger's frames), its
    reconstruction (None with ``error`` when the pipeline refused it), and its centre: in the world
    frame when the keyframes have camera poses (TF), else in the camera of its first view."""

    masks: ObjectMasks
    views: list[int]
    reconstruction: Reconstruction | None = None
    error: str | None = None
    centre: np.ndarray | None = None
    centre_in_world: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.reconstruction is not None

    @property
    def size_m(self) -> float:
        """The object's size (bounding-box diagonal, metres); 0 when not reconstructed."""
        return float(self.reconstruction.scale) if self.reconstruction is not None else 0.0


def _centre_distance(mask: np.ndarray) -> float:
    """Distance of the mask's centroid from the image centre, in image diagonals."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    return float(np.hypot(xs.mean() - (w - 1) / 2.0, ys.mean() - (h - 1) / 2.0) / np.hypot(w, h))


def order_objects(objects: Sequence[ObjectMasks], max_objects: int,
                  min_mask_px: int = MIN_MASK_PX) -> tuple[list[ObjectMasks], list[str]]:
    """The objects to reconstruct, most central first (in the first view that sees each), at most
    ``max_objects``; and one line per object left out, with the reason. Why most central first:
    the camera was pointed at what matters, and the first is the one the single-object outputs
    (``object_pose``, the ``object_id`` frame) carry."""
    kept, skipped, scored = [], [], []
    for o in objects:
        seen = [i for i in o.frames_seen if int(o.masks[i].sum()) >= min_mask_px]
        if not seen:
            skipped.append(f"object {o.id}: smaller than {min_mask_px} px in every view")
            continue
        scored.append((seen[0], _centre_distance(o.masks[seen[0]]), o))
    scored.sort(key=lambda s: (s[0], s[1]))
    for rank, (_, _, o) in enumerate(scored):
        if rank < max_objects:
            kept.append(o)
        else:
            skipped.append(f"object {o.id}: beyond max_objects={max_objects} (less central)")
    return kept, skipped


def object_frames(frames: Sequence[Frame], masks: ObjectMasks,
                  min_mask_px: int = MIN_MASK_PX) -> tuple[list[Frame], list[int]]:
    """The keyframes that see the object, each masked to it, and their indices."""
    views = [i for i in masks.frames_seen if int(masks.masks[i].sum()) >= min_mask_px]
    return [replace(frames[i], mask=masks.masks[i]) for i in views], views


def object_centre(recon: Reconstruction, frames: Sequence[Frame], views: Sequence[int]
                  ) -> tuple[np.ndarray | None, bool]:
    """The object frame's origin: in the world frame through the first posed view's camera pose
    from TF when it has one, else in that view's camera frame (False)."""
    for k, view in enumerate(recon.views):
        if not view.ok:
            continue
        origin_camera = view.T_camera_object[:3, 3]
        T_world_camera = frames[views[k]].T_world_camera
        if T_world_camera is not None:
            return T_world_camera[:3, :3] @ origin_camera + T_world_camera[:3, 3], True
        return origin_camera.copy(), False
    return None, False


def reconstruct_objects(pipeline: Callable[[list[Frame]], Reconstruction], frames: Sequence[Frame],
                        objects: Sequence[ObjectMasks], errors: tuple[type[Exception], ...] = (ValueError,),
                        log: Callable[[str], None] | None = None) -> list[ObjectResult]:
    """Run ``pipeline`` once per object on the keyframes that see it. An object the pipeline
    refuses (one of ``errors``) keeps its reason in ``error``; the others still run. ``log`` gets
    one line per object (progress on a multi-second call; default: this module's logger)."""
    log = log or logging.getLogger("sparp_ros.objects").info
    results = []
    for n, masks in enumerate(objects):
        object_views_frames, views = object_frames(frames, masks)
        result = ObjectResult(masks=masks, views=views)
        t0 = time.perf_counter()
        try:
            recon = pipeline(object_views_frames)
        except errors as exc:
            result.error = f"{type(exc).__name__}: {exc}"
        else:
            result.reconstruction = recon
            result.centre, result.centre_in_world = object_centre(recon, frames, views)
        result.seconds = time.perf_counter() - t0
        log(f"object {masks.id} ({n + 1}/{len(objects)}): " + (
            f"{len(views)} views, size {result.size_m:.3f} m, {result.seconds:.2f} s"
            if result.ok else f"failed: {result.error}"))
        results.append(result)
    return results
