"""A transform buffer like tf2's ``BufferCore``, ROS-free (numpy only).

The frames form a tree: every child frame has one parent. Each edge (parent → child) holds
either one static transform, valid at every time, or a time history of dynamic transforms
(bounded: ``cache_duration_s`` behind the newest stamp of that edge, at most ``max_samples``).
``lookup(target, source, time)`` walks from both frames up to their common ancestor and returns
``T_target_source`` (STYLE 1: ``p_target = T_target_source @ p_source``; a transform sent with
``frame_id=parent, child_frame_id=child`` is ``T_parent_child``). Between two stamps of an edge
the translation is interpolated linearly and the rotation by slerp, as tf2 does; outside an
edge's history a lookup fails with :class:`ExtrapolationError` unless it is within
``tolerance_s`` of the nearest stamp (then that stamp's transform is used).

Quaternions are (x, y, z, w), as in ``geometry_msgs/Quaternion``; times are seconds (float).

Errors (all :class:`TransformError`, a ``LookupError``): :class:`FrameNotFoundError` (a frame the
buffer has never heard of), :class:`ConnectivityError` (both frames known but in different trees),
:class:`ExtrapolationError` (``future`` tells whether the data may still arrive). Bad input to
``set_transform`` (non-finite numbers, zero quaternion, a frame as its own parent, a loop) raises
``ValueError``. Thread-safe: a listener thread may add while another looks up or waits.
"""
from __future__ import annotations

import bisect
import threading
import time as _time
from dataclasses import dataclass, field

import numpy as np

from .conventions import matrix_to_quaternion, quaternion_to_matrix, slerp

DEFAULT_CACHE_DURATION_S = 10.0
"""tf2's default buffer length."""
DEFAULT_MAX_SAMPLES = 10_000
"""Per dynamic edge: 10 s of a 1 kHz publisher. Bounds memory whatever the stamps do."""
MAX_TREE_DEPTH = 1000
"""A walk up the tree longer than this means the tree is broken (tf2 uses the same bound)."""
WAIT_POLL_S = 0.05
"""``wait_for`` re-checks at least this often (times can also change without new data)."""


class TransformError(LookupError):
    """A lookup that cannot be answered; the message names the frames and the time."""


class FrameNotFoundError(TransformError):
    """The buffer has never received a transform that names this frame."""


class ConnectivityError(TransformError):
    """Both frames are known but no chain of transforms joins them."""


class ExtrapolationError(TransformError):
    """The requested time is outside an edge's history by more than the tolerance.
    ``future`` is True when the time is after the newest data (it may still arrive)."""

    def __init__(self, message: str, future: bool):
        super().__init__(message)
        self.future = future


