"""The SpaRP ROS 2 node: camera topics in, object pose / TF / mesh out, on request.

Subscriptions (relative names, remap them; sensor-data QoS):
  ``image`` (sensor_msgs/Image: rgb8, bgr8, rgba8, bgra8, 16-bit colour, mono8, mono16/16UC1,
  32FC1, yuv422/uyvy, yuv422_yuy2/yuyv, bayer_*8; see ``image_codec``), or with
  ``compressed_input`` ``image/compressed`` (sensor_msgs/CompressedImage, JPEG/PNG: the topic
  image_transport's ``compressed`` transport publishes beside the remapped ``image``),
  ``camera_info`` (CameraInfo), ``depth`` (16UC1 mm or 32FC1 m; when ``use_depth``), ``mask``
  (mono8, object > 127; when ``use_mask``), ``oracle_nocs`` (16UC3 ground-truth NOCS; only with
  the ``oracle*`` backends, a test instrument fed by the capture player).
A message that cannot be read (bad encoding, step, size, truncated data, uncalibrated or
unsupported CameraInfo) is dropped with a warning (at most one per part every WARN_THROTTLE_S) and
counted in ``dropped``; a CameraInfo for a binned/decimated image (same aspect ratio) is scaled to
the image; a distorted camera's frames are undistorted to the same K before they are buffered.
Services: ``~/reconstruct`` and ``~/reset`` (std_srvs/Trigger).
Publications on success (in the camera frame of the most recent keyframe, at its stamp):
  ``/sparp/object_pose`` (PoseStamped), TF ``<camera> → <object_id>``, ``/sparp/mesh_marker``
  (Marker TRIANGLE_LIST), ``/sparp/mesh`` (shape_msgs/Mesh, object frame),
  ``/sparp/reconstruction`` (sparp_ros_msgs/ObjectReconstruction).

Threading (STYLE 7): subscription callbacks only convert messages and push complete, sharp, new
frames into a bounded keyframe buffer. ``~/reconstruct`` runs the pipeline in its own reentrant
callback group under a MultiThreadedExecutor, so images keep flowing while it works and a second
request is answered "busy" instead of queueing. Errors in the input or the pipeline become a
``success=false`` response with the reason; the node stays up.
"""
from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from functools import partial
from typing import Any

import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from shape_msgs.msg import Mesh
from std_srvs.srv import Trigger
from visualization_msgs.msg import Marker

from . import ros_io
from .camera import CameraError
from .capture import CaptureError, Frame
from .keyframes import FrameAssembler, KeyframeBuffer, KeyframeConfig

NODE_NAME = "sparp_node"
ORACLE_PREFIX = "oracle"
"""Backends named oracle* take the ground-truth NOCS of each frame (the ``oracle_nocs`` topic)."""
WARN_THROTTLE_S = 5.0
EXECUTOR_THREADS = 4
"""Subscriptions, the reconstruction, and a busy/reset answer can all run at once."""

# Every parameter: (default, description). config/sparp.yaml repeats them with comments; a test
# keeps the two equal.
PARAMETERS: dict[str, tuple[Any, str]] = {
    "backend": ("oracle", "NOCS backend: 'oracle' or 'oracle_per_view' (ground truth from "
                          "oracle_nocs, test instruments) or 'model'"),
    "device": ("cpu", "torch device of the model backend: cpu, cuda, cuda:1"),
    "weights": ("", "model weights folder; empty = the weights shipped in the package"),
    "model_domain": ("nocs_self", "model backend: 'nocs_self' (per-view NOCS + azimuth search) or "
                                  "'nocs_ref' (SpaRP's tiled cross-view NOCS)"),
    "num_hypotheses": (1, "model backend: NOCS samples per view (mixture of experts; the one "
                          "whose pose explains most of its NOCS is kept)"),
    "cell_size": (128, "pixels per view cell for the oracle backends (the model uses its own)"),
    "size_prior_m": (0.2, "bounding-box diagonal assumed when there is no depth (metres)"),
    "mesh": (True, "build a mesh (Marker, shape_msgs/Mesh); false = pose only, faster"),
    "max_keyframes": (6, "keyframes kept, 1..6; the oldest is dropped when a new one comes"),
    "min_image_change": (0.04, "mean |difference| of a 32x32 grey thumbnail (0..1) to every "
                               "kept keyframe for a frame to count as a new view"),
    "min_sharpness": (1e-4, "variance of the Laplacian (grey 0..1 at 320 px width) below "
                            "which a frame is too blurry to keep"),
    "use_depth": (True, "wait for a depth image per frame (metric scale from depth)"),
    "use_mask": (True, "wait for an object mask per frame"),
    "reliable_inputs": (False, "subscribe with reliable QoS instead of sensor-data (best-effort); "
                                "for the capture player and bag playback, where a lost frame is a "
                                "lost view (does not match best-effort publishers)"),
    "sync_slop_s": (0.005, "stamps closer than this are the same capture instant (seconds)"),
    "sync_timeout_s": (1.0, "an instant still missing a part after this is dropped (seconds)"),
    "object_id": ("sparp_object", "TF child frame and object_id of the result"),
    "mesh_output_dir": ("", "if set, write <object_id>.glb here after each reconstruction"),
    "compressed_input": (False, "subscribe to sensor_msgs/CompressedImage (JPEG/PNG) on "
                                "<image>/compressed (image_transport naming) instead of the raw "
                                "image"),
    "max_image_side": (ros_io.MAX_IMAGE_SIDE, "images larger than this (pixels per side) are "
                                              "dropped as corrupt"),
}
DEFAULTS: dict[str, Any] = {name: default for name, (default, _) in PARAMETERS.items()}

