"""Publish a capture folder as camera topics, so the node can be run on recorded or rendered data.

Per instant, all with the same stamp and the capture's camera ``frame_id``: first, when the frame
has a ``T_world_camera`` (the renderer writes them; a robot's would come from TF), that pose on
``/tf`` (``tf2_msgs/TFMessage``, ``frame_id=<world frame>``, ``child_frame_id=<camera frame>``);
then ``camera_info`` (CameraInfo), ``depth`` (16UC1 mm), ``mask`` (mono8), ``oracle_nocs`` (16UC3,
the ground-truth NOCS for the oracle backend, only when the capture has it) and, last, ``image``
(rgb8) — the image last so that a receiver that pairs by stamp has everything when it arrives.
Like a camera, each view is published again with fresh stamps at ``--camera-rate`` (5 Hz) until
the next view (``--rate``, 2 views/s), so one lost or late message does not lose the view.

    python -m sparp_ros.ros.player CAPTURE [--rate HZ] [--camera-rate HZ] [--repeat N]
                               [--no-oracle-nocs] [--no-depth] [--no-tf] [--world-frame FRAME]
                               [--ros-args ...]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CameraInfo, Image

from . import messages
from ..capture import Capture, load_capture

TOPICS = ("camera_info", "depth", "mask", "oracle_nocs", "image")
"""In publishing order."""
PLAYER_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
"""Reliable: matches both reliable and best-effort (sensor-data) subscribers."""
DEFAULT_RATE_HZ = 2.0
"""Views per second."""
DEFAULT_CAMERA_RATE_HZ = 5.0
"""Each view is sent again at this rate until the next view, like a camera on a still scene:
a lost message or a part that comes too late to pair costs one instant, not the view. With
best-effort inputs it brought 23 of 40 played views to the node instead of 7 of 40 (README,
"Inputs that arrive"); reliable inputs got all 40 either way."""
DISCOVERY_SETTLE_S = 0.5
"""A publisher sees a match slightly before the subscriber does; wait this long after it."""
WORLD_FRAME = "world"
"""The TF parent of the capture's camera poses (the renderer's world is the mesh frame)."""
TF_TOPIC = "/tf"


class CapturePlayer:
    """Publishers for one capture's topics on ``node``."""

    def __init__(self, node: Node, tf: bool = True):
        """``tf``: also publish the capture's camera poses on /tf (needs a ``tf2_msgs``)."""
        self.node = node
        self.pubs = {t: node.create_publisher(CameraInfo if t == "camera_info" else Image, t, PLAYER_QOS)
                     for t in TOPICS}
        self._tf_message = None
        if tf:
            try:
                from tf2_msgs.msg import TFMessage
            except ImportError:
                node.get_logger().warning("tf2_msgs is not importable (run "
                                          "scripts/build_interfaces.sh): camera poses not on /tf")
            else:
                self._tf_message = TFMessage
                self.pubs["tf"] = node.create_publisher(TFMessage, TF_TOPIC, PLAYER_QOS)

    def wait_for_subscribers(self, timeout_s: float, optional: tuple[str, ...] = (),
                             optional_grace_s: float = 2.0) -> bool:
        """Wait until ``image`` and ``camera_info`` have a subscriber (messages sent before
        discovery completes are lost), then up to ``optional_grace_s`` more for the ``optional``
        topics (a receiver may not use them); False when image/camera_info time out."""
        deadline = time.monotonic() + timeout_s
        while not self._matched(("image", "camera_info")):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        deadline = time.monotonic() + optional_grace_s
        while not self._matched(optional) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(DISCOVERY_SETTLE_S)
        return True

    def flush(self, timeout_s: float = 2.0) -> None:
        """Wait until reliable subscribers acknowledged everything, then a little longer for
        best-effort ones: a process that exits right after publishing loses its last frame."""
        for pub in self.pubs.values():
            pub.wait_for_all_acked(Duration(seconds=timeout_s))
        time.sleep(DISCOVERY_SETTLE_S)

    def _matched(self, topics: tuple[str, ...]) -> bool:
        return all(self.pubs[t].get_subscription_count() > 0 for t in topics)

    def publish_capture(self, capture: Capture, rate_hz: float = DEFAULT_RATE_HZ,
                        oracle_nocs: bool = True, depth: bool = True,
                        world_frame: str = WORLD_FRAME,
                        camera_rate_hz: float = DEFAULT_CAMERA_RATE_HZ) -> list[tuple[int, Time]]:
        """Publish the capture's views at ``rate_hz``, each view again at ``camera_rate_hz``
        (a fresh stamp each time) until the next one, like a camera looking at a still scene
        (``camera_repeats``); returns (view index, stamp) per instant published.
        ``depth=False`` leaves the depth topic out; the camera poses go to /tf as
        ``T_<world_frame>_<camera frame>`` when the player was made with ``tf``."""
        view_period = 1.0 / rate_hz if rate_hz > 0 else 0.0
        offsets = camera_repeats(view_period, camera_rate_hz)
        published = []
        for i, f in enumerate(capture.frames):
            t_view = time.monotonic()
            messages = self._messages(f, oracle_nocs, depth, world_frame)
            for offset in offsets:
                time.sleep(max(0.0, t_view + offset - time.monotonic()))
                stamp = self.node.get_clock().now().to_msg()
                for topic, msg in messages:          # in TOPICS order: the image last
                    for header in _headers(msg):
                        header.stamp = stamp
                    self.pubs[topic].publish(msg)
                published.append((i, stamp))
            self.node.get_logger().info(f"published view {i + 1}/{len(capture.frames)}"
                                        + (f" {len(offsets)} times" if len(offsets) > 1 else ""))
            if i + 1 < len(capture.frames):
                time.sleep(max(0.0, t_view + view_period - time.monotonic()))
        return published

    def _messages(self, f, oracle_nocs: bool, depth: bool,
                  world_frame: str) -> list[tuple[str, Any]]:
        """(topic, message) of one view, in publishing order; the stamps are set when sent."""
        frame_id = f.camera.frame_id
        out: list[tuple[str, Any]] = []
        if "tf" in self.pubs and f.T_world_camera is not None:
            out.append(("tf", self._tf_message(transforms=[
                messages.matrix_to_transform_stamped(f.T_world_camera, world_frame, frame_id)])))
        out.append(("camera_info", messages.camera_to_camera_info(f.camera)))
        if depth and f.depth is not None:
            out.append(("depth", messages.depth_to_image(f.depth, frame_id)))
        if f.mask is not None:
            out.append(("mask", messages.mask_to_image(f.mask, frame_id)))
        if oracle_nocs and f.nocs is not None:
            mask = f.mask if f.mask is not None else (f.nocs > 0).any(axis=2)
            out.append(("oracle_nocs", messages.nocs_to_image(f.nocs, mask, frame_id)))
        out.append(("image", messages.numpy_to_image(f.image, "rgb8", frame_id)))
        return out