def to_matrix(translation: np.ndarray, rotation_xyzw: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = quaternion_to_matrix(rotation_xyzw)
    T[:3, 3] = translation
    return T


# -- the buffer ------------------------------------------------------------------------------------
@dataclass
class _Edge:
    """Transforms ``T_parent_child`` of one child frame: one static sample, or a sorted history."""

    parent: str
    static: bool
    stamps: list[float] = field(default_factory=list)
    translations: list[np.ndarray] = field(default_factory=list)
    rotations: list[np.ndarray] = field(default_factory=list)

    def at(self, t: float | None, tolerance_s: float, child: str) -> np.ndarray:
        """``T_parent_child`` at ``t`` (None: the newest)."""
        if self.static or t is None:
            return to_matrix(self.translations[-1], self.rotations[-1])
        i = bisect.bisect_left(self.stamps, t)
        if i < len(self.stamps) and self.stamps[i] == t:
            return to_matrix(self.translations[i], self.rotations[i])
        if i == 0 or i == len(self.stamps):
            j, future = (0, False) if i == 0 else (-1, True)
            if abs(self.stamps[j] - t) <= tolerance_s:
                return to_matrix(self.translations[j], self.rotations[j])
            side = "future" if future else "past"
            which = "latest" if future else "earliest"
            raise ExtrapolationError(
                f"lookup would require extrapolation into the {side}: requested time {t:.6f} but "
                f"the {which} data of {self.parent} -> {child} is at {self.stamps[j]:.6f} "
                f"({abs(self.stamps[j] - t):.3f} s away, tolerance {tolerance_s:.3f} s)", future)
        t0, t1 = self.stamps[i - 1], self.stamps[i]
        ratio = (t - t0) / (t1 - t0)
        translation = (1.0 - ratio) * self.translations[i - 1] + ratio * self.translations[i]
        return to_matrix(translation, slerp(self.rotations[i - 1], self.rotations[i], ratio))


class TransformLookups:
    """``can_transform`` and ``wait_for`` on top of a ``lookup(target, source, time, tolerance_s)``
    that answers ``T_target_source`` or raises a :class:`TransformError`: one definition for our
    buffer and the tf2_ros adapter (``ros/tf2_adapter.py``). ``_pause(seconds)`` is how long a
    retry waits (a subclass may wake on new transforms)."""

    def lookup(self, target: str, source: str, time: float | None = None,
               tolerance_s: float = 0.0) -> np.ndarray:
        raise NotImplementedError

    def _pause(self, seconds: float) -> None:
        _time.sleep(min(seconds, WAIT_POLL_S))

    def can_transform(self, target: str, source: str, time: float | None = None,
                      tolerance_s: float = 0.0) -> bool:
        try:
            self.lookup(target, source, time, tolerance_s)
        except TransformError:
            return False
        return True

    def wait_for(self, target: str, source: str, time: float | None, timeout_s: float,
                 tolerance_s: float = 0.0) -> np.ndarray:
        """:meth:`lookup`, retried after each ``_pause`` for up to ``timeout_s``; raises the last
        error after that. An extrapolation into the past fails at once (waiting cannot help)."""
        deadline = _time.monotonic() + max(0.0, timeout_s)
        while True:
            try:
                return self.lookup(target, source, time, tolerance_s)
            except ExtrapolationError as exc:
                if not exc.future:
                    raise
                error = exc
            except TransformError as exc:
                error = exc
            left = deadline - _time.monotonic()
            if left <= 0:
                raise error
            self._pause(left)


class TransformBuffer(TransformLookups):
    """See the module docstring. ``buffer.set_transform("world", "camera", t, xyz, xyzw)`` then
    ``T_world_camera = buffer.lookup("world", "camera", t)``."""

    def __init__(self, cache_duration_s: float = DEFAULT_CACHE_DURATION_S,
                 max_samples: int = DEFAULT_MAX_SAMPLES):
        if not cache_duration_s > 0:
            raise ValueError(f"cache_duration_s must be > 0, got {cache_duration_s}")
        if max_samples < 2:
            raise ValueError(f"max_samples must be >= 2 (two are needed to interpolate), "
                             f"got {max_samples}")
        self.cache_duration_s = float(cache_duration_s)
        self.max_samples = int(max_samples)
        self._edges: dict[str, _Edge] = {}           # child frame → its edge to the parent
        self._changed = threading.Condition()

    # -- adding --------------------------------------------------------------------------------
    def set_transform(self, parent: str, child: str, stamp: float, translation, rotation_xyzw,
                      static: bool = False) -> bool:
        """Add ``T_parent_child`` at ``stamp`` (a ROS ``TransformStamped`` with
        ``frame_id=parent``, ``child_frame_id=child``). The quaternion is normalised. A child
        that gets a new parent, or turns from static to dynamic or back, starts a new history
        (tf2 lets a frame move between parents too). Returns False when the sample is ignored:
        older than the edge's newest stamp minus ``cache_duration_s``."""
        parent, child = str(parent).strip("/"), str(child).strip("/")
        if not parent or not child:
            raise ValueError(f"empty frame id (parent {parent!r}, child {child!r})")
        if parent == child:
            raise ValueError(f"frame {child!r} cannot be its own parent")
        t = np.asarray(translation, dtype=np.float64).reshape(3)
        q = np.asarray(rotation_xyzw, dtype=np.float64).reshape(4)
        stamp = float(stamp)
        norm = float(np.linalg.norm(q))
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(q)) and np.isfinite(stamp)):
            raise ValueError(f"{parent} -> {child}: non-finite transform or stamp "
                             f"(t={t.tolist()}, q={q.tolist()}, stamp={stamp})")
        if norm < 1e-6:
            raise ValueError(f"{parent} -> {child}: quaternion {q.tolist()} has zero length")
        q = q / norm
        with self._changed:
            self._check_no_loop(parent, child)
            edge = self._edges.get(child)
            if edge is None or edge.parent != parent or edge.static != static:
                edge = self._edges[child] = _Edge(parent=parent, static=static)
            if static:
                edge.stamps[:], edge.translations[:], edge.rotations[:] = [stamp], [t], [q]
            else:
                if edge.stamps and stamp < edge.stamps[-1] - self.cache_duration_s:
                    return False
                i = bisect.bisect_left(edge.stamps, stamp)
                if i < len(edge.stamps) and edge.stamps[i] == stamp:
                    edge.translations[i], edge.rotations[i] = t, q
                else:
                    edge.stamps.insert(i, stamp)
                    edge.translations.insert(i, t)
                    edge.rotations.insert(i, q)
                oldest = bisect.bisect_left(edge.stamps, edge.stamps[-1] - self.cache_duration_s)
                oldest = max(oldest, len(edge.stamps) - self.max_samples)
                if oldest > 0:
                    del edge.stamps[:oldest], edge.translations[:oldest], edge.rotations[:oldest]
            self._changed.notify_all()
        return True

    def set_matrix(self, parent: str, child: str, stamp: float, T_parent_child: np.ndarray,
                   static: bool = False) -> bool:
        """:meth:`set_transform` from a 4x4 rigid transform."""
        T = np.asarray(T_parent_child, dtype=np.float64)
        return self.set_transform(parent, child, stamp, T[:3, 3], matrix_to_quaternion(T[:3, :3]),
                                  static)

    def clear(self) -> None:
        """Forget the dynamic transforms (static ones stay, as in tf2)."""
        with self._changed:
            self._edges = {c: e for c, e in self._edges.items() if e.static}

    def _check_no_loop(self, parent: str, child: str) -> None:
        frame = parent
        for _ in range(MAX_TREE_DEPTH):
            if frame == child:
                raise ValueError(f"{parent} -> {child} would close a loop: {child} is already an "
                                 f"ancestor of {parent}")
            edge = self._edges.get(frame)
            if edge is None:
                return
            frame = edge.parent

    # -- looking up ----------------------------------------------------------------------------
    def frames(self) -> set[str]:
        """Every frame named by a transform in the buffer."""
        with self._changed:
            return self._frames()

    def root(self, frame: str) -> str:
        """The top of ``frame``'s tree (the frame itself when it has no parent), e.g. ``map`` or
        ``world``: a fixed frame for camera poses when none is configured. Raises
        :class:`FrameNotFoundError` for a frame the buffer has never heard of."""
        frame = str(frame).strip("/")
        with self._changed:
            if frame not in self._frames():
                raise FrameNotFoundError(f"frame {frame!r} does not exist; known frames: "
                                         f"{sorted(self._frames())}")
            return self._path_up(frame)[-1]

    def lookup(self, target: str, source: str, time: float | None = None,
               tolerance_s: float = 0.0) -> np.ndarray:
        """``T_target_source`` (4x4) at ``time`` (seconds; None = the latest time at which every
        dynamic edge on the path has data, tf2's time 0). Raises a :class:`TransformError`."""
        target, source = str(target).strip("/"), str(source).strip("/")
        with self._changed:
            known = self._frames()
            for frame in (target, source):
                if frame not in known:
                    raise FrameNotFoundError(f"frame {frame!r} does not exist (lookup "
                                             f"{target} <- {source}); known frames: "
                                             f"{sorted(known)}")
            if target == source:
                return np.eye(4)
            up_source, up_target = self._path_up(source), self._path_up(target)
            in_target = {f: i for i, f in enumerate(up_target)}
            common = next((i for i, f in enumerate(up_source) if f in in_target), None)
            if common is None:
                raise ConnectivityError(
                    f"{target} and {source} are not connected: {source}'s tree has root "
                    f"{up_source[-1]!r}, {target}'s has root {up_target[-1]!r}")
            chain_source = up_source[:common]              # frames below the common ancestor
            chain_target = up_target[:in_target[up_source[common]]]
            if time is None:
                time = self._latest_common_time(chain_source + chain_target)
            # T_ancestor_frame for both sides, then T_target_source = inv(T_a_target) T_a_source
            T_a_source = self._chain(chain_source, time, tolerance_s)
            T_a_target = self._chain(chain_target, time, tolerance_s)
        R, p = T_a_target[:3, :3], T_a_target[:3, 3]
        T_target_a = np.eye(4)
        T_target_a[:3, :3], T_target_a[:3, 3] = R.T, -R.T @ p
        return T_target_a @ T_a_source

    def _pause(self, seconds: float) -> None:
        """Until a transform is added (or WAIT_POLL_S, at most ``seconds``)."""
        with self._changed:
            self._changed.wait(min(seconds, WAIT_POLL_S))

    # -- helpers (hold the lock) ---------------------------------------------------------------
    def _frames(self) -> set[str]:
        return set(self._edges) | {e.parent for e in self._edges.values()}

    def _path_up(self, frame: str) -> list[str]:
        """``frame``, its parent, ..., the root."""
        path = [frame]
        while frame in self._edges:
            frame = self._edges[frame].parent
            path.append(frame)
            if len(path) > MAX_TREE_DEPTH:
                raise TransformError(f"the tree above {path[0]} is deeper than {MAX_TREE_DEPTH}")
        return path

    def _latest_common_time(self, chain: list[str]) -> float | None:
        latest = [self._edges[c].stamps[-1] for c in chain if not self._edges[c].static]
        return min(latest) if latest else None

    def _chain(self, chain: list[str], time: float | None, tolerance_s: float) -> np.ndarray:
        """``T_ancestor_frame`` for ``chain = [frame, its parent, ...]`` (the ancestor excluded)."""
        T = np.eye(4)
        for child in chain:
            T = self._edges[child].at(time, tolerance_s, child) @ T
        return T


__all__ = ["ConnectivityError", "ExtrapolationError", "FrameNotFoundError", "TransformBuffer",
           "TransformLookups", "TransformError", "matrix_to_quaternion", "quaternion_to_matrix", "slerp"]
