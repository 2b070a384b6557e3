"""Offline: a rosbag2 (sqlite3 ``.db3`` or ``.mcap``) → a capture folder, keyframes picked as the
node picks them.

    sparp-ros bag BAG --image-topic T --camera-info-topic T [--depth-topic T] [--mask-topic T]
                      [--oracle-nocs-topic T] --out CAPTURE [--max-views N] ...

The bag is read with ``rosbags`` (pure Python: no rclpy, no DDS, no ROS install). Messages are
deserialised with its Kilted type store and then handled as the node handles live topics:

1. every image, depth, mask and oracle-NOCS message is converted with the node's converters
   (``ros_io.image_to_rgb`` / ``image_to_depth`` / ``image_to_mask`` / ``image_to_nocs``, which read
   only the message fields, so rosbags' messages work as they are);
2. the parts of one instant are paired by header stamp with the node's
   :class:`~sparp_ros.keyframes.FrameAssembler` (same slop; its timeout runs on bag time);
3. each complete instant gets the latest ``CameraInfo`` stamped at or before it (plus the slop), so
   a calibration published at a lower rate or logged just after its image still applies;
4. the frame is made as the node makes it (intrinsics fitted to a binned image, then undistorted)
   and offered to the node's :class:`~sparp_ros.keyframes.KeyframeBuffer`.

The capture therefore holds the keyframes the node would hold at the end of the bag (the buffer
keeps the most recent ``max_keyframes`` sharp and distinct views), written with
:func:`sparp_ros.capture.save_capture`, so ``sparp-ros reconstruct CAPTURE`` runs on it.

The converters live in ``ros_io``, which imports the ROS message packages of the wheels (not
rclpy); they are imported when a bag is converted.

Errors: :class:`BagError` (a :class:`~sparp_ros.capture.CaptureError`) for a missing or unreadable
bag, a topic that is not in the bag (the message lists those that are) or has the wrong type, no
``CameraInfo`` at or before any image, and a bag that yields no keyframe (the message says why).
"""
from __future__ import annotations

import bisect
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .camera import CameraError
from .capture import Capture, CaptureError, Frame, save_capture
from .keyframes import FrameAssembler, KeyframeBuffer, KeyframeConfig

log = logging.getLogger(__name__)

IMAGE_TYPE = "sensor_msgs/msg/Image"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
SYNC_SLOP_S = 0.005
"""The node's ``sync_slop_s`` default: stamps closer than this are one capture instant."""
SYNC_TIMEOUT_S = 1.0
"""The node's ``sync_timeout_s`` default, here in bag time."""
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


def _typestore():
    from rosbags.typesys import Stores, get_typestore

    store = getattr(Stores, "ROS2_KILTED", None) or Stores.LATEST
    return get_typestore(store)


def _converters() -> dict[str, Any]:
    """The node's converters per part (see node.py), applied to rosbags' messages."""
    from . import ros_io

    return {"image": ros_io.image_to_rgb, "depth": ros_io.image_to_depth,
            "mask": ros_io.image_to_mask, "oracle_nocs": lambda m: ros_io.image_to_nocs(m)[0],
            "camera_info": ros_io.camera_info_to_camera}


def _conversion_errors() -> tuple[type[Exception], ...]:
    from . import ros_io

    return (ros_io.ImageConversionError, CameraError)


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
                   keyframes: KeyframeConfig | None = None,
                   slop_s: float = SYNC_SLOP_S) -> BagResult:
    """Pick the keyframes of ``bag`` as the node would and return them as a capture, written to
    ``out`` when given. Raises BagError (see the module docstring)."""
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

        # 3. Pair, convert and offer every instant, as the node does.
        now = [0.0]
        assembler = FrameAssembler(tuple(topics.image_parts()), slop_s=slop_s,
                                   timeout_s=SYNC_TIMEOUT_S, clock=lambda: now[0])
        buffer = KeyframeBuffer(keyframes)
        for conn, t, msg in _read(reader, typestore, image_conns):
            part = part_of[conn.id]
            now[0] = t
            result.images += part == "image"
            try:
                value = convert[part](msg)
            except errors as exc:
                result.unconverted[part] += 1
                result.first_error = result.first_error or f"{part}: {exc}"
                continue
            assembled = assembler.add(part, _stamp(msg), value)
            for _, missing in assembled.dropped:
                if "image" in missing:
                    result.orphans += 1
                else:
                    result.incomplete.update(missing)
            for parts in assembled.complete:
                _offer(parts, cameras, camera_stamps, slop_s, buffer, result)
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


def _offer(parts: dict[str, Any], cameras: list[tuple[float, Any]], camera_stamps: list[float],
           slop_s: float, buffer: KeyframeBuffer, result: BagResult) -> None:
    stamp = parts["stamp"]
    i = bisect.bisect_right(camera_stamps, stamp + slop_s)
    if i == 0:
        result.no_camera_info += 1
        return
    camera = cameras[i - 1][1]
    result.instants += 1
    image = parts["image"]
    try:    # as SparpNode._push_frame: intrinsics fitted to a binned image, then undistorted
        frame = Frame(image=image, camera=camera.fit_to(image.shape[1], image.shape[0]),
                      depth=parts.get("depth"), mask=parts.get("mask"),
                      nocs=parts.get("oracle_nocs"), stamp=stamp).undistorted()
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
