"""Offline: a rosbag2 (sqlite3 ``.db3`` or ``.mcap``) → a capture folder, keyframes picked as the
node picks them.

    sparp-ros bag BAG --image-topic T --camera-info-topic T [--depth-topic T] [--mask-topic T]
                      [--oracle-nocs-topic T] [--world-frame F | --no-tf] --out CAPTURE
                      [--max-views N] ...

The bag is read with ``rosbags`` (pure Python: no rclpy, no DDS, no ROS install). Messages are
deserialised with its Kilted type store and then handled as the node handles live topics:

1. every image, depth, mask and oracle-NOCS message is converted with the node's converters
   (``messages.image_to_rgb`` / ``image_to_depth`` / ``image_to_mask`` / ``image_to_nocs``, which read
   only the message fields, so rosbags' messages work as they are);
2. the parts of one instant are paired by header stamp with the node's
   :class:`~sparp_ros.keyframes.FrameAssembler` (same slop; its timeout runs on bag time);
3. each complete instant gets the latest ``CameraInfo`` stamped at or before it (plus the slop), so
   a calibration published at a lower rate or logged just after its image still applies;
4. when the bag has ``/tf`` or ``/tf_static`` (``tf2_msgs/TFMessage``; other names with
   ``BagTopics.tf`` / ``tf_static``), every transform goes into a
   :class:`~sparp_ros.tf_buffer.TransformBuffer` in log-time order with the images, and each
   frame's camera pose ``T_world_camera`` is looked up at its image stamp, as the node's
   ``world_frame`` does: ``world`` is ``world_frame`` or, when none is given, the root of the
   camera frame's TF tree (e.g. ``map``, ``world``), chosen at the first frame and kept. As the
   node waits ``tf_timeout_s`` for a transform, a frame waits up to ``TF_WAIT_S`` of bag time
   for TF logged after it; a frame whose pose cannot be looked up is kept without one (counted
   in ``BagResult.tf_failures``). The keyframes then carry camera poses, so a bag without depth
   gets its metric scale from the camera motion;
5. the frame is made as the node makes it (intrinsics fitted to a binned image, then undistorted)
   and offered to the node's :class:`~sparp_ros.keyframes.KeyframeBuffer`.

The capture therefore holds the keyframes the node would hold at the end of the bag (the buffer
keeps the most recent ``max_keyframes`` sharp and distinct views), written with
:func:`sparp_ros.capture.save_capture`, so ``sparp-ros reconstruct CAPTURE`` runs on it.

The converters live in ``ros.messages``, which imports the ROS message packages of the wheels (not
rclpy); they are imported when a bag is converted.

Errors: :class:`BagError` (a :class:`~sparp_ros.capture.CaptureError`) for a missing or unreadable
bag, a topic that is not in the bag (the message lists those that are) or has the wrong type, no
``CameraInfo`` at or before any image, a ``world_frame`` given for a bag without TF, and a bag
that yields no keyframe (the message says why).
"""
from __future__ import annotations

import bisect
import logging
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..camera import CameraError
from ..capture import Capture, CaptureError, Frame, save_capture
from ..keyframes import FrameAssembler, KeyframeBuffer, KeyframeConfig

log = logging.getLogger(__name__)

IMAGE_TYPE = "sensor_msgs/msg/Image"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
TF_TYPE = "tf2_msgs/msg/TFMessage"
TF_WAIT_S = 0.5
"""Bag time a frame waits for its camera pose on /tf (the node's ``tf_timeout_s`` is 0.1 s of wall
time; a bag can afford more: TF from joint states is often logged a little after the image)."""
SYNC_SLOP_S = 0.005
"""The node's ``sync_slop_s`` default: stamps closer than this are one capture instant."""
SYNC_TIMEOUT_S = 1.0
"""How long an instant waits for its missing parts, in bag time. A recorded bag holds every message
with its receive time, so no part arrives late by redelivery; the node waits longer by default
(``sync_timeout_s`` 3 s), for a reliable topic's repair over DDS."""
NS_PER_S = 1e9


class BagError(CaptureError):
    """A bag cannot be turned into a capture; the message names the bag, topic or cause."""


@dataclass
class BagTopics:
    """The bag's topics for each part of a frame; ``None`` = not used."""

    image: str
    camera_info: str
    depth: str | None = None
    mask: str | None = None
    oracle_nocs: str | None = None
    tf: str | None = "/tf"                  # used when the bag has it; None = never
    tf_static: str | None = "/tf_static"

    def image_parts(self) -> dict[str, str]:
        """{part: topic} of the Image topics, in the node's part order."""
        parts = {"image": self.image, "depth": self.depth, "mask": self.mask,
                 "oracle_nocs": self.oracle_nocs}
        return {k: v for k, v in parts.items() if v}


