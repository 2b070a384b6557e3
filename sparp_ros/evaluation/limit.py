"""The measurement limit: what the sensor allows, as a method of the evaluation.

``measurement_limit(capture)`` fuses the capture's own masked depth with the *true* camera poses
(``gt.json``), the same TSDF fusion the pipeline uses (``geometry.fusion``) at the same voxel
size, and returns it as a :class:`Reconstruction`. Its row in a report says how good a posed mesh
can be from these depth images: a method's F-score against it separates pose error from what the
sensor never saw or measured wrong. Evaluation only (it reads the ground truth)."""
from __future__ import annotations

import numpy as np

from ..capture import Capture
from ..geometry.fusion import DepthView, clean_depth, fuse_views, resting_box, voxel_size_for
from ..geometry.measured import size_record
from ..reconstruction import Reconstruction, ViewPose

LIMIT_METHOD = "limit"
"""The evaluation method name of the measurement limit (``sparp-ros eval --backend limit``)."""


def measurement_limit(capture: Capture) -> Reconstruction:
    """The capture's depth fused with its true poses (module docstring). Raises ``ValueError``
    without ground truth and ``FusionError`` without depth on the objects."""
    if capture.gt is None:
        raise ValueError("the measurement limit needs gt.json (the true camera poses)")
    poses = [np.asarray(T, float) for T in capture.gt.T_camera_object]
    views = [DepthView(f.image, clean_depth(f.depth, f.mask), f.mask, f.camera, T, cleaned=True)
             for f, T in zip(capture.frames, poses) if f.depth is not None and f.mask is not None]
    diagonal = (capture.gt.extra.get("canonical") or {}).get("diagonal")
    if not diagonal:
        # no stated size: one from the depth itself, fused coarsely first
        diagonal = float(np.linalg.norm(resting_box(fuse_views(views, 0.01).vertices)[1]))
    surface = fuse_views(views, voxel_size_for(float(diagonal)))
    _, extent = resting_box(surface.vertices)
    return Reconstruction(
        views=[ViewPose(T_camera_object=T, ok=True, inlier_ratio=1.0) for T in poses],
        scale=float(np.linalg.norm(extent)), scale_source="depth", confidence=1.0,
        backend=LIMIT_METHOD, mesh=surface.to_trimesh(), mesh_measured=surface.measured,
        extra={"measured": {"poses": "ground truth", "fusion": {"views": len(views)},
                            "size": size_record(extent)}})


__all__ = ["LIMIT_METHOD", "measurement_limit"]
