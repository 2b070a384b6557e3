"""Stable object ids across triggers: "every object on the table", trigger after trigger.

Each trigger reconstructs the objects it segmented; a planner (and the TF frames
``sparp_object_<id>``) needs the *same* id for the same object in the next trigger, and a new id
for an object that was not there before. Segmentation ids are only stable within one call
(``segment_depth.ObjectMasks.id``), so this module matches the objects of a trigger to the
objects of earlier triggers by where they are:

1. at most ``max_objects`` objects are kept per trigger, those nearest the image centre (angle
   off the optical axis) or nearest the camera; the others are reported with the reason;
2. the kept objects are matched to the known tracks of the same frame (Hungarian assignment,
   ``scipy.optimize.linear_sum_assignment``, on centre distance) and a pair only counts when the
   centres are nearer than ``gate_factor`` times the object's size (plus ``min_gate_m``, the
   centre's own noise between triggers): a small object that moved by its own size is a new
   object, a large one that moved a little is the same;
3. unmatched objects get fresh ids: monotonic integers from 0, never reused until ``reset()``
   (a planner that still holds ``object_3`` must never see it point at another object);
4. every track keeps its last centre, size and pose, also while unseen, until ``reset()`` (or
   until ``max_tracks`` newer ones push the least recently seen out).

Positions are compared in one frame per track (``frame_id``): the world frame when TF gives
camera poses. Without TF the positions are in the camera frame, so ids only stay stable while
the camera does not move between triggers. Tracks of another frame are never matched.
No ROS; numpy and scipy only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .assignment import gated_assignment

RANK_BY = ("centre", "camera")
UNMATCHED_COST = 1e9


@dataclass(frozen=True)
class TrackParams:
    """How objects are matched and how many are kept (metres)."""

    gate_factor: float = 0.5       # same object when the centres are nearer than this times
    min_gate_m: float = 0.02       # the larger size, plus this (centre noise between triggers)
    max_objects: int = 0           # per trigger; 0: no limit
    rank_by: str = "centre"        # which are kept over max_objects: "centre" (smallest angle
                                   # off the camera's optical axis) or "camera" (nearest)
    max_tracks: int = 256          # tracks remembered; the least recently seen go first

    def __post_init__(self) -> None:
        if not self.gate_factor >= 0:
            raise ValueError(f"TrackParams.gate_factor must be >= 0, got {self.gate_factor!r}")
        if not self.min_gate_m >= 0:
            raise ValueError(f"TrackParams.min_gate_m must be >= 0, got {self.min_gate_m!r}")
        if self.gate_factor == 0 and self.min_gate_m == 0:
            raise ValueError("TrackParams: gate_factor and min_gate_m are both 0, nothing could "
                             "ever match")
        if self.max_objects < 0:
            raise ValueError(f"TrackParams.max_objects must be >= 0 (0: no limit), "
                             f"got {self.max_objects!r}")
        if self.rank_by not in RANK_BY:
            raise ValueError(f"TrackParams.rank_by must be one of {RANK_BY}, got {self.rank_by!r}")
        if self.max_tracks < 1:
            raise ValueError(f"TrackParams.max_tracks must be >= 1, got {self.max_tracks!r}")


@dataclass
class ObservedObject:
    """One object reconstructed in this trigger, as the tracker needs it.

    ``centre``: 3D centre in the trigger's frame (world, or camera without TF), metres;
    ``size``: a length that says how big it is (e.g. its bounding-box diagonal), metres;
    ``pose``: optional 4x4 ``T_frame_object`` to remember; ``data``: anything the caller wants
    back with the id (e.g. the ``ObjectMasks`` or the reconstruction)."""

    centre: np.ndarray
    size: float
    pose: np.ndarray | None = None
    data: Any = None

    def __post_init__(self) -> None:
        c = np.asarray(self.centre, dtype=np.float64).reshape(-1)
        if c.shape != (3,) or not np.all(np.isfinite(c)):
            raise ValueError(f"ObservedObject.centre must be 3 finite numbers, got {self.centre!r}")
        self.centre = c
        if not (np.isfinite(self.size) and self.size >= 0):
            raise ValueError(f"ObservedObject.size must be a finite length >= 0, got {self.size!r}")
        self.size = float(self.size)
        if self.pose is not None:
            T = np.asarray(self.pose, dtype=np.float64)
            if T.shape != (4, 4) or not np.all(np.isfinite(T)):
                raise ValueError(f"ObservedObject.pose must be a finite 4x4 matrix, got shape "
                                 f"{T.shape}")
            self.pose = T


@dataclass
class Track:
    """What is remembered of one object: where it was last seen (in ``frame_id``)."""

    id: int
    frame_id: str
    centre: np.ndarray
    size: float
    pose: np.ndarray | None
    first_trigger: int
    last_trigger: int
    times_seen: int = 1


@dataclass
class Assignment:
    """An observed object (``index`` into the trigger's list) and the id it got."""

    index: int
    id: int
    new: bool                      # a fresh id (no earlier object within the gate)
    moved_m: float | None          # centre distance to the track's last centre; None when new
    data: Any = None


@dataclass
class Dropped:
    """An observed object that was not given an id, and why."""

    index: int
    reason: str


@dataclass
class TrackUpdate:
    """The result of one trigger: ids in input order of the kept objects, the dropped ones, and
    the known ids that were not seen this time (their last pose is still in ``tracks``)."""

    trigger: int
    assigned: list[Assignment] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)
    unseen: list[int] = field(default_factory=list)

    @property
    def ids(self) -> list[int]:
        return [a.id for a in self.assigned]