@dataclass
class BagResult:
    """The capture made from a bag and what happened to its messages (for logs and tests)."""

    capture: Capture
    images: int = 0                         # image messages read
    instants: int = 0                       # instants with every part (and a CameraInfo)
    keyframes: int = 0
    no_camera_info: int = 0                 # complete instants before the first CameraInfo
    unconverted: Counter = field(default_factory=Counter)   # part -> messages that failed
    incomplete: Counter = field(default_factory=Counter)    # missing part -> images dropped
    orphans: int = 0                        # instants dropped that had no image
    rejected: Counter = field(default_factory=Counter)      # keyframe-buffer reason -> frames
    pending: int = 0                        # instants still incomplete at the end of the bag
    first_error: str | None = None
    world_frame: str | None = None          # TF: the frame of the camera poses; None = no TF used
    tf_transforms: int = 0                  # TF: transforms read into the buffer
    tf_rejected: int = 0                    # TF: transforms the buffer refused (non-finite, ...)
    tf_poses: int = 0                       # TF: frames offered with a camera pose
    tf_failures: int = 0                    # TF: frames offered without one (lookup failed)


def _typestore():
    from rosbags.typesys import Stores, get_typestore

    store = getattr(Stores, "ROS2_KILTED", None) or Stores.LATEST
    return get_typestore(store)


def _converters() -> dict[str, Any]:
    """The node's converters per part (see node.py), applied to rosbags' messages."""
    from . import messages

    return {"image": messages.image_to_rgb, "depth": messages.image_to_depth,
            "mask": messages.image_to_mask, "oracle_nocs": lambda m: messages.image_to_nocs(m)[0],
            "camera_info": messages.camera_info_to_camera}


def _conversion_errors() -> tuple[type[Exception], ...]:
    from . import messages

    return (messages.ImageConversionError, CameraError)


def _open(path: Path):
    from rosbags.rosbag2 import Reader

    if not path.exists():
        raise BagError(f"bag {path} does not exist")
    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:  # noqa: BLE001 - rosbags raises ReaderError, OSError, KeyError...
        raise BagError(f"cannot read bag {path}: {type(exc).__name__}: {exc} (expected a rosbag2 "
                       "folder with metadata.yaml, or a .db3 or .mcap file)") from exc
    return reader


def _connections(reader: Any, path: Path, topic: str, msgtype: str, option: str) -> list[Any]:
    conns = [c for c in reader.connections if c.topic == topic]
    if not conns:
        there = ", ".join(f"{t} ({info.msgtype}, {info.msgcount})"
                          for t, info in sorted(reader.topics.items())) or "none"
        raise BagError(f"{option} {topic!r} is not in bag {path}; its topics: {there}")
    wrong = sorted({c.msgtype for c in conns if c.msgtype != msgtype})
    if wrong:
        raise BagError(f"{option} {topic!r} in bag {path} carries {', '.join(wrong)}, "
                       f"expected {msgtype}")
    return conns


def _stamp(msg: Any) -> float:
    return float(msg.header.stamp.sec) + float(msg.header.stamp.nanosec) * 1e-9


def _read(reader: Any, typestore: Any, conns: list[Any]) -> Iterator[tuple[Any, float, Any]]:
    """(connection, log time in seconds, message) of ``conns``, in log-time order."""
    for conn, t_ns, raw in reader.messages(connections=conns):
        try:
            msg = typestore.deserialize_cdr(raw, conn.msgtype)
        except Exception as exc:  # noqa: BLE001 - rosbags' deserialisers raise assorted errors
            raise BagError(f"cannot deserialise a {conn.msgtype} message on {conn.topic!r} at "
                           f"t={t_ns / NS_PER_S:.3f}: {type(exc).__name__}: {exc}") from exc
        yield conn, t_ns / NS_PER_S, msg