def camera_repeats(view_period_s: float, camera_rate_hz: float) -> list[float]:
    """When, in seconds after a view starts, it is published: every 1/``camera_rate_hz`` within
    its ``view_period_s``, at least once (``camera_rate_hz`` <= 0 or no period: once)."""
    if camera_rate_hz <= 0 or view_period_s <= 0:
        return [0.0]
    step = 1.0 / camera_rate_hz
    return [k * step for k in range(max(1, math.ceil(view_period_s / step - 1e-9)))]


def _headers(msg: Any) -> list[Any]:
    """The headers to stamp: the message's, or each transform's of a TFMessage."""
    return [t.header for t in msg.transforms] if hasattr(msg, "transforms") else [msg.header]


def play(capture_dir: str | Path, node: Node | None = None, rate_hz: float = DEFAULT_RATE_HZ,
         repeat: int = 1, oracle_nocs: bool = True, wait_for_subscribers_s: float = 10.0,
         depth: bool = True, tf: bool = True, world_frame: str = WORLD_FRAME,
         camera_rate_hz: float = DEFAULT_CAMERA_RATE_HZ) -> list[tuple[int, Time]]:
    """Publish the capture at ``capture_dir`` ``repeat`` times (0 = forever), each view at
    ``camera_rate_hz`` until the next (``CapturePlayer.publish_capture``); returns (view index,
    stamp) of every instant published. Without ``node``, a ``sparp_player`` node is
    made in the default context (rclpy must be initialised). Publishing needs no spinning, so
    this may run beside an executor that spins ``node``. ``depth=False``: no depth topic;
    ``tf``: the frames' ``T_world_camera`` on /tf under ``world_frame`` (when the capture has
    them)."""
    capture = load_capture(capture_dir, with_nocs=oracle_nocs)
    own = node is None
    node = node or rclpy.create_node("sparp_player")
    try:
        f0 = capture.frames[0]
        player = CapturePlayer(node, tf=tf and f0.T_world_camera is not None)
        optional = tuple(t for t, present in (("depth", f0.depth if depth else None),
                                              ("mask", f0.mask),
                                              ("oracle_nocs", f0.nocs if oracle_nocs else None),
                                              ("tf", f0.T_world_camera if "tf" in player.pubs
                                               else None))
                         if present is not None)
        if not player.wait_for_subscribers(wait_for_subscribers_s, optional):
            node.get_logger().warning(f"no subscriber on image/camera_info after "
                                      f"{wait_for_subscribers_s:.0f} s; publishing anyway")
        published, n = [], 0
        while (repeat == 0 or n < repeat) and rclpy.ok(context=node.context):
            published += player.publish_capture(capture, rate_hz, oracle_nocs, depth, world_frame,
                                                camera_rate_hz)
            n += 1
        player.flush()
        return published
    finally:
        if own:
            node.destroy_node()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args_ros = rclpy.utilities.remove_ros_args(["player"] + argv)[1:]
    parser = argparse.ArgumentParser(prog="sparp-ros play", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("capture", help="capture folder (images/, cameras.json, ...)")
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE_HZ,
                        help="views per second (default: %(default)s)")
    parser.add_argument("--camera-rate", type=float, default=DEFAULT_CAMERA_RATE_HZ,
                        help="each view is published again at this rate (new stamps) until the "
                             "next, like a camera; 0 = once (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=1, help="times to play it, 0 = forever")
    parser.add_argument("--no-oracle-nocs", action="store_true",
                        help="do not publish the ground-truth NOCS (oracle_nocs)")
    parser.add_argument("--no-depth", action="store_true", help="do not publish depth")
    parser.add_argument("--no-tf", action="store_true",
                        help="do not publish the capture's camera poses on /tf")
    parser.add_argument("--world-frame", default=WORLD_FRAME,
                        help="TF parent frame of the camera poses (default: %(default)s)")
    args = parser.parse_args(args_ros)
    rclpy.init(args=["player"] + argv)
    try:
        published = play(args.capture, rate_hz=args.rate, repeat=args.repeat,
                         oracle_nocs=not args.no_oracle_nocs, depth=not args.no_depth,
                         tf=not args.no_tf, world_frame=args.world_frame,
                         camera_rate_hz=args.camera_rate)
        views = sum(k == 0 or published[k - 1][0] != i for k, (i, _) in enumerate(published))
        print(f"published {views} views ({len(published)} instants) from {args.capture}")
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
