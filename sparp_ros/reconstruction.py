"""The result of one reconstruction: per-view poses, metric scale, mesh, timings.

Written to ``OUT/result.json`` by the CLI and turned into ROS messages by ``ros.messages``; the node and
the CLI share this one type so that both report the same thing.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


POSE_SOURCES = ("model", "tf", "registered", "placed", "searched", "lit")
"""Where a view's pose came from: ``model`` (the network's estimate, nothing measured confirmed
it), ``tf`` (the camera poses from TF), ``registered`` (the reference view of an RGB-D capture,
or a view whose measured surface was registered to it by trusted pairs, or, where neither they
nor the placement reached it, by pairs whose surfaces agree and only the images refused),
``placed`` (a view placed against the registered views' surfaces together), ``searched`` (a
view nothing else placed, registered to a fixed view by a pair search from turns all round the
up axis: its surface fits there, but among twelve turns a wrong one that fits is likelier than
among the model's few, so it is right less often than a ``registered`` one: README "A search
all round"), ``lit`` (a view turned about the up axis until the light its object's shading
shows agrees with the other views', its surface fitting theirs as well as before: README "The
light measures the turn")."""
CONFIRMED_SOURCES = ("tf", "registered", "placed", "searched", "lit")
"""Sources whose poses a measurement confirmed: with depth, exactly the views whose surfaces were
fused into the published mesh (or posed by TF)."""


@dataclass
class ViewPose:
    """The pose of one input view. ``T_camera_object`` maps object-frame points (metres, see
    ``conventions``) into this view's camera frame; ``ok`` is False when PnP failed, and then
    ``T_camera_object`` is None and ``message`` says why. ``pose_source``: one of
    :data:`POSE_SOURCES`. Why it is kept per view: without TF, a view whose surface the
    registration could not place keeps the model's pose, which can be far off (on the bar's
    captures, 30-175°); its depth is left out of the mesh, and a consumer must not place the
    mesh with it."""

    T_camera_object: np.ndarray | None
    ok: bool
    inlier_ratio: float = 0.0
    num_correspondences: int = 0
    reprojection_error_px: float = float("nan")
    message: str = ""
    pose_source: str = "model"

    @property
    def confirmed(self) -> bool:
        """A pose that a measurement (TF, or the registered depth) confirmed."""
        return self.ok and self.pose_source in CONFIRMED_SOURCES


def with_views_left_out(recon: "Reconstruction", kept: list[int], left_out: dict[int, str],
                        cameras_K: dict[int, list]) -> "Reconstruction":
    """``recon`` of the views ``kept`` (keyframe indices, in order) widened to every keyframe:
    each view in ``left_out`` (index -> why) gets no pose (``ok`` False, ``message`` the reason)
    and a blank crop, NOCS and mask of the cells' size, its camera the keyframe's
    (``cameras_K``: index -> K). The per-stage records in ``extra`` keep the indices of the views
    reconstructed; ``extra["view_indices"]`` maps them to the keyframes and
    ``extra["left_out"]`` says which views were left out and why.

    Why: a keyframe whose object mask is empty (the object out of view or hidden) would otherwise
    fail the whole capture, though the other keyframes measure the object as well as ever."""
    n = len(kept) + len(left_out)
    if sorted(kept + list(left_out)) != list(range(n)):
        raise ValueError(f"kept {kept} and left out {sorted(left_out)} must cover 0..{n - 1} once")
    position = {k: a for a, k in enumerate(kept)}
    cell = recon.nocs[0].shape[:2]
    views, nocs, masks, crops, Ks = [], [], [], [], []
    for k in range(n):
        if k in position:
            a = position[k]
            views.append(recon.views[a])
            nocs.append(recon.nocs[a])
            masks.append(recon.nocs_masks[a])
            crops.append(recon.crops[a])
            Ks.append(recon.extra["cell_cameras"][a])
        else:
            views.append(ViewPose(T_camera_object=None, ok=False, message=f"left out: {left_out[k]}"))
            nocs.append(np.zeros((*cell, 3), np.float32))
            masks.append(np.zeros(cell, bool))
            crops.append(np.zeros((*cell, 3), np.uint8))
            Ks.append(cameras_K[k])
    extra = dict(recon.extra, cell_cameras=Ks, view_indices=list(kept),
                 left_out={str(k): why for k, why in sorted(left_out.items())})
    return replace(recon, views=views, nocs=nocs, nocs_masks=masks, crops=crops, extra=extra)


@dataclass
class Reconstruction:
    views: list[ViewPose]
    scale: float                    # metres per NOCS unit (= the bounding-box diagonal)
    scale_source: str               # "depth" | "camera_motion" | "prior"
    confidence: float               # in [0, 1]
    backend: str
    mesh: Any = None                # trimesh.Trimesh in the object frame, metres, vertex colours
    mesh_measured: np.ndarray | None = None  # per mesh vertex: True = fused from measured depth,
                                             # False = inferred by the model; None = all inferred
                                             # (no depth) or no mesh
    timings: dict[str, float] = field(default_factory=dict)
    nocs: list[np.ndarray] = field(default_factory=list)      # per view, cell-size HxWx3 predictions
    nocs_masks: list[np.ndarray] = field(default_factory=list)
    crops: list[np.ndarray] = field(default_factory=list)     # per view, cell-size RGB crops
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def reference_view(self) -> int:
        """Index of the first view with a pose (the one the object frame is tied to)."""
        for i, v in enumerate(self.views):
            if v.ok:
                return i
        return -1

    @property
    def published_view(self) -> int:
        """Index of the view whose pose places the result for a robot (-1 when none has a pose):
        the most recent view whose pose a measurement confirmed (``ViewPose.confirmed``: TF, or
        its depth registered and fused), else, when none is, the most recent view with a pose
        (its camera is nearest to where the robot is now). Why not simply the most recent:
        without TF, a view whose surface could not be registered keeps the model's pose, which
        can be far off, and its depth is not in the mesh; placed with it, the mesh would stand
        where the object is not. A ``searched`` view counts as confirmed (its depth is fused):
        preferring a registered view over a more recent searched one was measured neutral to
        slightly worse (``fscore_published`` on the six 25-capture sets of README "A search all
        round": -0.006 to +0.014), so the rule stays the most recent."""
        confirmed = [i for i, v in enumerate(self.views) if v.confirmed]
        return confirmed[-1] if confirmed else self.latest_posed_view

    @property
    def latest_posed_view(self) -> int:
        """Index of the most recent view with a pose (-1 when none has one)."""
        return max((i for i, v in enumerate(self.views) if v.ok), default=-1)

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "scale": self.scale,
            "scale_source": self.scale_source,
            "confidence": self.confidence,
            "published_view": self.published_view,
            "views": [{"T_camera_object": None if v.T_camera_object is None else v.T_camera_object.tolist(),
                       "ok": v.ok, "inlier_ratio": v.inlier_ratio,
                       "num_correspondences": v.num_correspondences,
                       "reprojection_error_px": v.reprojection_error_px, "message": v.message,
                       "pose_source": v.pose_source}
                      for v in self.views],
            "timings_s": self.timings,
            "mesh": None if self.mesh is None else {
                "vertices": int(len(self.mesh.vertices)), "faces": int(len(self.mesh.faces)),
                "measured_vertices": 0 if self.mesh_measured is None else int(self.mesh_measured.sum())},
            **self.extra,
        }