def bag_to_capture(bag: str | Path, topics: BagTopics, out: str | Path | None = None,
                   keyframes: KeyframeConfig | None = None, slop_s: float = SYNC_SLOP_S,
                   world_frame: str | None = None, use_tf: bool = True) -> BagResult:
    """Pick the keyframes of ``bag`` as the node would and return them as a capture, written to
    ``out`` when given. With ``use_tf`` and TF in the bag, each frame gets its camera pose
    ``T_<world_frame>_<camera>`` (``world_frame`` None: the root of the camera's TF tree).
    Raises BagError (see the module docstring)."""
    # 1. Open the bag and find the topics.
    path = Path(bag)
    reader = _open(path)
    try:
        typestore = _typestore()
        info_conns = _connections(reader, path, topics.camera_info, CAMERA_INFO_TYPE,
                                  "--camera-info-topic")
        part_of: dict[Any, str] = {}
        for part, topic in topics.image_parts().items():
            option = f"--{part.replace('_', '-')}-topic"
            for conn in _connections(reader, path, topic, IMAGE_TYPE, option):
                part_of[conn.id] = part
        image_conns = [c for c in reader.connections if c.id in part_of]
        tf_conns = _tf_connections(reader, path, topics, world_frame) if use_tf else {}
        convert = _converters()
        errors = _conversion_errors()
        result = BagResult(capture=Capture(frames=[]))

        # 2. The cameras, by stamp (CameraInfo is small and rarely changes).
        cameras: list[tuple[float, Any]] = []
        for _, _, msg in _read(reader, typestore, info_conns):
            try:
                cameras.append((_stamp(msg), convert["camera_info"](msg)))
            except errors as exc:
                result.unconverted["camera_info"] += 1
                result.first_error = result.first_error or f"camera_info: {exc}"
        if not cameras:
            why = (f"none could be used ({result.first_error})" if result.first_error
                   else "it has no messages")
            raise BagError(f"no CameraInfo on {topics.camera_info!r} in bag {path}: {why}")
        cameras.sort(key=lambda c: c[0])
        camera_stamps = [s for s, _ in cameras]

        # 3. Pair, convert and offer every instant, as the node does (TF in the same order).
        now = [0.0]
        assembler = FrameAssembler(tuple(topics.image_parts()), slop_s=slop_s,
                                   timeout_s=SYNC_TIMEOUT_S, clock=lambda: now[0])
        buffer = KeyframeBuffer(keyframes)
        poses = None
        if tf_conns:
            def frame_of(parts: dict[str, Any]) -> str:     # the image's, else its camera's
                i = bisect.bisect_right(camera_stamps, parts["stamp"] + slop_s)
                return parts["image"][1] or (cameras[i - 1][1].frame_id if i else "")
            poses = _CameraPoses(world_frame, result, frame_of)

        def offer(parts: dict[str, Any], pose: Any = None) -> None:
            _offer(parts, pose, cameras, camera_stamps, slop_s, buffer, result)

        for conn, t, msg in _read(reader, typestore, image_conns + list(tf_conns.values())):
            now[0] = t
            if conn.id in tf_conns:
                poses.add(msg, static=conn.topic == topics.tf_static)
            else:
                part = part_of[conn.id]
                result.images += part == "image"
                try:
                    value = convert[part](msg)
                except errors as exc:
                    result.unconverted[part] += 1
                    result.first_error = result.first_error or f"{part}: {exc}"
                    continue
                if part == "image":                 # the node looks its pose up by this frame
                    value = (value, msg.header.frame_id)
                assembled = assembler.add(part, _stamp(msg), value)
                for _, missing in assembled.dropped:
                    if "image" in missing:
                        result.orphans += 1
                    else:
                        result.incomplete.update(missing)
                for parts in assembled.complete:
                    if poses is None:
                        offer(parts)
                    else:
                        poses.hold(parts, t)
            if poses is not None:
                poses.release(t, offer)
        if poses is not None:
            poses.release(None, offer)
        result.pending = assembler.pending()
    finally:
        reader.close()

    # 4. The keyframes, as a capture folder.
    frames = buffer.snapshot()
    if result.no_camera_info and not result.instants:
        raise BagError(f"no CameraInfo on {topics.camera_info!r} before the images in bag {path}: "
                       f"the first is stamped t={cameras[0][0]:.3f}, after all "
                       f"{result.no_camera_info} frames")
    if result.no_camera_info:
        log.warning("%d frames before the first CameraInfo on %r were skipped",
                    result.no_camera_info, topics.camera_info)
    if not frames:
        raise BagError(f"no keyframes in bag {path}: {_why_none(result, topics, slop_s)}")
    result.capture, result.keyframes = Capture(frames=frames), len(frames)
    if out is not None:
        result.capture.root = save_capture(result.capture, out)
    return result


def _tf_connections(reader: Any, path: Path, topics: BagTopics,
                    world_frame: str | None) -> dict[int, Any]:
    """{connection id: connection} of the bag's TF topics (those it has); BagError for a TF topic
    of another type, or a ``world_frame`` asked for when the bag has no TF."""
    names = [t for t in (topics.tf, topics.tf_static) if t]
    conns = [c for c in reader.connections if c.topic in names]
    wrong = sorted({f"{c.topic} ({c.msgtype})" for c in conns if c.msgtype != TF_TYPE})
    if wrong:
        raise BagError(f"TF topic {', '.join(wrong)} in bag {path}: expected {TF_TYPE}")
    if world_frame and not conns:
        raise BagError(f"--world-frame {world_frame!r} needs TF, but bag {path} has no "
                       f"{' or '.join(names) or 'TF topic'}")
    return {c.id: c for c in conns}


