"""The SpaRP ROS 2 node: camera topics in, object pose / TF / mesh out, on request.

Every name is relative to the node's namespace (``--ros-args -r __ns:=/arm1``, the launch file's
``namespace``), so nodes side by side do not mix; in the root namespace they are the names below.
Subscriptions (remap them; reliable QoS, or sensor-data QoS with ``reliable_inputs:=false``):
  ``image`` (sensor_msgs/Image: rgb8, bgr8, rgba8, bgra8, 16-bit colour, mono8, mono16/16UC1,
  32FC1, yuv422/uyvy, yuv422_yuy2/yuyv, bayer_*8; see ``image_codec``), or with
  ``compressed_input`` ``image/compressed`` (sensor_msgs/CompressedImage, JPEG/PNG: the topic
  image_transport's ``compressed`` transport publishes beside the remapped ``image``),
  ``camera_info`` (CameraInfo), ``depth`` (16UC1 mm or 32FC1 m; when ``use_depth``), ``mask``
  (mono8, object > 127; when ``use_mask``), ``oracle_nocs`` (16UC3 ground-truth NOCS; only with
  the ``oracle*`` backends, a test instrument fed by the capture player); with ``world_frame``,
  ``/tf`` and ``/tf_static`` (tf2_msgs/TFMessage; tf2_ros's listener where it is importable,
  else ours, ``tf_implementation``, ``tf2_adapter`` / ``tf_listener``): each frame's camera pose
  ``T_world_camera`` is looked up at its image stamp (metric scale from the camera motion).
A message that cannot be read (bad encoding, step, size, truncated data, uncalibrated or
unsupported CameraInfo) is dropped with a warning (at most one per part every WARN_THROTTLE_S) and
counted in ``dropped`` (per part; ``frame`` for an instant that cannot be built, ``unpaired`` for
one whose parts never all arrived); a CameraInfo for a binned/decimated image (same aspect ratio)
is scaled to the image; a distorted camera's frames are undistorted to the same K before they are
buffered.
Services: ``~/reconstruct`` and ``~/reset`` (std_srvs/Trigger): ``/sparp_node/reconstruct``.
Publications on success (in the camera frame of the most recent keyframe, at its stamp; latched):
  ``sparp/object_pose`` (PoseStamped: ``/sparp/object_pose``), ``sparp/mesh_marker`` (Marker
  TRIANGLE_LIST), ``sparp/mesh`` (shape_msgs/Mesh, object frame), ``sparp/reconstruction``
  (sparp_ros_msgs/ObjectReconstruction), and the TF ``<camera> → <ns>/<object_id>`` on
  ``/tf_static`` (``tf_listener.StaticTransformSender``: RViz or a planner started later still
  finds the object's frame; every object frame this node has published stays there).
Always (every ``diagnostics_period_s``, in every lifecycle state): ``/diagnostics``
  (diagnostic_msgs/DiagnosticArray; levels and keys in ``health``).

Two variants, one core (``SparpNodeCore``), whose lifetime steps are those of a managed node:
``_configure`` loads the model and makes the keyframe buffer and the output publishers,
``_activate`` subscribes and offers the services, ``_deactivate`` stops taking frames,
``_cleanup`` frees the model. ``SparpNode`` (the default) runs configure and activate in its
constructor; ``lifecycle_node.SparpLifecycleNode`` (``sparp-ros node --lifecycle``) runs them on
``~/change_state``. Parameters change at run time where that is safe (``node_params``).

Threading (STYLE 7): subscription callbacks only convert messages and push complete, sharp, new
frames into a bounded keyframe buffer. ``~/reconstruct`` runs the pipeline in its own reentrant
callback group under a MultiThreadedExecutor, so images keep flowing while it works and a second
request is answered "busy" instead of queueing. Errors in the input or the pipeline become a
``success=false`` response with the reason; the node stays up. On Ctrl-C / SIGTERM (``main``) or
deactivation during a reconstruction, new requests are answered "shutting down" and the running
one finishes and answers its caller (up to SHUTDOWN_GRACE_S) before the node goes. With
``isolate_mesh`` the Poisson surface (native OpenMP code) runs in a child process
(``geometry.surface_worker``), started at configuration: a native crash there loses the mesh, not
the node (the pose is still published).
"""
from __future__ import annotations

import contextlib
import gc
import sys
import threading
import time
from collections import Counter
from functools import partial
from typing import Any

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.parameter import Parameter
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_policy_name_from_kind, qos_profile_sensor_data)
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from shape_msgs.msg import Mesh
from std_srvs.srv import Trigger
from visualization_msgs.msg import Marker

from . import messages
from ..camera import CameraError
from ..capture import CaptureError, Frame
from ..health import HealthMonitor, HealthSnapshot, InputTiming
from ..memory import release_freed_memory
from ..keyframes import FrameAssembler, KeyframeBuffer, KeyframeConfig
from .params import (CONSTRAINTS, DEFAULTS, NODE_NAME, PARAMETERS, RANGES,  # noqa: F401
                          check_value, coerce, indexed_object_frame, object_frame, refusal,
                          segmentation_method)

ORACLE_PREFIX = "oracle"
"""Backends named oracle* take the ground-truth NOCS of each frame (the ``oracle_nocs`` topic)."""
WARN_THROTTLE_S = 5.0
EXECUTOR_THREADS = 4
"""Subscriptions, the reconstruction, and a busy/reset answer can all run at once."""
KEYFRAME_PARAMETERS = ("max_keyframes", "min_image_change", "min_sharpness")
MAX_PENDING_INSTANTS = 24
"""Capture instants held while one of their parts is still on its way. A reliable input that
waits for a repair holds back its later messages (1-2 s measured on a loaded 2-core machine); at
5-10 instants a second the others' parts pile up meanwhile, and an assembler that dropped them at
8 also dropped the instants the late messages were about to complete. Bounded: ~2.4 MB each at
640x480 RGB-D."""