RESULT_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL, history=HistoryPolicy.KEEP_LAST)
"""Latched, so RViz or a planner that starts later still gets the last result."""
RELIABLE_INPUT_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
"""Inputs when ``reliable_inputs``: best-effort large images (NOCS, depth) are lost now and then
on a loaded machine, which for a player's few frames means a lost view."""
TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)
"""The QoS tf2_ros's TransformBroadcaster uses on /tf."""


class SparpNode(Node):
    """See the module docstring. ``kwargs`` go to ``rclpy.node.Node`` (context, namespace,
    parameter_overrides), which is how tests run several nodes in one process."""

    def __init__(self, **kwargs: Any):
        super().__init__(NODE_NAME, **kwargs)
        for name, (default, description) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=description))
        p = {name: self.get_parameter(name).value for name in DEFAULTS}
        self.params = p
        self.object_id: str = p["object_id"]
        self.last_reconstruction = None
        self._busy = threading.Lock()
        self._camera_info_seen = False
        self._images_seen = 0
        # Messages (per part) and assembled frames ("frame") dropped as unusable; the last reason.
        self.dropped: Counter[str] = Counter()
        self._last_drop = ""
        self._warned_at: dict[str, float] = {}
        self._undistorting: set[str] = set()

        # 1. The pipeline, built now so a bad backend fails at start-up (STYLE 8).
        from .pipeline import PipelineConfig, SparpPipeline

        self.pipeline = SparpPipeline(PipelineConfig(
            backend=p["backend"], device=p["device"], weights=p["weights"] or None,
            model_domain=p["model_domain"], num_hypotheses=int(p["num_hypotheses"]),
            cell_size=int(p["cell_size"]), size_prior_m=float(p["size_prior_m"]), mesh=bool(p["mesh"])))
        self.get_logger().info(f"pipeline ready: backend={p['backend']} device={p['device']} "
                               f"cell_size={self.pipeline.cell_size}")
        oracle = p["backend"].startswith(ORACLE_PREFIX)
        if oracle:
            self.get_logger().warning(f"backend '{p['backend']}' reads ground-truth NOCS from "
                                      "'oracle_nocs' (a test instrument); it cannot run on a "
                                      "real camera")

        # 2. Keyframes and stamp pairing.
        self.buffer = KeyframeBuffer(KeyframeConfig(
            max_keyframes=int(p["max_keyframes"]), min_image_change=float(p["min_image_change"]),
            min_sharpness=float(p["min_sharpness"])))
        parts = ["image", "camera_info"]
        parts += ["depth"] if p["use_depth"] else []
        parts += ["mask"] if p["use_mask"] else []
        parts += ["oracle_nocs"] if oracle else []
        self.assembler = FrameAssembler(tuple(parts), slop_s=float(p["sync_slop_s"]),
                                        timeout_s=float(p["sync_timeout_s"]))

        # 3. Subscriptions: one mutually exclusive group, so conversions never interleave.
        inputs = MutuallyExclusiveCallbackGroup()
        input_qos = RELIABLE_INPUT_QOS if p["reliable_inputs"] else qos_profile_sensor_data
        side = int(p["max_image_side"])
        converters = {"image": (Image, "image", partial(ros_io.image_to_rgb, max_side=side)),
                      "camera_info": (CameraInfo, "camera_info", ros_io.camera_info_to_camera),
                      "depth": (Image, "depth", partial(ros_io.image_to_depth, max_side=side)),
                      "mask": (Image, "mask", partial(ros_io.image_to_mask, max_side=side)),
                      "oracle_nocs": (Image, "oracle_nocs", lambda m: ros_io.image_to_nocs(m)[0])}
        if p["compressed_input"]:
            # image_transport: the compressed transport of base topic T is T/compressed, after
            # T is remapped (a remap of `image` must move the compressed topic too).
            converters["image"] = (CompressedImage, self.resolve_topic_name("image") + "/compressed",
                                   partial(ros_io.compressed_image_to_rgb, max_side=side))
        self._subscriptions_by_part = {}
        for part in parts:
            msg_type, topic, convert = converters[part]
            self._subscriptions_by_part[part] = self.create_subscription(
                msg_type, topic, self._make_callback(part, convert), input_qos,
                callback_group=inputs)

        # 4. Outputs.
        self.pose_pub = self.create_publisher(PoseStamped, "/sparp/object_pose", RESULT_QOS)
        self.marker_pub = self.create_publisher(Marker, "/sparp/mesh_marker", RESULT_QOS)
        self.mesh_pub = self.create_publisher(Mesh, "/sparp/mesh", RESULT_QOS)
        self.recon_pub = self._create_reconstruction_publisher()
        self.tf = self._create_tf_sender()

        # 5. Services: reconstruct in its own reentrant group (busy answers while it runs),
        # reset in another so it is never stuck behind a reconstruction.
        self.create_service(Trigger, "~/reconstruct", self._on_reconstruct,
                            callback_group=ReentrantCallbackGroup())
        self.create_service(Trigger, "~/reset", self._on_reset,
                            callback_group=MutuallyExclusiveCallbackGroup())
        topics = ", ".join(s.topic_name for s in self._subscriptions_by_part.values())
        self.get_logger().info(f"waiting for {', '.join(parts)} on {topics}")

    # -- set-up helpers ------------------------------------------------------------------------
    def _create_reconstruction_publisher(self):
        try:
            from sparp_ros_msgs.msg import ObjectReconstruction
        except ImportError:
            self.get_logger().warning("sparp_ros_msgs is not built (run scripts/build_interfaces.sh): "
                                      "/sparp/reconstruction is not published")
            return None
        return self.create_publisher(ObjectReconstruction, "/sparp/reconstruction", RESULT_QOS)

    def _create_tf_sender(self):
        """tf2_ros's broadcaster on a ROS install; with the wheels, TFMessage on /tf directly."""
        try:
            from tf2_ros import TransformBroadcaster
            broadcaster = TransformBroadcaster(self)
            return broadcaster.sendTransform
        except ImportError:
            pass
        try:
            from tf2_msgs.msg import TFMessage
        except ImportError:
            self.get_logger().warning("neither tf2_ros nor tf2_msgs is importable: no TF published "
                                      "(run scripts/build_interfaces.sh)")
            return None
        pub = self.create_publisher(TFMessage, "/tf", TF_QOS)
        return lambda transform: pub.publish(TFMessage(transforms=[transform]))

    def _make_callback(self, part: str, convert):
        def callback(msg) -> None:
            try:
                self._on_part(part, msg, convert)
            except Exception as exc:  # noqa: BLE001 - an exception here would stop the executor
                self.get_logger().error(f"{part} callback failed: {type(exc).__name__}: {exc}",
                                        throttle_duration_sec=WARN_THROTTLE_S)
        return callback

    # -- subscriptions: convert and push ---------------------------------------------------------
    def _drop(self, key: str, reason: str) -> None:
        """Count a dropped message or frame and warn, at most once per ``key`` every
        WARN_THROTTLE_S (rclpy's throttle is per call site: one bad topic would hide another)."""
        self.dropped[key] += 1
        self._last_drop = f"{key}: {reason}"
        now = time.monotonic()
        if now - self._warned_at.get(key, -WARN_THROTTLE_S) >= WARN_THROTTLE_S:
            self._warned_at[key] = now
            what = "frame" if key == "frame" else f"{key} message"
            self.get_logger().warning(f"dropping {what} ({self.dropped[key]} so far): {reason}")

    def _on_part(self, part: str, msg: Any, convert) -> None:
        if part == "image":
            self._images_seen += 1
        try:
            value = convert(msg)
        except (ros_io.ImageConversionError, CameraError) as exc:
            self._drop(part, str(exc))
            return
        if part == "camera_info":
            self._camera_info_seen = True
        stamp = ros_io.stamp_to_seconds(msg.header.stamp)
        result = self.assembler.add(part, stamp, (value, msg.header))
        for s, missing in result.dropped:
            self.get_logger().warning(f"frame at t={s:.3f} dropped: no {', '.join(missing)} with a "
                                      f"matching stamp (sync_slop_s={self.assembler.slop_s})",
                                      throttle_duration_sec=WARN_THROTTLE_S)
        for parts in result.complete:
            self._push_frame(parts)

    def _push_frame(self, parts: dict[str, Any]) -> None:
        image, header = parts["image"]
        camera, _ = parts["camera_info"]
        try:
            frame = Frame(image=image, camera=camera.fit_to(image.shape[1], image.shape[0]),
                          depth=parts["depth"][0] if "depth" in parts else None,
                          mask=parts["mask"][0] if "mask" in parts else None,
                          nocs=parts["oracle_nocs"][0] if "oracle_nocs" in parts else None,
                          stamp=parts["stamp"]).undistorted()
        except (CaptureError, CameraError) as exc:
            self._drop("frame", f"t={parts['stamp']:.3f}: {exc}")
            return
        if camera.has_distortion and camera.frame_id not in self._undistorting:
            self._undistorting.add(camera.frame_id)
            self.get_logger().info(f"camera {camera.frame_id} has {camera.distortion_model or 'OpenCV'} "
                                   "distortion: its frames are undistorted to the same K")
        decision = self.buffer.offer(frame, meta=header.stamp)
        if decision.accepted:
            self.get_logger().info(f"keyframe {len(self.buffer)}/{self.buffer.config.max_keyframes} "
                                   f"at t={parts['stamp']:.3f} (sharpness {decision.sharpness:.2e}"
                                   + (", dropped the oldest" if decision.dropped_oldest else "") + ")")
        else:
            self.get_logger().debug(f"frame at t={parts['stamp']:.3f} not kept: {decision.reason}")

    # -- services --------------------------------------------------------------------------------
    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        n = len(self.buffer)
        self.buffer.clear()
        self.assembler.clear()
        response.success, response.message = True, f"cleared {n} keyframes"
        self.get_logger().info(f"reset: {response.message}")
        return response

    def _on_reconstruct(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        if not self._busy.acquire(blocking=False):
            response.success, response.message = False, "busy: a reconstruction is running"
            return response
        try:
            response.success, response.message = self._reconstruct()
        finally:
            self._busy.release()
        # rclpy ties a severity to each logging call site, so one call per severity.
        if response.success:
            self.get_logger().info(f"reconstruct: {response.message}")
        else:
            self.get_logger().warning(f"reconstruct: {response.message}")
        return response

    def _reconstruct(self) -> tuple[bool, str]:
        """Run the pipeline on the current keyframes and publish; (success, message)."""
        from .pipeline import PipelineError

        items = self.buffer.items()
        if not items:
            dropped = (f"; {sum(self.dropped.values())} dropped as unusable, last {self._last_drop}"
                       if self.dropped else "")
            if not self._camera_info_seen:
                topic = self._subscriptions_by_part["camera_info"].topic_name
                what = "no usable CameraInfo" if self.dropped["camera_info"] else "no CameraInfo"
                return False, (f"{what} received on {topic}: no keyframes can be built "
                               f"({self._images_seen} images received{dropped})")
            return False, ("no keyframes yet: waiting for " + ", ".join(self.assembler.parts)
                           + f" with matching stamps ({self._images_seen} images received"
                           + f"{dropped})")
        frames = [f for f, _ in items]
        self.get_logger().info(f"reconstructing from {len(frames)} keyframes")
        t0 = time.perf_counter()
        try:
            recon = self.pipeline(frames)
        except PipelineError as exc:
            return False, f"pipeline: {exc}"
        except Exception as exc:  # noqa: BLE001 - the node must survive any pipeline failure
            self.get_logger().error(f"pipeline failed: {type(exc).__name__}: {exc}")
            return False, f"pipeline failed: {type(exc).__name__}: {exc}"
        elapsed = time.perf_counter() - t0
        self.get_logger().info("pipeline stages (s): "
                               + " ".join(f"{k}={v:.2f}" for k, v in recon.timings.items()))
        self.last_reconstruction = recon
        try:
            view = self._publish(recon, items)
        except ValueError as exc:
            return False, f"cannot publish: {exc}"
        return True, self._summary(recon, items, view, elapsed)

    # -- outputs ---------------------------------------------------------------------------------
    def _publish(self, recon, items: list[tuple[Frame, Any]]) -> int:
        """Publish every output for the most recent keyframe with a pose; returns its index."""
        view = ros_io.published_view(recon)
        frame_id, stamp = items[view][0].camera.frame_id, items[view][1]
        T = recon.views[view].T_camera_object
        self.pose_pub.publish(ros_io.reconstruction_to_pose_stamped(recon, frame_id, stamp, view))
        if self.tf is not None:
            self.tf(ros_io.reconstruction_to_transform_stamped(recon, frame_id, stamp,
                                                              self.object_id, view))
        if recon.mesh is not None:
            self.marker_pub.publish(ros_io.mesh_to_marker(recon.mesh, T, frame_id, stamp))
            self.mesh_pub.publish(ros_io.mesh_to_shape_msg(recon.mesh))
            if self.params["mesh_output_dir"]:
                self._write_mesh(recon)
        if self.recon_pub is not None:
            self.recon_pub.publish(ros_io.reconstruction_to_msg(
                recon, frame_id, stamp, self.object_id, view=view,
                view_frame_ids=[f.camera.frame_id for f, _ in items],
                view_stamps=[s for _, s in items]))
        self.get_logger().info(f"published pose, TF {frame_id} -> {self.object_id}, marker, mesh, "
                               "reconstruction")
        return view

    def _write_mesh(self, recon) -> None:
        from pathlib import Path

        out = Path(self.params["mesh_output_dir"]).expanduser()
        try:
            out.mkdir(parents=True, exist_ok=True)
            recon.mesh.export(out / f"{self.object_id}.glb")
            self.get_logger().info(f"wrote {out / (self.object_id + '.glb')}")
        except OSError as exc:
            self.get_logger().warning(f"cannot write the mesh to {out}: {exc}")

    def _summary(self, recon, items, view: int, elapsed: float) -> str:
        T = recon.views[view].T_camera_object
        q = ros_io.matrix_to_quaternion(T[:3, :3])
        ok = sum(v.ok for v in recon.views)
        return (f"pose of {self.object_id} in {items[view][0].camera.frame_id}: "
                f"t=[{T[0, 3]:.3f}, {T[1, 3]:.3f}, {T[2, 3]:.3f}] m, "
                f"q(xyzw)=[{q[0]:.3f}, {q[1]:.3f}, {q[2]:.3f}, {q[3]:.3f}]; "
                f"scale {recon.scale:.3f} m ({recon.scale_source}); "
                f"confidence {recon.confidence:.2f}; {ok}/{len(recon.views)} views posed; "
                f"backend {recon.backend}; {elapsed:.2f} s")


def _ros_argv(argv: list[str]) -> list[str]:
    """``--params-file FILE`` before any ``--ros-args`` becomes ``--ros-args --params-file FILE``,
    so ``sparp-ros node --params-file config/sparp.yaml`` works without ``ros2 run``."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == "--ros-args":
            return out + argv[i:]
        if argv[i] == "--params-file" and i + 1 < len(argv):
            out += ["--ros-args", "--params-file", argv[i + 1], "--"]
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the node until Ctrl-C or an external shutdown (like the rclpy examples)."""
    args = _ros_argv(list(sys.argv if argv is None else argv))
    rclpy.init(args=args)
    node = None
    try:
        node = SparpNode()
        executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ValueError as exc:          # PipelineError, bad parameter values: say it, no traceback
        print(f"{NODE_NAME}: {exc}", file=sys.stderr)
        return 1
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