class ObjectTracker:
    """Ids that stay with the objects across triggers (see the module docstring).

    Not thread-safe: the node calls ``update`` from its one reconstruction worker and ``reset``
    from a service; serialise them (one lock) if those run in different threads."""

    def __init__(self, params: TrackParams | None = None) -> None:
        self.params = params or TrackParams()
        self._tracks: dict[int, Track] = {}
        self._next_id = 0
        self._trigger = 0

    # -- state ---------------------------------------------------------------------------------
    @property
    def tracks(self) -> list[Track]:
        """Every remembered object, by id."""
        return [self._tracks[k] for k in sorted(self._tracks)]

    def track(self, object_id: int) -> Track | None:
        return self._tracks.get(object_id)

    def reset(self) -> None:
        """Forget every object; ids start again from 0 (the node's ``~/reset``)."""
        self._tracks.clear()
        self._next_id = 0
        self._trigger = 0

    # -- one trigger ---------------------------------------------------------------------------
    def update(self, objects: Sequence[ObservedObject], frame_id: str,
               T_frame_camera: np.ndarray | None = None) -> TrackUpdate:
        """Give this trigger's objects their ids.

        ``frame_id``: the frame of the centres (e.g. ``world_frame``, or the camera's optical
        frame without TF); only tracks of that frame are matched. ``T_frame_camera``: the pose
        of the camera that ranks the objects for ``max_objects`` (None: the centres are in that
        camera's frame). Raises ValueError for an empty ``frame_id`` or a bad pose."""
        # 1. Check inputs.
        if not frame_id:
            raise ValueError("frame_id is empty: name the frame the centres are in")
        objects = list(objects)
        for i, o in enumerate(objects):
            if not isinstance(o, ObservedObject):
                raise TypeError(f"objects[{i}] is a {type(o).__name__}, not an ObservedObject")
        T = np.eye(4) if T_frame_camera is None else np.asarray(T_frame_camera, dtype=np.float64)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise ValueError(f"T_frame_camera must be a finite 4x4 matrix, got shape {T.shape}")
        self._trigger += 1
        out = TrackUpdate(trigger=self._trigger)
        # 2. At most max_objects, the best ranked.
        kept, out.dropped = self._limit(objects, T)
        # 3. Hungarian matching to this frame's tracks, gated by size.
        candidates = [t for t in self.tracks if t.frame_id == frame_id]
        matched: dict[int, Track] = {}
        if kept and candidates:
            cost = np.array([[self._cost(t, objects[i]) for i in kept] for t in candidates])
            for r, c in gated_assignment(cost, UNMATCHED_COST):
                matched[kept[c]] = candidates[r]
        # 4. Matched objects update their track, the others start new ones.
        for i in kept:
            o = objects[i]
            t = matched.get(i)
            if t is None:
                t = Track(id=self._next_id, frame_id=frame_id, centre=o.centre.copy(),
                          size=o.size, pose=o.pose, first_trigger=self._trigger,
                          last_trigger=self._trigger)
                self._next_id += 1
                self._tracks[t.id] = t
                out.assigned.append(Assignment(i, t.id, True, None, o.data))
                continue
            moved = float(np.linalg.norm(o.centre - t.centre))
            t.centre, t.size, t.pose = o.centre.copy(), o.size, o.pose
            t.last_trigger, t.times_seen = self._trigger, t.times_seen + 1
            out.assigned.append(Assignment(i, t.id, False, moved, o.data))
        seen = {a.id for a in out.assigned}
        out.unseen = [t.id for t in self.tracks if t.id not in seen]
        self._forget_oldest()
        return out

    def _cost(self, track: Track, o: ObservedObject) -> float:
        """Centre distance, or UNMATCHED_COST beyond the gate (relative to the larger size:
        an object seen partly in one trigger and whole in the next keeps its id)."""
        d = float(np.linalg.norm(track.centre - o.centre))
        gate = self.params.gate_factor * max(track.size, o.size) + self.params.min_gate_m
        return d if d <= gate else UNMATCHED_COST

    def _limit(self, objects: list[ObservedObject], T_frame_camera: np.ndarray
               ) -> tuple[list[int], list[Dropped]]:
        """Indices kept (in input order) and the dropped ones with their reason."""
        n, limit = len(objects), self.params.max_objects
        if limit == 0 or n <= limit:
            return list(range(n)), []
        eye, axis = T_frame_camera[:3, 3], T_frame_camera[:3, 2]
        rel = np.array([o.centre for o in objects]) - eye
        dist = np.linalg.norm(rel, axis=1)
        if self.params.rank_by == "camera":
            key, what, unit = dist, "nearest the camera", " m"
        else:
            cos = (rel @ axis) / np.maximum(dist, 1e-12)
            key, what, unit = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))), \
                "nearest the image centre", "° off the optical axis"
        order = np.argsort(key, kind="stable")
        kept = sorted(int(i) for i in order[:limit])
        worst_kept = float(key[order[limit - 1]])
        dropped = [Dropped(int(i), f"max_objects={limit} keeps the {limit} of {n} objects {what} "
                                   f"(this one {key[i]:.2f}{unit}, the last kept "
                                   f"{worst_kept:.2f}{unit})")
                   for i in sorted(int(j) for j in order[limit:])]
        return kept, dropped

    def _forget_oldest(self) -> None:
        excess = len(self._tracks) - self.params.max_tracks
        if excess <= 0:
            return
        oldest = sorted(self._tracks.values(), key=lambda t: (t.last_trigger, t.id))[:excess]
        for t in oldest:
            del self._tracks[t.id]


__all__ = ["ObjectTracker", "TrackParams", "ObservedObject", "Track", "Assignment", "Dropped",
           "TrackUpdate"]
