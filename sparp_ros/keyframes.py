"""Keyframe selection and per-stamp frame assembly for a live camera stream (ROS-free).

A camera streams at 30 Hz but SpaRP takes at most six views, and a view only helps if it shows the
object from somewhere new. :class:`KeyframeBuffer` keeps a bounded set of sharp, distinct frames:

* **sharp**: the variance of the Laplacian of a grey working image (intensities in [0, 1]) must
  reach ``min_sharpness`` — a motion-blurred frame gives poor NOCS and PnP;
* **new**: the frame must differ from *every* kept keyframe — by the mean absolute difference of a
  small grey thumbnail (``min_image_change``), or, when both frames carry a camera pose from TF,
  by the viewing rotation (``min_rotation_deg``) or camera translation (``min_translation_m``).
  Comparing against all kept frames (not only the last) means a camera that sweeps back and forth
  does not fill the buffer with repeats;
* **bounded**: at most ``max_keyframes``; the oldest is dropped when a new one arrives.

:class:`FrameAssembler` pairs the image, camera info and the configured depth / mask / NOCS messages of
one capture instant by their stamps (a tiny message_filters ApproximateTime replacement), with a
bounded pending set so a topic that never arrives cannot grow memory.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import cv2
import numpy as np

from .capture import Frame
from .conventions import invert_rigid, rotation_angle_deg

MAX_KEYFRAMES = 6
"""SpaRP's tiling takes at most six views."""
THUMBNAIL_SIZE = 32
"""Side of the grey thumbnail used to compare frames: small enough to ignore noise and jitter."""
SHARPNESS_WIDTH = 320
"""Frames are resized to this width before the blur score, so the score does not depend on the
camera's resolution."""