class _CameraPoses:
    """The TF half of the node's ``_camera_pose`` for a bag: a TransformBuffer filled in log
    order, and the complete instants held (in order) until their camera pose can be looked up
    or ``TF_WAIT_S`` of bag time has passed since they completed."""

    def __init__(self, world_frame: str | None, result: BagResult, frame_of):
        from ..tf_buffer import TransformBuffer

        self.buffer = TransformBuffer()
        self.world = world_frame.strip("/") if world_frame else None
        self.result = result
        self.frame_of = frame_of
        self.held: deque[tuple[dict[str, Any], float]] = deque()

    def add(self, msg: Any, static: bool) -> None:
        from . import messages

        for transform in msg.transforms:
            try:
                messages.add_transform_stamped(self.buffer, transform, static)
                self.result.tf_transforms += 1
            except ValueError as exc:
                self.result.tf_rejected += 1
                log.warning("ignoring a transform at t=%.3f: %s", _stamp(transform), exc)

    def hold(self, parts: dict[str, Any], t: float) -> None:
        self.held.append((parts, t + TF_WAIT_S))

    def release(self, t: float | None, offer) -> None:
        """Offer the held instants whose pose is known or whose wait is over (every one when
        ``t`` is None: the end of the bag)."""
        from ..tf_buffer import ExtrapolationError, TransformError

        while self.held:
            parts, deadline = self.held[0]
            frame_id = self.frame_of(parts)
            try:
                pose = self._lookup(frame_id, parts["stamp"])
            except TransformError as exc:
                waiting = not (isinstance(exc, ExtrapolationError) and not exc.future)
                if waiting and t is not None and t < deadline:
                    return
                self.result.tf_failures += 1
                if self.result.tf_failures == 1:
                    log.warning("no camera pose for %r at t=%.3f from TF (the frame is kept "
                                "without one): %s", frame_id, parts["stamp"], exc)
                pose = None
            self.held.popleft()
            self.result.tf_poses += pose is not None
            offer(parts, pose)

    def _lookup(self, frame_id: str, stamp: float) -> Any:
        if self.world is None:
            self.world = self.buffer.root(frame_id)
            log.info("camera poses in TF frame %r (the root of %r's tree; --world-frame to choose)",
                     self.world, frame_id)
        self.result.world_frame = self.world
        return self.buffer.lookup(self.world, frame_id, stamp)


def _offer(parts: dict[str, Any], pose: Any, cameras: list[tuple[float, Any]],
           camera_stamps: list[float], slop_s: float, buffer: KeyframeBuffer,
           result: BagResult) -> None:
    stamp = parts["stamp"]
    i = bisect.bisect_right(camera_stamps, stamp + slop_s)
    if i == 0:
        result.no_camera_info += 1
        return
    camera = cameras[i - 1][1]
    result.instants += 1
    image = parts["image"][0]
    try:    # as SparpNode._build_frame
        frame = Frame.from_sensor(image, camera, depth=parts.get("depth"), mask=parts.get("mask"),
                                  nocs=parts.get("oracle_nocs"), stamp=stamp, T_world_camera=pose)
    except (CaptureError, CameraError) as exc:
        result.rejected[str(exc)] += 1
        result.first_error = result.first_error or f"frame: {exc}"
        return
    decision = buffer.offer(frame)
    if not decision.accepted:
        result.rejected[decision.reason.split(" (")[0]] += 1
    else:
        log.info("keyframe %d at t=%.3f (sharpness %.2e%s)", len(buffer), stamp, decision.sharpness,
                 ", dropped the oldest" if decision.dropped_oldest else "")


def _why_none(result: BagResult, topics: BagTopics, slop_s: float) -> str:
    """One line saying why a bag gave no keyframe."""
    if result.images == 0:
        return f"no messages on {topics.image!r}"
    reasons = []
    if result.unconverted:
        reasons.append(", ".join(f"{n} {p} messages could not be converted"
                                 for p, n in result.unconverted.items())
                       + f" (first: {result.first_error})")
    if result.incomplete:
        reasons.append(", ".join(f"{n} images had no {p} with a matching stamp"
                                 for p, n in result.incomplete.items())
                       + f" (slop {slop_s} s)")
    if result.orphans:
        reasons.append(f"{result.orphans} instants had no image")
    if result.pending:
        reasons.append(f"{result.pending} instants were still missing a part at the end")
    if result.rejected:
        reasons.append(", ".join(f"{n} frames {r}" for r, n in result.rejected.items()))
    return (f"{result.images} images, {result.instants} complete frames; "
            + ("; ".join(reasons) or "nothing was paired"))


__all__ = ["BagError", "BagResult", "BagTopics", "bag_to_capture"]