SHUTDOWN_GRACE_S = 20.0
"""How long shutting down waits for a running reconstruction to answer its caller."""
SPIN_PERIOD_S = 0.1
"""The spinning thread checks this often whether to stop."""
POSE_TOPIC, MARKER_TOPIC, MESH_TOPIC, RECONSTRUCTION_TOPIC = (
    "sparp/object_pose", "sparp/mesh_marker", "sparp/mesh", "sparp/reconstruction")
"""Relative: ``/sparp/object_pose`` in the root namespace, ``/arm1/sparp/object_pose`` in /arm1."""

RESULT_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL, history=HistoryPolicy.KEEP_LAST)
"""Latched, so RViz or a planner that starts later still gets the last result."""
RELIABLE_INPUT_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
"""Inputs when ``reliable_inputs`` (the default): best-effort images (640x480 RGB-D) between two
processes here lost most of the played views (README); reliable ones are repaired."""
DIAGNOSTICS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
"""diagnostic_updater's QoS on /diagnostics."""


class SparpNodeCore:
    """Everything the node does, shared by ``SparpNode`` and ``SparpLifecycleNode`` (a mixin
    over ``rclpy.node.Node``; see the module docstring). ``node_state`` is 'unconfigured',
    'inactive' or 'active'."""

    managed = False
    """True for the lifecycle node: it may change input and model parameters between states."""

    # -- lifetime steps --------------------------------------------------------------------------
    def _init_core(self) -> None:
        """Parameters (checked), state, diagnostics and the parameter callbacks: what exists in
        every lifecycle state."""
        self._coerce_overrides()
        for name, default in DEFAULTS.items():
            self.declare_parameter(name, default, _descriptor(name))
        self.params = {name: self.get_parameter(name).value for name in DEFAULTS}
        for name, value in self.params.items():
            if (bad := check_value(name, value)) is not None:
                raise ValueError(f"parameter {bad}")
        self.node_state = "unconfigured"
        self.pipeline = None
        self.buffer: KeyframeBuffer | None = None
        self.assembler: FrameAssembler | None = None
        self.load_error = ""
        self.last_reconstruction = None
        self._busy = threading.Lock()
        self._answers = threading.Condition()   # _owed: requests taken, not yet answered
        self._owed = 0
        self._camera_info_seen = False
        self._images_seen = 0
        # Messages (per part) and frames ("frame", "unpaired") dropped as unusable; the last reason.
        self.dropped: Counter[str] = Counter()
        self._last_drop = ""
        self._warned_at: dict[str, float] = {}
        self._undistorting: set[str] = set()
        self._last_image_at: float | None = None
        self._active_since = time.monotonic()
        self._last_latency_s: float | None = None
        self._last_result = ""
        self.input_timing = InputTiming()    # image latency and callback time, on /diagnostics
        self._subscriptions_by_part: dict[str, Any] = {}
        self.tf_buffer = None               # with world_frame: camera poses from /tf (activation)
        self.tf_failures = 0                # frames kept without a camera pose (failed lookups)
        self._sparp_services: list[Any] = []
        self._outputs: list[Any] = []
        self.pose_pub = self.marker_pub = self.mesh_pub = self.recon_pub = self.tf = None
        self.objects = None                 # ObjectOutputs: every object of a trigger, their ids
        from .prompts import PromptInbox
        self.prompts = PromptInbox()        # points and boxes for segmentation: prompt

        self._health = HealthMonitor(float(self.params["diagnostics_frame_timeout_s"]))
        self._diagnostics_name = f"{self.get_fully_qualified_name()}: object reconstruction"
        # Held while a status is published, and by destroy_node: an executor thread may be in
        # the timer's callback when the node is destroyed (rclpy does not wait for it), and a
        # callback that then touches the node's handles raises InvalidHandle into the executor.
        self._diagnostics_lock = threading.Lock()
        self._destroyed = False
        self._diagnostics_group = MutuallyExclusiveCallbackGroup()
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", DIAGNOSTICS_QOS)
        self._diagnostics_timer = self._create_diagnostics_timer()
        self.add_pre_set_parameters_callback(self._coerce_parameters)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self._stopping = False      # shutting down: new reconstructions are refused

    def _configure(self) -> None:
        """Load the model (STYLE 8), make the keyframe buffer and the output publishers.
        Raises ``PipelineError`` with the reason when the model cannot be loaded (missing,
        corrupt or pickle-based weights, unknown backend or device); ``load_error`` keeps it."""
        from ..pipeline import PipelineError, SparpPipeline

        p = self.params
        self._check_tf_implementation()
        try:
            self.pipeline = SparpPipeline(self._pipeline_config())
        except Exception as exc:  # noqa: BLE001 - torch/CUDA errors too: the reason is the answer
            self.load_error = str(exc) if isinstance(exc, PipelineError) else f"{type(exc).__name__}: {exc}"
            self.pipeline = None
            raise PipelineError(self.load_error) from exc
        self.load_error = ""
        self.get_logger().info(f"pipeline ready: backend={p['backend']} device={p['device']} "
                               f"cell_size={self.pipeline.cell_size}")
        if p["backend"].startswith(ORACLE_PREFIX):
            self.get_logger().warning(f"backend '{p['backend']}' reads ground-truth NOCS from "
                                      "'oracle_nocs' (a test instrument); it cannot run on a "
                                      "real camera")
        if p["mesh"] and p["isolate_mesh"]:
            self._warm_up_surface_worker()
        self.buffer = KeyframeBuffer(self._keyframe_config())
        self._create_outputs()
        self.node_state = "inactive"

    def _activate(self) -> None:
        """Pair the inputs by stamp, subscribe, offer the services: frames are taken from now on."""
        p = self.params
        parts = ["image", "camera_info"]
        parts += ["depth"] if p["use_depth"] else []
        parts += ["mask"] if p["use_mask"] else []
        parts += ["oracle_nocs"] if p["backend"].startswith(ORACLE_PREFIX) else []
        self.assembler = FrameAssembler(tuple(parts), slop_s=float(p["sync_slop_s"]),
                                        timeout_s=float(p["sync_timeout_s"]),
                                        max_pending=MAX_PENDING_INSTANTS)
        self._create_inputs(parts)
        # Services: reconstruct in its own reentrant group (busy answers while it runs),
        # reset in another so it is never stuck behind a reconstruction.
        self._sparp_services = [
            self._create_service("~/reconstruct", self._on_reconstruct, ReentrantCallbackGroup()),
            self._create_service("~/reset", self._on_reset, MutuallyExclusiveCallbackGroup())]
        self._active_since, self._last_image_at = time.monotonic(), None
        self.node_state = "active"
        topics = ", ".join(s.topic_name for s in self._subscriptions_by_part.values())
        self.get_logger().info(f"waiting for {', '.join(parts)} on {topics}")

    def _deactivate(self) -> None:
        """Stop taking frames and requests; a running reconstruction finishes, publishes and
        answers its caller first (new requests meanwhile are answered "shutting down"). The
        keyframes are kept."""
        for entity in self._subscriptions_by_part.values():
            self.destroy_subscription(entity)
        self._subscriptions_by_part = {}
        self.finish_reconstruction(SHUTDOWN_GRACE_S)
        for entity in self._sparp_services:
            self.destroy_service(entity)
        self._sparp_services = []
        self._stopping = False
        if self.assembler is not None:
            self.assembler.clear()
        self.node_state = "inactive"

    def finish_reconstruction(self, timeout_s: float) -> bool:
        """Refuse new reconstructions from now on and wait up to ``timeout_s`` until every request
        taken has been answered (a running reconstruction finishes first). False when one was
        still unanswered at the timeout."""
        self._stopping = True
        with self._answers:
            if self._busy.locked():
                self.get_logger().info(f"waiting up to {timeout_s:.0f} s for the running "
                                       "reconstruction to answer its caller")
            if self._answers.wait_for(lambda: self._owed == 0, timeout=timeout_s):
                return True
        self.get_logger().warning("the running reconstruction did not finish in time: its caller "
                                  "gets no answer")
        return False

    def _create_service(self, name: str, callback, group):
        """A std_srvs/Trigger service whose answers are counted: ``_owed`` is the number of
        requests taken and not yet answered (rclpy sends the response after the callback has
        returned), so stopping can wait until the answer is out before the service goes. A
        response that finds its service already destroyed is dropped instead of raising in the
        executor (which would stop it)."""
        from rclpy.exceptions import InvalidHandle

        def counted(request, response):
            with self._answers:
                self._owed += 1
            try:
                return callback(request, response)
            except BaseException:
                self._answered()
                raise

        service = self.create_service(Trigger, name, counted, callback_group=group)
        send = service.send_response

        def send_response(response, header) -> None:
            try:
                send(response, header)
            except InvalidHandle:
                pass
            finally:
                self._answered()

        service.send_response = send_response       # the executor calls it after the callback
        return service

    def _answered(self) -> None:
        with self._answers:
            self._owed -= 1
            self._answers.notify_all()

    def _cleanup(self) -> None:
        """Destroy the output publishers, drop the keyframes and free the model (and its GPU
        memory)."""
        for pub in self._outputs:
            self._destroy_output_publisher(pub)
        self._outputs = []
        self.pose_pub = self.marker_pub = self.mesh_pub = self.recon_pub = self.tf = None
        if self.buffer is not None:
            self.buffer.clear()
        self.buffer = self.assembler = None
        if self.pipeline is not None:
            self.pipeline.close()           # the mesh child process, if one was started
        self.pipeline = None
        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.node_state = "unconfigured"

    def destroy_node(self) -> None:
        """Stop the mesh child process, then destroy the node (ROS entities), after a status
        being published is out (see ``_diagnostics_lock``)."""
        if getattr(self, "pipeline", None) is not None:      # None if _init_core failed
            self.pipeline.close()
        lock = getattr(self, "_diagnostics_lock", None)
        with lock if lock is not None else contextlib.nullcontext():
            self._destroyed = True
            super().destroy_node()

    # -- set-up helpers ------------------------------------------------------------------------
    def _warm_up_surface_worker(self) -> None:
        """Start the mesh child process and its open3d import now, without waiting for it (it
        imports in the background), so the first reconstruction does not pay for it. A failure
        here is only logged: the next mesh tries again and reports its own error."""
        try:
            self.pipeline.surface_worker().warm_up(wait=False)
        except Exception as exc:  # noqa: BLE001 - the mesh is optional; the pose must still work
            self.get_logger().warning(f"cannot start the mesh process: {type(exc).__name__}: {exc}")

    def _pipeline_config(self):
        """The pipeline's configuration from the current parameters (at configuration, and again
        before each reconstruction so live parameters apply)."""
        from ..pipeline import PipelineConfig

        p = self.params
        return PipelineConfig(
            backend=p["backend"], device=p["device"], weights=p["weights"] or None,
            model_domain=p["model_domain"], num_hypotheses=int(p["num_hypotheses"]),
            cell_size=int(p["cell_size"]), size_prior_m=float(p["size_prior_m"]), mesh=bool(p["mesh"]),
            refine=bool(p["refine"]), align_with_camera_motion=bool(p["align_with_camera_motion"]),
            correct_hand_eye=bool(p["correct_hand_eye"]),
            registration_min_table_agreement=float(p["min_table_agreement"]),
            registration_light_turns=bool(p["light_turns"]),
            registration_min_print_matches=int(p["min_print_matches"]),
            align_with_depth=bool(p["align_with_depth"]),
            assume_upright=bool(p["assume_upright"]), view_angles=bool(p["view_angles"]),
            depth_networks=bool(p["depth_networks"]),
            pair_azimuth_weight=float(p["pair_azimuth_weight"]),
            pair_azimuth_weight_depth=float(p["pair_azimuth_weight_depth"]),
            isolate_mesh=bool(p["isolate_mesh"]), model_threads=int(p["model_threads"]),
            geometry_threads=int(p["geometry_threads"]))

    def _keyframe_config(self) -> KeyframeConfig:
        p = self.params
        return KeyframeConfig(max_keyframes=int(p["max_keyframes"]),
                              min_image_change=float(p["min_image_change"]),
                              min_sharpness=float(p["min_sharpness"]))

    def _create_inputs(self, parts: list[str]) -> None:
        """One subscription per part, in one mutually exclusive group (conversions never
        interleave)."""
        p = self.params
        inputs = MutuallyExclusiveCallbackGroup()
        input_qos = RELIABLE_INPUT_QOS if p["reliable_inputs"] else qos_profile_sensor_data
        side = int(p["max_image_side"])
        converters = {"image": (Image, "image", partial(messages.image_to_rgb, max_side=side)),
                      "camera_info": (CameraInfo, "camera_info", messages.camera_info_to_camera),
                      "depth": (Image, "depth", partial(messages.image_to_depth, max_side=side)),
                      "mask": (Image, "mask", partial(messages.image_to_mask, max_side=side)),
                      "oracle_nocs": (Image, "oracle_nocs", lambda m: messages.image_to_nocs(m)[0])}
        if p["compressed_input"]:
            # image_transport: the compressed transport of base topic T is T/compressed, after
            # T is remapped (a remap of `image` must move the compressed topic too).
            converters["image"] = (CompressedImage, self.resolve_topic_name("image") + "/compressed",
                                   partial(messages.compressed_image_to_rgb, max_side=side))
        for part in parts:
            msg_type, topic, convert = converters[part]
            resolved = self.resolve_topic_name(topic)
            events = SubscriptionEventCallbacks(
                incompatible_qos=partial(self._on_incompatible_input, resolved))
            self._subscriptions_by_part[part] = self.create_subscription(
                msg_type, topic, self._make_callback(part, convert), input_qos,
                callback_group=inputs, event_callbacks=events)
        for sub in self.prompts.subscribe(self, RELIABLE_INPUT_QOS, inputs):
            self._subscriptions_by_part[f"prompt:{sub.topic_name}"] = sub
        if p["world_frame"]:
            self._create_tf_listener()

    def _on_incompatible_input(self, topic: str, info) -> None:
        """A publisher on an input that this subscription cannot hear: say which parameter fixes
        the usual case (a best-effort camera driver and reliable_inputs)."""
        policy = qos_policy_name_from_kind(info.last_policy_kind)
        hint = (": it publishes best-effort, set reliable_inputs:=false" if policy == "RELIABILITY"
                and self.params["reliable_inputs"] else "")
        self.get_logger().warning(f"a publisher on {topic} offers QoS this node cannot take "
                                  f"({policy}); no messages from it{hint}")

    def _check_tf_implementation(self) -> None:
        """Configuring fails (``TfImplementationError``, a ValueError, before the model is loaded)
        when ``tf_implementation`` is ``tf2_ros`` and tf2_ros is not importable."""
        from .tf2_adapter import choose_tf_implementation, tf2_ros_import_error

        choose_tf_implementation(self.params["tf_implementation"], tf2_ros_import_error())

    def _create_tf_listener(self) -> None:
        """With ``world_frame``: /tf and /tf_static (tf2's QoS, remappable) into a fresh buffer,
        chosen by ``tf_implementation`` (``tf2_adapter``; one log line says which and why):
        tf2_ros's ``Buffer`` and ``TransformListener`` behind ``Tf2Buffer``, or this package's
        ``TransformBuffer`` and ``tf_listener.TransformListener``. Both answer 4x4 matrices and
        raise ``tf_buffer.TransformError``. The two subscriptions are inputs like the others
        (made on activation, destroyed on deactivation)."""
        from .tf2_adapter import (TfImplementationError, choose_tf_implementation,
                                  create_tf2_buffer, tf2_ros_import_error)

        self.tf_buffer = None
        try:
            implementation, why = choose_tf_implementation(self.params["tf_implementation"],
                                                           tf2_ros_import_error())
        except TfImplementationError as exc:       # set to tf2_ros while the node was inactive
            self.get_logger().error(f"{exc}: no camera poses from TF")
            return
        try:
            if implementation == "tf2_ros":
                buffer = create_tf2_buffer(self)
                listener, name = buffer.listener, "tf2_ros Buffer + TransformListener"
            else:
                from ..tf_buffer import TransformBuffer
                from .tf_listener import TransformListener

                buffer = TransformBuffer()
                listener = TransformListener(self, buffer)
                name = "builtin TransformBuffer + TransformListener (sparp_ros)"
        except ImportError:
            self.get_logger().warning("world_frame is set but tf2_msgs is not importable (run "
                                      "scripts/build_interfaces.sh): no camera poses from TF")
            return
        self.tf_buffer = buffer
        self._subscriptions_by_part.update(tf=listener.tf_sub, tf_static=listener.tf_static_sub)
        self.get_logger().info(f"TF implementation: {name}, because {why}")

    def _create_outputs(self) -> None:
        self.pose_pub = self._create_output_publisher(PoseStamped, POSE_TOPIC, RESULT_QOS)
        self.marker_pub = self._create_output_publisher(Marker, MARKER_TOPIC, RESULT_QOS)
        self.mesh_pub = self._create_output_publisher(Mesh, MESH_TOPIC, RESULT_QOS)
        self.recon_pub = self._create_reconstruction_publisher()
        self.tf = self._create_tf_sender()
        self.objects = self._create_object_outputs()

    def _create_object_outputs(self):
        """Every object of a multi-object trigger (``object_outputs``); the tracks (ids) of an
        earlier configuration carry over."""
        from .object_outputs import ObjectOutputs

        previous = getattr(self, "objects", None)
        outputs = ObjectOutputs(
            self._create_output_publisher, RESULT_QOS, self.tf,
            lambda i: indexed_object_frame(self.get_namespace(), self.object_id, i),
            self._output_frame, self.get_logger())
        if previous is not None:
            outputs.tracker = previous.tracker
        return outputs

    def _create_output_publisher(self, msg_type, topic: str, qos: QoSProfile):
        """A result publisher (the lifecycle node makes lifecycle publishers)."""
        pub = self.create_publisher(msg_type, topic, qos)
        self._outputs.append(pub)
        return pub

    def _destroy_output_publisher(self, pub) -> None:
        self.destroy_publisher(pub)

    def _create_reconstruction_publisher(self):
        try:
            from sparp_ros_msgs.msg import ObjectReconstruction
        except ImportError:
            self.get_logger().warning("sparp_ros_msgs is not built (run scripts/build_interfaces.sh): "
                                      f"{self.resolve_topic_name(RECONSTRUCTION_TOPIC)} is not "
                                      "published")
            return None
        return self._create_output_publisher(ObjectReconstruction, RECONSTRUCTION_TOPIC, RESULT_QOS)

    def _create_tf_sender(self):
        """The object's frame on /tf_static (latched: a listener started after the reconstruction
        still finds it). Its parent is the published keyframe's camera (or world_frame): the
        object rests, and with publish_in_world_frame the frame stays right while the camera
        moves on. tf2_msgs is the real package on a ROS install, else ours."""
        from .tf_listener import StaticTransformSender

        try:
            return StaticTransformSender(self._create_output_publisher)
        except ImportError:
            self.get_logger().warning("tf2_msgs is not importable: no TF published (run "
                                      "scripts/build_interfaces.sh)")
            return None

    @property
    def object_id(self) -> str:
        return self.params["object_id"]

    @property
    def object_frame(self) -> str:
        """The object's TF frame: ``object_id`` under the node's namespace (``arm1/mug``)."""
        return object_frame(self.get_namespace(), self.object_id)

    # -- subscriptions: convert and push ---------------------------------------------------------
    def _make_callback(self, part: str, convert):
        def callback(msg) -> None:
            t0 = time.perf_counter()
            if part == "image":
                self.input_timing.add("image_latency", self.get_clock().now().nanoseconds * 1e-9
                                      - messages.stamp_to_seconds(msg.header.stamp))
            try:
                self._on_part(part, msg, convert)
            except Exception as exc:  # noqa: BLE001 - an exception here would stop the executor
                self.get_logger().error(f"{part} callback failed: {type(exc).__name__}: {exc}",
                                        throttle_duration_sec=WARN_THROTTLE_S)
            finally:
                self.input_timing.add("callback", time.perf_counter() - t0)
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
            self._last_image_at = time.monotonic()
        try:
            value = convert(msg)
        except (messages.ImageConversionError, CameraError) as exc:
            self._drop(part, str(exc))
            return
        if part == "camera_info":
            self._camera_info_seen = True
        assembler = self.assembler
        if assembler is None:               # cleaned up while this message was converted
            return
        stamp = messages.stamp_to_seconds(msg.header.stamp)
        result = assembler.add(part, stamp, (value, msg.header))
        for s, missing in result.dropped:
            self._drop("unpaired", f"t={s:.3f}: no {', '.join(missing)} with a matching stamp "
                                   f"(sync_slop_s={assembler.slop_s})")
        for parts in result.complete:
            self._push_frame(parts)

    def _build_frame(self, parts: dict[str, Any]) -> Frame:
        """One capture instant's converted parts -> the ``Frame`` offered to the keyframe buffer:
        intrinsics fitted to the (binned) image, then undistorted. Every field of a keyframe is
        filled here, the camera pose ``T_world_camera`` from TF too (``_camera_pose``). Raises
        ``CaptureError`` / ``CameraError`` for an instant that cannot make a frame."""
        image, header = parts["image"]
        camera, _ = parts["camera_info"]
        frame = Frame.from_sensor(
            image, camera,
            depth=parts["depth"][0] if "depth" in parts else None,
            mask=parts["mask"][0] if "mask" in parts else None,
            nocs=parts["oracle_nocs"][0] if "oracle_nocs" in parts else None,
            stamp=parts["stamp"],
            T_world_camera=self._camera_pose(header.frame_id or camera.frame_id, header.stamp))
        if camera.has_distortion and camera.frame_id not in self._undistorting:
            self._undistorting.add(camera.frame_id)
            self.get_logger().info(f"camera {camera.frame_id} has {camera.distortion_model or 'OpenCV'} "
                                   "distortion: its frames are undistorted to the same K")
        return frame

    def _camera_pose(self, frame_id: str, stamp) -> Any:
        """``T_<world_frame>_<frame_id>`` (4x4) at the image ``stamp`` from TF, waiting up to
        ``tf_timeout_s`` for it to arrive; None without ``world_frame`` or when the lookup fails
        (a warning at most every WARN_THROTTLE_S; the pipeline then uses depth or the prior)."""
        from ..tf_buffer import TransformError

        world, tf_buffer = self.params["world_frame"], self.tf_buffer
        if not world or tf_buffer is None:
            return None
        t = messages.stamp_to_seconds(stamp)
        try:
            return tf_buffer.wait_for(world, frame_id, t, float(self.params["tf_timeout_s"]))
        except TransformError as exc:
            self.tf_failures += 1
            now = time.monotonic()
            if now - self._warned_at.get("tf", -WARN_THROTTLE_S) >= WARN_THROTTLE_S:
                self._warned_at["tf"] = now
                self.get_logger().warning(
                    f"no camera pose {world} <- {frame_id} at t={t:.3f} from TF ({self.tf_failures}"
                    f" so far; the frame is kept without one): {exc}")
            return None

    def _push_frame(self, parts: dict[str, Any]) -> None:
        try:
            frame = self._build_frame(parts)
        except (CaptureError, CameraError) as exc:
            self._drop("frame", f"t={parts['stamp']:.3f}: {exc}")
            return
        buffer = self.buffer
        if buffer is None:                  # cleaned up while this instant was being assembled
            return
        decision = buffer.offer(frame, meta=parts["image"][1].stamp)
        if decision.accepted:
            self.get_logger().info(f"keyframe {len(buffer)}/{buffer.config.max_keyframes} "
                                   f"at t={parts['stamp']:.3f} (sharpness {decision.sharpness:.2e}"
                                   + (", dropped the oldest" if decision.dropped_oldest else "") + ")")
        else:
            self.get_logger().debug(f"frame at t={parts['stamp']:.3f} not kept: {decision.reason}")

    # -- services --------------------------------------------------------------------------------
    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        n = len(self.buffer)
        self.buffer.clear()
        self.assembler.clear()
        forgotten = self.objects.reset() if self.objects is not None else 0
        prompts = self.prompts.clear()
        response.success = True
        response.message = (f"cleared {n} keyframes"
                            + (f", {prompts} prompts" if prompts else "")
                            + (f" and {forgotten} object ids" if forgotten else ""))
        self.get_logger().info(f"reset: {response.message}")
        return response

    def _on_reconstruct(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        busy = not self._busy.acquire(blocking=False)
        if busy or self._stopping:  # checked under the lock: finish_reconstruction waits on it
            if not busy:
                self._busy.release()
            response.success = False
            response.message = ("shutting down: no new reconstruction" if self._stopping
                                else "busy: a reconstruction is running")
            return response
        try:
            response.success, response.message = self._reconstruct()
            self._last_result = ("ok: " if response.success else "failed: ") + response.message
        finally:
            release_freed_memory()      # glibc arenas keep freed memory: RSS crept ~1 GiB/h
            self._busy.release()
        # rclpy ties a severity to each logging call site, so one call per severity.
        if response.success:
            self.get_logger().info(f"reconstruct: {response.message}")
        else:
            self.get_logger().warning(f"reconstruct: {response.message}")
        return response

    def _reconstruct(self) -> tuple[bool, str]:
        """Run the pipeline on the current keyframes and publish; (success, message). With the
        mask topic, one object; with segmentation by depth or learned, every object found (up to
        ``max_objects``), the most central on the single-object outputs."""
        items = self.buffer.items() if self.buffer is not None else []
        if not items:
            dropped = (f"; {sum(self.dropped.values())} dropped as unusable, last {self._last_drop}"
                       if self.dropped else "")
            if not self._camera_info_seen:
                topic = self.resolve_topic_name("camera_info")
                what = "no usable CameraInfo" if self.dropped["camera_info"] else "no CameraInfo"
                return False, (f"{what} received on {topic}: no keyframes can be built "
                               f"({self._images_seen} images received{dropped})")
            return False, ("no keyframes yet: waiting for " + ", ".join(self.assembler.parts)
                           + f" with matching stamps ({self._images_seen} images received"
                           + f"{dropped})")
        method = segmentation_method(self.params, prompts=len(self.prompts))
        self.pipeline.config = self._pipeline_config()      # live parameters (size prior, mesh)
        if method == "mask_topic":
            if self.params["segmentation"] == "mask_topic" and not self.params["use_mask"]:
                return False, ("segmentation: mask_topic needs use_mask: true (masks are not "
                               "subscribed); or set segmentation to depth or learned")
            return self._reconstruct_one(items)
        return self._reconstruct_every(items, method)

    def _run_pipeline(self, frames: list[Frame]):
        """The pipeline on ``frames``: (Reconstruction, None) or (None, the reason)."""
        from ..pipeline import PipelineError

        t0 = time.perf_counter()
        try:
            recon = self.pipeline(frames)
        except PipelineError as exc:
            return None, f"pipeline: {exc}"
        except Exception as exc:  # noqa: BLE001 - the node must survive any pipeline failure
            self.get_logger().error(f"pipeline failed: {type(exc).__name__}: {exc}")
            return None, f"pipeline failed: {type(exc).__name__}: {exc}"
        finally:
            self._last_latency_s = time.perf_counter() - t0
        self.get_logger().info("pipeline stages (s): "
                               + " ".join(f"{k}={v:.2f}" for k, v in recon.timings.items()))
        return recon, None

    def _reconstruct_one(self, items) -> tuple[bool, str]:
        """The masked object of every keyframe (mask topic)."""
        frames = [f for f, _ in items]
        self.get_logger().info(f"reconstructing from {len(frames)} keyframes")
        recon, error = self._run_pipeline(frames)
        if recon is None:
            return False, error
        return self._publish_one(recon, items, self._last_latency_s)

    def _publish_one(self, recon, items, elapsed: float) -> tuple[bool, str]:
        self.last_reconstruction = recon
        if mesh_message := recon.extra.get("mesh_message"):
            self.get_logger().warning(f"no mesh: {mesh_message}")
        try:
            view = self._publish(recon, items)
        except ValueError as exc:
            return False, f"cannot publish: {exc}"
        summary = self._summary(recon, items, view, elapsed)
        return True, summary + (f"; no mesh: {mesh_message}" if mesh_message else "")

    def _reconstruct_every(self, items, method: str) -> tuple[bool, str]:
        """Segment every object (``method``: depth or learned), reconstruct each, publish the most
        central on the single-object outputs and all of them with their ids."""
        from ..objects import order_objects, reconstruct_objects
        from ..segment_select import segment_objects
        from ..segmentation import SegmentationError

        frames = [f for f, _ in items]
        t0 = time.perf_counter()
        try:
            if method == "prompt":
                chosen, skipped = self._prompted_objects(frames)
                found = chosen
            else:
                found = segment_objects(
                    frames, method, colour_refinement=bool(self.params["learned_colour_refinement"]))
                chosen, skipped = order_objects(found, int(self.params["max_objects"]))
        except SegmentationError as exc:
            return False, f"segmentation ({method}): {exc}"
        for line in skipped:
            self.get_logger().info(f"not reconstructed: {line}")
        if not chosen:
            return False, (f"segmentation ({method}): no object found in {len(frames)} keyframes"
                           + (f" ({'; '.join(skipped)})" if skipped else ""))
        self.get_logger().info(f"segmentation ({method}): {len(found)} object(s) in "
                               f"{time.perf_counter() - t0:.2f} s; reconstructing {len(chosen)} "
                               f"from {len(frames)} keyframes")
        results = reconstruct_objects(self.pipeline, frames, chosen, errors=(Exception,),
                                      log=self.get_logger().info)
        ok = [r for r in results if r.ok]
        if not ok:
            return False, "; ".join(f"object {r.masks.id}: {r.error}" for r in results)
        elapsed = self._last_latency_s = time.perf_counter() - t0
        primary = ok[0]
        success, message = self._publish_one(primary.reconstruction,
                                              [items[i] for i in primary.views], elapsed)
        if not success:
            return success, message
        try:
            update = self.objects.track(ok, frames)
            published = self.objects.publish(update, items)
        except ValueError as exc:
            return False, f"cannot publish the objects: {exc}"
        failed = [f"object {r.masks.id}: {r.error}" for r in results if not r.ok]
        self.get_logger().info(f"published {len(published)} object frames: {', '.join(published)}")
        return True, (f"{len(published)} object(s) [{', '.join(published)}]; " + message
                      + (f"; not reconstructed: {'; '.join(failed)}" if failed else ""))

    def _prompted_objects(self, frames: list[Frame]):
        """One object per prompt received (points, then boxes), at most ``max_objects``; raises
        SegmentationError when there is none or one hits nothing."""
        from ..segment_prompt import segment_prompts
        from ..segmentation import SegmentationError

        def lookup(target: str, source: str):
            if self.tf_buffer is None:
                return None
            try:
                return self.tf_buffer.lookup(target, source)
            except Exception:  # noqa: BLE001 - TransformError of any kind: the point is refused
                return None

        prompts, refused = self.prompts.prompts(frames, self.params["world_frame"], lookup)
        for line in refused:
            self.get_logger().warning(f"prompt not used: {line}")
        if not prompts:
            raise SegmentationError(
                f"no usable prompt: publish a geometry_msgs/PointStamped on "
                f"{self.resolve_topic_name('prompt_point')} (RViz Publish Point) or a "
                f"sensor_msgs/RegionOfInterest on {self.resolve_topic_name('prompt_box')}"
                + (f" ({'; '.join(refused)})" if refused else ""))
        limit = int(self.params["max_objects"])
        objects = segment_prompts(frames, prompts[:limit])
        skipped = [f"prompt {k}: beyond max_objects={limit}" for k in range(limit, len(prompts))]
        return objects, skipped

    # -- outputs ---------------------------------------------------------------------------------
    def _publish(self, recon, items: list[tuple[Frame, Any]]) -> int:
        """Publish every output for the published keyframe (``Reconstruction.published_view``: the
        most recent one whose pose a measurement confirmed); returns its index."""
        view = messages.published_view(recon)
        frame, stamp = items[view]
        frame_id, T_fixed_camera = self._output_frame(frame)
        T = recon.views[view].T_camera_object
        if T_fixed_camera is not None:
            T = T_fixed_camera @ T
        self.pose_pub.publish(messages.reconstruction_to_pose_stamped(recon, frame_id, stamp, view,
                                                                    T_fixed_camera))
        if self.tf is not None:
            self.tf.send(messages.reconstruction_to_transform_stamped(
                recon, frame_id, stamp, self.object_frame, view, T_fixed_camera))
        if recon.mesh is not None:
            written = self._write_mesh(recon) if self.params["mesh_output_dir"] else None
            if written is not None and self.params["mesh_marker"] == "mesh_resource":
                marker = messages.mesh_resource_marker(written.resolve().as_uri(), T, frame_id, stamp)
            else:
                marker = messages.mesh_to_marker(recon.mesh, T, frame_id, stamp)
            self.marker_pub.publish(marker)
            self.mesh_pub.publish(messages.mesh_to_shape_msg(recon.mesh))
        if self.recon_pub is not None:
            self.recon_pub.publish(messages.reconstruction_to_msg(
                recon, frame_id, stamp, self.object_frame, view=view,
                view_frame_ids=[f.camera.frame_id for f, _ in items],
                view_stamps=[s for _, s in items]))
        latest = recon.latest_posed_view
        skipped = ("" if view == latest else
                   f" (in keyframe {view}'s frame: the pose of the latest keyframe, {latest}, is "
                   f"the model's, confirmed by no measurement)")
        self.get_logger().info(f"published pose, TF {frame_id} -> {self.object_frame}, marker, "
                               f"mesh, reconstruction{skipped}")
        return view

    def _output_frame(self, frame: Frame) -> tuple[str, Any]:
        """Where the pose, TF and marker are published: the published view's camera frame, or
        with ``publish_in_world_frame`` the fixed ``world_frame`` (REP-105 ``map``/``odom``/
        ``base_link`` style) through that keyframe's camera pose from TF. Without that pose the
        camera frame is used, with a warning."""
        if not self.params["publish_in_world_frame"]:
            return frame.camera.frame_id, None
        if frame.T_world_camera is None:
            self.get_logger().warning(
                f"publish_in_world_frame: the published keyframe has no camera pose from TF "
                f"(world_frame={self.params['world_frame']!r}); publishing in "
                f"{frame.camera.frame_id!r}")
            return frame.camera.frame_id, None
        return self.params["world_frame"], frame.T_world_camera

    def _write_mesh(self, recon):
        """Write ``<object_id>.glb`` to mesh_output_dir; its path, or None when it cannot."""
        from pathlib import Path

        path = Path(self.params["mesh_output_dir"]).expanduser() / f"{self.object_id}.glb"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            recon.mesh.export(path)
        except OSError as exc:
            self.get_logger().warning(f"cannot write the mesh to {path.parent}: {exc}")
            return None
        self.get_logger().info(f"wrote {path}")
        return path

    def _summary(self, recon, items, view: int, elapsed: float) -> str:
        T = recon.views[view].T_camera_object
        q = messages.matrix_to_quaternion(T[:3, :3])
        ok = sum(v.ok for v in recon.views)
        left_out = recon.extra.get("left_out") or {}
        why = (f"; keyframes {', '.join(left_out)} left out ({next(iter(left_out.values()))})"
               if left_out else "")
        return (f"pose of {self.object_frame} in {items[view][0].camera.frame_id}: "
                f"t=[{T[0, 3]:.3f}, {T[1, 3]:.3f}, {T[2, 3]:.3f}] m, "
                f"q(xyzw)=[{q[0]:.3f}, {q[1]:.3f}, {q[2]:.3f}, {q[3]:.3f}]; "
                f"scale {recon.scale:.3f} m ({recon.scale_source}); "
                f"confidence {recon.confidence:.2f}; {ok}/{len(recon.views)} views posed; "
                f"backend {recon.backend}; {elapsed:.2f} s{why}")


    # -- parameters at run time ------------------------------------------------------------------
    def _coerce_overrides(self) -> None:
        """Start-up values (``-p``, ``--params-file``) of float parameters given as integers
        (``size_prior_m: 1``) become floats, which the declaration would otherwise refuse as the
        wrong type. rclpy keeps them in ``_parameter_overrides`` and has no public setter."""
        overrides = getattr(self, "_parameter_overrides", {})
        for name, param in list(overrides.items()):
            value = coerce(name, param.value)
            if value is not param.value:
                overrides[name] = Parameter(name, value=value)

    def _coerce_parameters(self, params: list[Parameter]) -> list[Parameter]:
        """Before rclpy checks types and ranges: an integer for a float parameter becomes a float
        (``ros2 param set /sparp_node size_prior_m 1``)."""
        out = []
        for param in params:
            value = coerce(param.name, param.value)
            out.append(param if value is param.value else Parameter(param.name, value=value))
        return out

    def _on_set_parameters(self, params) -> SetParametersResult:
        """Accept or refuse a change, with the reason (``node_params.refusal``); applies nothing."""
        for param in params:
            reason = refusal(param.name, param.value, self.node_state, self.managed)
            if reason is not None:
                self.get_logger().warning(f"refused {param.name}={param.value!r}: {reason}")
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params) -> None:
        """Apply accepted changes: live ones now; input and model ones (accepted only while the
        lifecycle node is inactive / unconfigured) at its next activation / configuration."""
        names = [p.name for p in params if p.name in PARAMETERS]
        for param in params:
            if param.name in PARAMETERS:
                self.params[param.name] = param.value
        if not names:
            return
        buffer, assembler = self.buffer, self.assembler
        if buffer is not None and any(n in KEYFRAME_PARAMETERS for n in names):
            if dropped := buffer.reconfigure(self._keyframe_config()):
                self.get_logger().info(f"max_keyframes={self.params['max_keyframes']}: dropped the "
                                       f"{dropped} oldest keyframes")
        if assembler is not None:
            assembler.slop_s = float(self.params["sync_slop_s"])
            assembler.timeout_s = float(self.params["sync_timeout_s"])
        self._health.frame_timeout_s = float(self.params["diagnostics_frame_timeout_s"])
        if "diagnostics_period_s" in names:
            self.destroy_timer(self._diagnostics_timer)
            self._diagnostics_timer = self._create_diagnostics_timer()
        self.get_logger().info("parameters set: " + ", ".join(f"{n}={self.params[n]!r}" for n in names))

    # -- diagnostics -----------------------------------------------------------------------------
    def _create_diagnostics_timer(self):
        return self.create_timer(float(self.params["diagnostics_period_s"]), self._publish_diagnostics,
                                 callback_group=self._diagnostics_group)

    def health_snapshot(self) -> HealthSnapshot:
        """What ``/diagnostics`` reports (see ``health``)."""
        now = time.monotonic()
        buffer, assembler, last_image = self.buffer, self.assembler, self._last_image_at
        dropped = {part: 0 for part in (assembler.parts if assembler is not None else ())}
        dropped.update(self.dropped)
        return HealthSnapshot(
            state=self.node_state, backend=self.params["backend"], device=self.params["device"],
            model_loaded=self.pipeline is not None, load_error=self.load_error,
            busy=self._busy.locked(), keyframes=len(buffer) if buffer is not None else 0,
            max_keyframes=int(self.params["max_keyframes"]), images_received=self._images_seen,
            dropped=dropped, last_drop=self._last_drop,
            seconds_since_image=None if last_image is None else now - last_image,
            seconds_active=now - self._active_since, last_latency_s=self._last_latency_s,
            last_result=self._last_result, timing=self.input_timing.summary())

    def _publish_diagnostics(self) -> None:
        with self._diagnostics_lock:
            if self._destroyed:         # a call already under way when the node was destroyed
                return
            health = self._health.assess(self.health_snapshot())
            self._diagnostics_pub.publish(messages.health_to_diagnostics(
                health, self._diagnostics_name, hardware_id=self.params["device"],
                stamp=self.get_clock().now().to_msg()))


def _descriptor(name: str) -> ParameterDescriptor:
    """The parameter's description, with its range (numbers) or allowed values (strings), so
    ``ros2 param describe`` documents it and rclpy refuses values out of range."""
    descriptor = ParameterDescriptor(description=PARAMETERS[name][1],
                                     additional_constraints=CONSTRAINTS.get(name, ""))
    if name in RANGES:
        low, high = RANGES[name]
        if isinstance(DEFAULTS[name], float):
            descriptor.floating_point_range = [FloatingPointRange(
                from_value=float(low), to_value=float(high), step=0.0)]
        else:
            descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high),
                                                     step=1)]
    return descriptor


class SparpNode(SparpNodeCore, Node):
    """The plain node: configured and active from construction to destruction (a model that
    cannot be loaded raises ``PipelineError`` here). ``kwargs`` go to ``rclpy.node.Node``
    (context, namespace, parameter_overrides), which is how tests run several nodes in one
    process."""

    def __init__(self, **kwargs: Any):
        super().__init__(NODE_NAME, **kwargs)
        self._init_core()
        self._configure()
        self._activate()