@dataclass
class KeyframeConfig:
    max_keyframes: int = MAX_KEYFRAMES
    min_image_change: float = 0.04      # mean |Δ| of the grey thumbnail, intensities in [0, 1]
    min_rotation_deg: float = 15.0      # viewpoint change that counts as new (with poses)
    min_translation_m: float = 0.10     # camera translation that counts as new (with poses)
    min_sharpness: float = 1e-4         # variance of the Laplacian, intensities in [0, 1]

    def __post_init__(self) -> None:
        if not 1 <= self.max_keyframes <= MAX_KEYFRAMES:
            raise ValueError(f"max_keyframes must be in 1..{MAX_KEYFRAMES}, got {self.max_keyframes}")
        for name in ("min_image_change", "min_rotation_deg", "min_translation_m", "min_sharpness"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


def grey(image: np.ndarray) -> np.ndarray:
    """HxW float32 grey image in [0, 1] from HxWx3 uint8 RGB."""
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0


def thumbnail(image: np.ndarray, size: int = THUMBNAIL_SIZE) -> np.ndarray:
    """A size x size grey thumbnail (area-averaged, so it is also a low-pass filter)."""
    return cv2.resize(grey(image), (size, size), interpolation=cv2.INTER_AREA)


def sharpness(image: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image at a fixed working width (higher = sharper)."""
    g = grey(image)
    h, w = g.shape
    if w > SHARPNESS_WIDTH:
        g = cv2.resize(g, (SHARPNESS_WIDTH, max(1, round(h * SHARPNESS_WIDTH / w))),
                       interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(g, cv2.CV_32F).var())


@dataclass
class Decision:
    """What the buffer did with an offered frame, and why (for logs and tests)."""

    accepted: bool
    reason: str
    sharpness: float = float("nan")
    change: float = float("nan")
    dropped_oldest: bool = False


@dataclass
class _Kept:
    frame: Frame
    thumb: np.ndarray
    meta: Any = None


class KeyframeBuffer:
    """A bounded, thread-safe set of sharp and mutually distinct keyframes, oldest first.

    ``offer`` is cheap (a thumbnail and a Laplacian at 320 px), so it may run in a subscription
    callback; ``snapshot`` returns a copy for the reconstruction worker.
    """

    def __init__(self, config: KeyframeConfig | None = None):
        self.config = config or KeyframeConfig()
        self._kept: list[_Kept] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._kept)

    def offer(self, frame: Frame, meta: Any = None) -> Decision:
        """Keep ``frame`` if it is sharp and new; ``meta`` (e.g. the ROS stamp) is kept with it."""
        cfg = self.config
        score = sharpness(frame.image)
        if score < cfg.min_sharpness:
            return Decision(False, f"blurry (sharpness {score:.2e} < {cfg.min_sharpness:.2e})", score)
        thumb = thumbnail(frame.image)
        with self._lock:
            change = min((float(np.mean(np.abs(thumb - k.thumb))) for k in self._kept),
                         default=float("inf"))
            near = [k for k in self._kept if not self._is_new(frame, thumb, k)]
            if near:
                return Decision(False, f"too similar to a kept keyframe (image change "
                                       f"{change:.3f} < {cfg.min_image_change:.3f})", score, change)
            dropped = len(self._kept) >= cfg.max_keyframes
            if dropped:
                self._kept.pop(0)
            self._kept.append(_Kept(frame, thumb, meta))
        return Decision(True, "new keyframe", score, change, dropped)

    def _is_new(self, frame: Frame, thumb: np.ndarray, kept: _Kept) -> bool:
        cfg = self.config
        if float(np.mean(np.abs(thumb - kept.thumb))) >= cfg.min_image_change:
            return True
        if frame.T_world_camera is not None and kept.frame.T_world_camera is not None:
            T_rel = invert_rigid(kept.frame.T_world_camera) @ frame.T_world_camera
            if (rotation_angle_deg(T_rel[:3, :3]) >= cfg.min_rotation_deg
                    or np.linalg.norm(T_rel[:3, 3]) >= cfg.min_translation_m):
                return True
        return False

    def snapshot(self) -> list[Frame]:
        """The kept keyframes, oldest first (the first is the reference view)."""
        with self._lock:
            return [k.frame for k in self._kept]

    def items(self) -> list[tuple[Frame, Any]]:
        """The kept keyframes with their ``meta``, oldest first."""
        with self._lock:
            return [(k.frame, k.meta) for k in self._kept]

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()

    def reconfigure(self, config: KeyframeConfig) -> int:
        """Use ``config`` from the next offer on (a node's parameters changed at run time); the
        oldest keyframes beyond its ``max_keyframes`` are dropped. Returns how many were."""
        with self._lock:
            self.config = config
            excess = max(0, len(self._kept) - config.max_keyframes)
            del self._kept[:excess]
            return excess


# -- pairing messages of one instant ---------------------------------------------------------------
@dataclass
class _Pending:
    stamp: float
    created: float
    parts: dict[str, Any] = field(default_factory=dict)


@dataclass
class Assembled:
    """What one ``FrameAssembler.add`` produced: completed instants (``{part: value, "stamp": s}``)
    and instants given up on (stamp, missing parts), for a warning."""

    complete: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[tuple[float, list[str]]] = field(default_factory=list)


class FrameAssembler:
    """Pairs the parts of one capture instant (``image``, ``camera_info``, ``depth``, ...) by stamp.

    An instant is complete when every part in ``parts`` has arrived with a stamp within ``slop_s``
    of the first one. Which parts are needed is configuration (the node's ``use_depth``,
    ``use_mask`` and backend), not guessed from traffic, so the result does not depend on which
    topic happened to arrive first. An instant still incomplete after ``timeout_s`` is dropped and
    reported; at most ``max_pending`` instants are held (the oldest is dropped beyond that), so a
    topic that never arrives cannot grow memory. Thread-safe.
    """

    def __init__(self, parts: tuple[str, ...], slop_s: float = 0.005, timeout_s: float = 1.0,
                 max_pending: int = 8, clock: Callable[[], float] = time.monotonic):
        if not parts:
            raise ValueError("FrameAssembler needs at least one part")
        self.parts = tuple(parts)
        self.slop_s, self.timeout_s, self.max_pending = slop_s, timeout_s, max_pending
        self._clock = clock
        self._pending: OrderedDict[int, _Pending] = OrderedDict()
        self._next_id = 0
        self._lock = threading.Lock()

    def add(self, part: str, stamp: float, value: Any) -> Assembled:
        """Add one part of the instant at ``stamp`` (seconds)."""
        if part not in self.parts:
            raise ValueError(f"unknown part {part!r}; expected one of {self.parts}")
        now = self._clock()
        out = Assembled()
        with self._lock:
            key = next((k for k, p in self._pending.items()
                        if abs(p.stamp - stamp) <= self.slop_s and part not in p.parts), None)
            if key is None:
                key, self._next_id = self._next_id, self._next_id + 1
                self._pending[key] = _Pending(stamp=stamp, created=now)
            pending = self._pending[key]
            pending.parts[part] = value
            if all(p in pending.parts for p in self.parts):
                out.complete.append({**pending.parts, "stamp": pending.stamp})
                del self._pending[key]
            for k, p in list(self._pending.items()):
                if now - p.created > self.timeout_s or len(self._pending) > self.max_pending:
                    out.dropped.append((p.stamp, [x for x in self.parts if x not in p.parts]))
                    del self._pending[k]
            return out

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()
