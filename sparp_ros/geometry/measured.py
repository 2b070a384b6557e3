"""Poses and surface from the depth the camera measured (DESIGN §2's table, the RGB-D rows).

The pipeline's model stages give every view a pose (PnP on its NOCS, aligned by the azimuth
search or by TF) and a predicted shape; this stage takes over wherever views have depth:

* **Up, without TF** (``assume_upright``): every view that sees the table under its object
  (``support.support_plane``) takes the object's up axis from the table's normal, in every
  hypothesis; pairs of such views keep their tilt and height the tables' throughout the
  registration (``registration.snap_to_support``), and so do placements. The model supplies
  the heading only.
* **RGB-D without TF**: the model's poses (one set per azimuth hypothesis) only start the
  registration of the measured surfaces (``registration.register_views``); the hypothesis whose
  registered surfaces agree best wins (not simply the search's first). Where two views see
  the object's print, its matches (``features.py``, lifted by the depth) start and confirm the
  pair's placement (``min_matches``; README "The print measures the turn"). A view that no single
  registered view overlaps enough is then placed against all of them together
  (``registration.place_unregistered``) and fused when its surface keeps out of the space they
  saw empty; failing that, it follows a pair that only the images refused
  (``registration.chain_past_images``), and failing that, a pair search from turns all round
  the up axis registers it to a fixed view (``registration.search_all_round``,
  ``SEARCH_ALL_ROUND``; its pose source ``searched``: right less often than a registered
  view); otherwise it keeps the model's pose and its depth is left out. Last, where the views'
  objects show the light (``lighting.estimate_light``: a plain matte object under a lamp fixed
  in the room), a view whose light disagrees with the anchor's is turned about up to it when its
  surface still keeps the others' free space and overlaps them (``registration.turn_to_light``,
  ``LIGHT_TURNS``; pose source ``lit``): the light measures the turn of a round object that its
  surfaces cannot.
* **RGB-D with TF**: the relative poses are TF's, exactly; the object's position is one point in
  the world, the mean of the views' estimates. ``correct_hand_eye`` first corrects TF's camera
  poses by one hand-eye transform shared by every view, found from the measured surfaces
  (``hand_eye``), and reports it.
* **Surface**: TSDF fusion of the measured depth at those poses, completed by the model's shape
  where nothing was measured (``fusion``); every vertex says which it is.
* **Frame and size**: the object frame's origin moves to the centre of the surface's resting box
  (the smallest box about the up axis), and its diagonal is the object's size: metric by
  construction, no scale estimate needed. Orientation: z up is TF's, the support plane's or
  the model's (in that order); the heading the model's.

ROS-free, numpy + open3d; the pipeline hands it full-resolution frames and metric poses.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from ..capture import Frame
from ..conventions import invert_rigid, rotation_angle_deg, transform_points
from .features import view_features
from .fusion import (RESTING_BOX, DepthView, SurfaceMesh, complete_surface, fuse_views,
                     measured_points, resting_box, smooth_depth, usable_depth, voxel_size_for)
from .hand_eye import estimate_hand_eye
from .lighting import estimate_light
from .registration import (RegistrationParams, RegistrationView, chromaticity, depth_noise,
                           chain_past_images, grey_image, place_unregistered,
                           light_moves_with_camera, register_views, search_all_round,
                           turn_to_light)
from .support import SupportPlane, level_pose, support_plane, tilt_deg
from .table import table_view

log = logging.getLogger("sparp_ros.measured")

MIN_DEPTH_POINTS = 200
"""A view needs this many usable depth pixels on its object to count as measured."""
COVERED_DISTANCE = 0.04
"""Completion: predicted surface within this fraction of the object's size of the measured one is
dropped (the measurement covers it; the model's shape is coarser than this)."""
FREE_SPACE_TOLERANCE = 0.02
"""Completion: a predicted point more than this fraction of the object's size in front of a
view's measured surface lies where that view saw empty space."""
REGISTRATION_VOXELS = 3.0
"""Registration downsamples the measured points to this many fusion voxels (speed; ICP's accuracy
comes from the fine gate, not the point density)."""


@dataclass
class MeasuredResult:
    """Poses (object frame → camera, metres, re-centred), the surface in that frame, its size."""

    T_camera_object: list[np.ndarray | None]
    mesh: SurfaceMesh | None
    diagonal: float
    record: dict = field(default_factory=dict)
    pose_sources: list[str] = field(default_factory=list)   # per view, reconstruction.POSE_SOURCES


def usable_depths(frames: Sequence[Frame]) -> list[np.ndarray | None]:
    """Each frame's usable depth (``fusion.usable_depth``; 0 on every other pixel), or None
    without depth or mask: found once per view, used by every step of the stage."""
    return [None if f.depth is None or f.mask is None else
            np.where(usable_depth(f.depth, f.mask), f.depth, 0.0).astype(np.float32) for f in frames]


def measured_views(frames: Sequence[Frame],
                   usable: Sequence[np.ndarray | None] | None = None) -> list[bool]:
    """Which frames have enough usable depth on their object to be measured (``usable``: their
    :func:`usable_depths`, found here when not given)."""
    usable = usable_depths(frames) if usable is None else usable
    return [d is not None and int((d > 0).sum()) >= MIN_DEPTH_POINTS for d in usable]


def poses_from_tf(T_camera_object: Sequence[np.ndarray | None],
                  frames: Sequence[Frame]) -> list[np.ndarray | None]:
    """With every posed view's camera pose known (TF): one object pose in the world — the
    orientation of the reference view's estimate (the pipeline has made them agree), the position
    the mean of the views' estimates in the world — seen from each camera. Relative poses are then
    exactly TF's."""
    posed = [k for k, T in enumerate(T_camera_object) if T is not None]
    T_world = [frames[k].T_world_camera @ np.asarray(T_camera_object[k], float) for k in posed]
    T_world_object = np.eye(4)
    T_world_object[:3, :3] = T_world[0][:3, :3]
    T_world_object[:3, 3] = np.mean([T[:3, 3] for T in T_world], axis=0)
    out: list[np.ndarray | None] = [None] * len(frames)
    for k in posed:
        out[k] = invert_rigid(frames[k].T_world_camera) @ T_world_object
    return out


def registration_views(frames: Sequence[Frame], measured: Sequence[bool],
                       usable: Sequence[np.ndarray | None] | None = None,
                       planes: Sequence[SupportPlane | None] | None = None,
                       noises: Sequence[float] | None = None,
                       object_size: float | None = None, lights: bool = False,
                       features: bool = False) -> list[RegistrationView | None]:
    """Each measured frame's usable depth points (camera frame) with that depth, its mask and
    camera (``usable``: the frames' :func:`usable_depths`, found here when not given), and,
    where the view sees its support plane (``planes``) and ``object_size`` (the object's diagonal,
    metres) is given, the table around the object from above (``table.table_view``);
    ``lights``: each view's light (``lighting.estimate_light``); ``features``: its object's
    print (``features.view_features``). The registration takes the depth unsmoothed: its thresholds were chosen on it, and on the seed-0
    captures the smoothed depth that fusion uses moved its result (median 4.3° -> 6.3°, Acc@30
    0.73 -> 0.81) without making it better."""
    usable = usable_depths(frames) if usable is None else usable
    out: list[RegistrationView | None] = []
    planes = [None] * len(frames) if planes is None else planes
    noises = depth_noises(usable) if noises is None else noises
    for f, ok, depth, plane, noise in zip(frames, measured, usable, planes, noises):
        if not ok:
            out.append(None)
            continue
        points, uv = measured_points(DepthView(f.image, depth, f.mask, f.camera, np.eye(4),
                                               cleaned=True))
        colours = chromaticity(f.image[uv[:, 1].astype(int), uv[:, 0].astype(int)])
        table = (None if plane is None or object_size is None or f.depth is None else
                 table_view(f.image, f.depth, f.mask, f.camera, plane, np.median(points, axis=0),
                            object_size))
        light = estimate_light(f.image, depth, f.mask, f.camera) if lights else None
        print_ = view_features(f.image, depth, f.mask, f.camera) if features else None
        # the free-space test trusts only usable depth: a flying pixel at the rim, pushed behind
        # the object, would make the true surface of another view look like it lies in front
        out.append(RegistrationView(points, depth, f.mask, f.camera, colours,
                                    noise_m=noise, support=plane, grey=grey_image(f.image, f.mask),
                                    table=table, light=light, features=print_))
    return out


SEARCH_ALL_ROUND = True
"""The default: whether views that nothing else placed are registered by a pair search all round the up axis
(``registration.search_all_round``): on the bar's captures Acc@15 0.760 → 0.793 and F@5 % 0.926
→ 0.934 (seed 0), at 0.40 s a capture on average (README "A search all round")."""
LIGHT_TURNS = True
"""The default: whether views whose light disagrees with the anchor's are turned to it
(``registration.turn_to_light``; README "The light measures the turn")."""
SEARCH_STEP_DEG = 30.0
"""The search's turns: every 30° (every 45°: Acc@15 0.787 / 0.633 / 0.707 on seeds 0 / 100 / 300
and 0.627 on the photograph-like seed 0, against 0.793 / 0.620 / 0.713 and 0.653)."""


def measure(frames: Sequence[Frame], hypotheses: Sequence[Sequence[np.ndarray | None]],
            size_estimate: float, reference: int, use_tf: bool, register: bool = True,
            predicted: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
            predicted_pose: np.ndarray | None = None,
            colour_weight: float = RegistrationParams.colour_weight,
            level_on_support: bool = True,
            min_image_agreement: float = RegistrationParams.min_image_agreement,
            search_unplaced: bool = SEARCH_ALL_ROUND,
            min_table_agreement: float = RegistrationParams.min_table_agreement,
            light_turns: bool = LIGHT_TURNS,
            min_matches: int = RegistrationParams.min_matches) -> MeasuredResult:
    """The RGB-D stage (module docstring).

    ``hypotheses``: the model's metric poses per azimuth hypothesis, best first (one set with TF);
    ``size_estimate``: the object's diagonal as the model and the depth scale see it (sets the
    registration gates and the fusion voxel); ``use_tf``: relative poses from the frames'
    ``T_world_camera``; ``register``: refine by registration (without TF always worth it; with
    TF: one hand-eye correction shared by all views, ``hand_eye``); ``predicted``: the model's shape (vertices in metres, faces,
    colours) in a frame the reference camera sees at ``predicted_pose`` (default: the
    first hypothesis' reference pose); it is moved into the registered object frame.
    ``colour_weight``, ``min_image_agreement``: ``RegistrationParams``'s; ``level_on_support`` (without TF):
    every view that sees the plane its object stands on takes its up axis from that plane
    (``support``), for every hypothesis, before the registration starts from them.
    ``search_unplaced``: views nothing else placed are registered by a pair search all round
    the up axis (``registration.search_all_round``). ``min_table_agreement``:
    ``RegistrationParams``'s; views that see their support plane bring the table around the
    object (``table.py``) to judge the pairs' candidates (0: the object's surfaces alone).
    ``light_turns``: views whose object's shading measures the light (``lighting.py``) are
    turned about up to agree with the anchor's light where their surfaces allow it
    (``registration.turn_to_light``). ``min_matches``: ``RegistrationParams``'s; the views'
    object's print (``features.py``) starts and confirms the pairs' placements (0: off). Raises :class:`FusionError` when nothing could be fused."""
    record: dict = {}
    usable = usable_depths(frames)                 # once per view, for every step below
    measured = measured_views(frames, usable)
    record["measured_views"] = [int(k) for k, m in enumerate(measured) if m]
    voxel = voxel_size_for(size_estimate)
    poses = [None if T is None else np.asarray(T, float) for T in hypotheses[0]]
    if use_tf:
        poses = poses_from_tf(poses, frames)
        record["poses"] = "tf"
    noises = depth_noises(usable)
    planes: list[SupportPlane | None] = [None] * len(frames)
    if level_on_support and not use_tf:
        planes = support_planes(frames, usable, noises)
        hypotheses = _level_on_support(planes, hypotheses, record)
        poses = list(hypotheses[0])
    registered = [True] * len(frames)
    sources = ["tf" if use_tf else "model"] * len(frames)
    if register and use_tf:
        poses = _correct_hand_eye(frames, measured, usable, noises, poses, hypotheses[0],
                                  size_estimate, voxel, record)
    elif register:
        params = RegistrationParams(voxel=REGISTRATION_VOXELS * voxel, object_size=size_estimate,
                                    colour_weight=colour_weight,
                                    min_image_agreement=min_image_agreement,
                                    min_table_agreement=min_table_agreement,
                                    min_matches=min_matches)
        views = registration_views(frames, measured, usable, planes, noises,
                                   size_estimate if min_table_agreement > 0 else None,
                                   lights=light_turns, features=min_matches > 0)
        result = register_views(views, hypotheses, params, reference)
        record["registration"] = result.to_dict()
        tables = [k for k, v in enumerate(views) if v is not None and v.table is not None]
        confirmed = [[p.i, p.j] for p in result.pairs if p.table_confirmed]
        record["registration"]["table_views"] = tables
        if len(tables) > 1:
            log.info("registration: views %s see the table around the object; it confirmed "
                     "pairs %s", tables, confirmed or "none (too little print, or overlap)")
        printed = [[p.i, p.j] for p in result.pairs if p.match_confirmed]
        record["registration"]["print_confirmed"] = printed
        if printed:
            log.info("registration: the object's print confirmed pairs %s", printed)
        corrections = {}
        for k, (T0, T1) in enumerate(zip(poses, result.T_camera_object)):
            if T0 is not None and T1 is not None and result.registered[k] and k != reference:
                rel0 = T0 @ invert_rigid(poses[reference])
                rel1 = T1 @ invert_rigid(result.T_camera_object[reference])
                corrections[str(k)] = {"rotation_deg": rotation_angle_deg(rel1[:3, :3] @ rel0[:3, :3].T),
                                       "translation_m": float(np.linalg.norm(rel1[:3, 3] - rel0[:3, 3]))}
        record["registration"]["corrections"] = corrections
        record["poses"] = "registration" if sum(result.registered) > 1 else "model"
        # views no trusted pair reached: placed against the registered views together
        poses, placements = place_unregistered(views, result.T_camera_object,
                                               result.registered, params, result.pairs)
        record["registration"]["placed"] = [p.to_dict() for p in placements]
        placed = {k for p in placements if p.placed for k in p.views}
        sources = ["registered" if r else "placed" if k in placed else "model"
                   for k, r in enumerate(result.registered)]
        if placements:
            # the registration's own message repeats the views unless it says more
            detail = "" if result.message.startswith("views ") else f" ({result.message})"
            log.info("registration: views %s overlap no registered view enough%s; placed "
                     "against the registered surfaces: %s",
                     sorted(k for p in placements for k in p.views), detail,
                     sorted(placed) or "none (their surfaces would cut through space the "
                     "registered views saw empty)")
        # a view still at the model's pose follows a pair its surfaces trusted, images or not
        poses, overruled = chain_past_images(poses, [s != "model" for s in sources], result.pairs)
        record["registration"]["images_overruled"] = overruled
        if overruled:
            log.info("registration: views %s follow pairs whose surfaces agree though their "
                     "images do not (neither a trusted pair nor the placement reached them)",
                     overruled)
        for k in overruled:
            sources[k] = "registered"
        if search_unplaced:
            poses, searched = search_all_round(views, poses, [s != "model" for s in sources],
                                               params, step_deg=SEARCH_STEP_DEG)
            record["registration"]["searched_all_round"] = [p.to_dict() for p in searched]
            if searched:
                log.info("registration: views %s registered by a search all round",
                         [p.j for p in searched])
            for p in searched:
                sources[p.j] = "searched"
        if light_turns:
            poses, turns = turn_to_light(views, poses, [s != "model" for s in sources], params,
                                         reference)
            record["registration"]["light"] = {
                "views": {str(k): v.light.to_dict() for k, v in enumerate(views)
                          if v is not None and v.light is not None},
                "moves_with_camera": light_moves_with_camera(views),
                "turns": [t.to_dict() for t in turns]}
            if record["registration"]["light"]["moves_with_camera"]:
                log.info("registration: every view sees the light from the same side of its "
                         "camera (a light on the camera?): it measures no turn")
            turned = [t.view for t in turns if t.turned]
            if turns:
                log.info("registration: views %s see the light from another side than view %d; "
                         "turned to it: %s", [t.view for t in turns], turns[0].anchor,
                         turned or "none (so turned, their surfaces would cut through "
                         "space the other views saw empty, or lose the light)")
            for k in turned:
                sources[k] = "lit"
        registered = [s != "model" for s in sources]
        kept = [k for k, v in enumerate(views) if v is not None and sources[k] == "model"]
        if kept:
            log.info("registration: views %s keep the model's pose (their depth is not fused)", kept)
    elif not use_tf:
        record["poses"] = "model"
    # a view whose pose the surfaces could not confirm would smear a misplaced copy of its
    # surface into the fusion: only registered or placed views (or TF's) are fused
    # fusion takes the depth smoothed (fusion.clean_depth): TSDF uses one pixel per voxel
    depth_views = [DepthView(f.image, smooth_depth(d), f.mask, f.camera, T, cleaned=True)
                   for f, d, T, m, r in zip(frames, usable, poses, measured, registered)
                   if m and r and T is not None]
    surface = fuse_views(depth_views, voxel)
    record["fusion"] = {"voxel_m": voxel, "views": len(depth_views),
                        "measured_vertices": int(len(surface.vertices))}
    if predicted is not None:
        V, F, C = predicted
        seen_at = hypotheses[0][reference] if predicted_pose is None else predicted_pose
        V = transform_points(invert_rigid(poses[reference]) @ np.asarray(seen_at, float), V)
        surface = complete_surface(surface, V, F, C, depth_views, COVERED_DISTANCE * size_estimate,
                                   FREE_SPACE_TOLERANCE * size_estimate)
    record["fusion"]["inferred_vertices"] = int((~surface.measured).sum())
    centre, extent = resting_box(surface.vertices)
    shift = np.eye(4)
    shift[:3, 3] = centre                                     # new object frame -> old one
    surface = SurfaceMesh(surface.vertices - centre, surface.faces, surface.colors, surface.measured)
    poses = [None if T is None else T @ shift for T in poses]
    diagonal = float(np.linalg.norm(extent))
    record["size"] = size_record(extent)
    return MeasuredResult(poses, surface, diagonal, record, sources)


def _correct_hand_eye(frames: Sequence[Frame], measured: Sequence[bool],
                      usable: Sequence[np.ndarray | None], noises: Sequence[float],
                      poses: list[np.ndarray | None], first: Sequence[np.ndarray | None],
                      size_estimate: float, voxel: float, record: dict) -> list[np.ndarray | None]:
    """TF's poses after one hand-eye correction shared by every view (``hand_eye``), when the
    measured surfaces support one; TF's own otherwise. Records it (``hand_eye``) and logs it."""
    views = registration_views(frames, measured, usable, None, noises)
    try:
        correction = estimate_hand_eye(views, [f.T_world_camera for f in frames], size_estimate,
                                       REGISTRATION_VOXELS * voxel)
    except Exception as exc:  # noqa: BLE001 - an optional repair must not cost the reconstruction
        log.warning("hand-eye correction failed (%s: %s); TF's camera poses kept",
                    type(exc).__name__, exc)
        record["hand_eye"] = {"accepted": False, "message": f"failed: {type(exc).__name__}: {exc}"}
        record["poses"] = "tf"
        return poses
    record["hand_eye"] = correction.to_dict()
    if not correction.accepted:
        record["poses"] = "tf"
        log.info("hand-eye correction not applied: %s; TF's camera poses kept", correction.message)
        return poses
    record["poses"] = "tf+hand_eye"
    log.info("hand-eye correction from the measured surfaces of views %s: %.2f° / %.1f mm "
             "(their distance %.2f -> %.2f mm RMS)", correction.views, correction.rotation_deg,
             1000 * correction.translation_m, 1000 * correction.rms_before_m,
             1000 * correction.rms_after_m)
    corrected = [f if f.T_world_camera is None else
                 replace(f, T_world_camera=np.asarray(f.T_world_camera, float) @ correction.T)
                 for f in frames]
    return poses_from_tf(first, corrected)


def depth_noises(usable: Sequence[np.ndarray | None]) -> list[float]:
    """Each view's depth noise on its object (``registration.depth_noise``; 0 without depth),
    measured once for the support plane and the registration."""
    return [0.0 if d is None else depth_noise(d, d > 0) for d in usable]


def support_planes(frames: Sequence[Frame], usable: Sequence[np.ndarray | None],
                   noises: Sequence[float]) -> list[SupportPlane | None]:
    """Each view's support plane under its object (``support.support_plane``; ``noises``: the
    views' :func:`depth_noises`), or None."""
    out: list[SupportPlane | None] = []
    for f, d, noise in zip(frames, usable, noises):
        if f.depth is None or f.mask is None or d is None or not (d > 0).any():
            out.append(None)
            continue
        out.append(support_plane(f.depth, f.mask, f.camera, noise))
    return out


def _level_on_support(planes: Sequence[SupportPlane | None], hypotheses, record: dict):
    """The hypotheses with every view that sees its support plane levelled on it: the tilt
    measured, the heading the model's. Records which views and by how much the model's tilt was
    off."""
    levelled = [k for k, p in enumerate(planes) if p is not None]
    first = hypotheses[0]
    record["support"] = {"views": levelled,
                         "model_tilt_deg": {str(k): tilt_deg(first[k], planes[k].normal)
                                            for k in levelled if first[k] is not None}}
    if not levelled:
        return [[None if T is None else np.asarray(T, float) for T in h] for h in hypotheses]
    log.info("support plane under the object in views %s: their up axis is measured (the "
             "model's was off by %s°)", levelled,
             ", ".join(f"{v:.0f}" for v in record["support"]["model_tilt_deg"].values()))
    return [[None if T is None else (level_pose(T, planes[k].normal) if planes[k] is not None
                                     else np.asarray(T, float)) for k, T in enumerate(h)]
            for h in hypotheses]


def size_record(extent: np.ndarray) -> dict:
    """What the stage's size is (the record's ``size``): the resting box's side lengths and
    diagonal, and the name of that definition (``fusion.RESTING_BOX``), so that an evaluation
    compares it with the same box of the true object (a box in other axes is another size)."""
    extent = np.asarray(extent, float)
    return {"definition": RESTING_BOX, "extent_m": [float(e) for e in extent],
            "diagonal_m": float(np.linalg.norm(extent))}


__all__ = ["MeasuredResult", "measure", "measured_views", "usable_depths", "depth_noises",
           "support_planes", "poses_from_tf", "registration_views", "size_record"]
