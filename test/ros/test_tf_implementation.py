"""Which TF implementation the node runs (``tf_implementation``: auto, tf2_ros, builtin) and the
adapter that puts tf2_ros's Buffer behind the node's TF interface (``tf2_adapter.Tf2Buffer``).

Here (the pip wheels) tf2_ros is not importable: ``auto`` runs the builtin buffer and says so on
/rosout, ``tf2_ros`` fails configuration with the reason (the plain node raises it, the lifecycle
node stays unconfigured), both over real DDS. The adapter's conversion (tf2's TransformStamped ->
4x4, seconds -> rclpy Time) is checked against TransformBuffer through a stand-in that has
tf2_ros.Buffer's ``lookup_transform`` signature. The tf2_ros path end to end (a static transform
through tf2_ros's listener into a keyframe's camera pose, a dynamic one at its exact stamp, tf2's
errors as ours) runs only where tf2_ros is importable (a ROS install)."""
from __future__ import annotations

import importlib.util
import re
import threading

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("tf2_msgs.msg")
from rclpy.duration import Duration  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.time import Time  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from sparp_ros.ros import messages  # noqa: E402
from sparp_ros.ros.params import check_value  # noqa: E402
from sparp_ros.ros.tf2_adapter import (Tf2Buffer, TfImplementationError,  # noqa: E402
                                       choose_tf_implementation, tf2_ros_import_error)
from sparp_ros.tf_buffer import (ConnectivityError, ExtrapolationError,  # noqa: E402
                                 FrameNotFoundError, TransformBuffer)

HAVE_TF2_ROS = importlib.util.find_spec("tf2_ros") is not None
TIMEOUT_S = 10.0
NODE_PARAMS = {"backend": "oracle", "use_depth": False, "use_mask": False, "mesh": False,
               "world_frame": "world"}


def _T(x: float, yaw_deg: float, pitch_deg: float = 0.0) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("zy", [yaw_deg, pitch_deg], degrees=True).as_matrix()
    T[:3, 3] = [x, 0.5, -0.25]
    return T


def _overrides(**values) -> list[Parameter]:
    return [Parameter(k, value=v) for k, v in {**NODE_PARAMS, **values}.items()]


def _namespace(request) -> str:
    return "/" + re.sub(r"\W", "_", request.node.name)


class _Rosout:
    """The /rosout lines of the node named ``name`` under ``namespace`` (a real subscription)."""

    def __init__(self, node, namespace: str, name: str = "sparp_node"):
        from rcl_interfaces.msg import Log
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

        self.logger = f"{namespace.strip('/')}.{name}"
        self.lines: list[str] = []
        self._lock = threading.Lock()
        qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.sub = node.create_subscription(Log, "/rosout", self._on_log, qos)

    def _on_log(self, msg) -> None:
        if msg.name == self.logger:
            with self._lock:
                self.lines.append(msg.msg)

    def matching(self, pattern: str) -> list[str]:
        with self._lock:
            return [line for line in self.lines if re.search(pattern, line)]


# -- choosing (no ROS communication) ---------------------------------------------------------------
def test_auto_takes_tf2_ros_when_importable_else_builtin_and_says_why():
    assert choose_tf_implementation("auto", None) == (
        "tf2_ros", "tf_implementation=auto and tf2_ros is importable")
    implementation, why = choose_tf_implementation("auto", "ModuleNotFoundError: no tf2_ros")
    assert implementation == "builtin"
    assert "not importable (ModuleNotFoundError: no tf2_ros" in why
    assert choose_tf_implementation("builtin", None)[0] == "builtin"
    assert choose_tf_implementation("builtin", "ModuleNotFoundError")[0] == "builtin"
    assert choose_tf_implementation("tf2_ros", None)[0] == "tf2_ros"


def test_tf2_ros_asked_for_where_it_is_not_importable_is_a_clear_error():
    with pytest.raises(TfImplementationError, match=r"tf_implementation=tf2_ros but tf2_ros is "
                       r"not importable \(ModuleNotFoundError: x\).*auto or builtin"):
        choose_tf_implementation("tf2_ros", "ModuleNotFoundError: x")
    assert issubclass(TfImplementationError, ValueError)      # configure's failure path
    with pytest.raises(TfImplementationError, match="must be one of"):
        choose_tf_implementation("tf3", None)


def test_the_parameter_takes_the_three_values_only():
    for value in ("auto", "tf2_ros", "builtin"):
        assert check_value("tf_implementation", value) is None
    assert check_value("tf_implementation", "tf3") == (
        "tf_implementation must be one of ('auto', 'tf2_ros', 'builtin'), got 'tf3'")


@pytest.mark.skipif(HAVE_TF2_ROS, reason="tf2_ros is importable here")
def test_this_install_has_no_tf2_ros():
    assert tf2_ros_import_error() is not None


# -- the node over real DDS ------------------------------------------------------------------------
def test_auto_runs_the_importable_implementation_and_logs_it(request, ros_context, executor,
                                                             spinning, wait_for):
    """Without tf2_ros (here) the builtin TransformBuffer; with it, tf2_ros behind Tf2Buffer."""
    import rclpy

    from sparp_ros.ros.node import SparpNode

    ns = _namespace(request)
    peer = rclpy.create_node("peer", namespace=ns, context=ros_context)
    rosout = _Rosout(peer, ns)
    with spinning(executor, peer):
        node = SparpNode(context=ros_context, namespace=ns, parameter_overrides=_overrides())
        with spinning(executor, node):
            assert node.params["tf_implementation"] == "auto"
            if HAVE_TF2_ROS:
                assert isinstance(node.tf_buffer, Tf2Buffer)
                expected = r"^TF implementation: tf2_ros Buffer \+ TransformListener, because " \
                           r"tf_implementation=auto and tf2_ros is importable$"
            else:
                assert type(node.tf_buffer) is TransformBuffer
                expected = (r"^TF implementation: builtin TransformBuffer \+ TransformListener "
                            r"\(sparp_ros\), because tf_implementation=auto and tf2_ros is not "
                            r"importable \(ModuleNotFoundError: No module named 'tf2_ros'; the "
                            r"pip-wheel install has none\)$")
            assert {"tf", "tf_static"} <= set(node._subscriptions_by_part)
            wait_for(lambda: rosout.matching(expected), TIMEOUT_S, "the TF implementation line")
            assert len(rosout.matching("TF implementation")) == 1


def test_builtin_is_used_when_asked_for(request, ros_context, executor, spinning):
    from sparp_ros.ros.node import SparpNode

    node = SparpNode(context=ros_context, namespace=_namespace(request),
                     parameter_overrides=_overrides(tf_implementation="builtin"))
    with spinning(executor, node):
        assert type(node.tf_buffer) is TransformBuffer


@pytest.mark.skipif(HAVE_TF2_ROS, reason="tf2_ros is importable here")
def test_tf2_ros_asked_for_without_it_fails_configuration_with_the_reason(
        request, ros_context, executor, spinning, wait_for):
    """The plain node raises the reason from its constructor (``sparp-ros node`` prints it and
    exits 1); the lifecycle node's configure fails and it stays unconfigured, the reason on
    /rosout; neither loads the model."""
    import rclpy
    from rclpy.lifecycle import TransitionCallbackReturn

    from sparp_ros.ros.lifecycle_node import SparpLifecycleNode
    from sparp_ros.ros.node import SparpNode

    reason = (r"tf_implementation=tf2_ros but tf2_ros is not importable \(ModuleNotFoundError: "
              r"No module named 'tf2_ros'\): source a ROS 2 install that has tf2_ros, or set "
              r"tf_implementation to auto or builtin \(this package's TF buffer\)")
    ns = _namespace(request)
    with pytest.raises(TfImplementationError, match=f"^{reason}$"):
        SparpNode(context=ros_context, namespace=ns + "_plain",
                  parameter_overrides=_overrides(tf_implementation="tf2_ros"))

    peer = rclpy.create_node("peer", namespace=ns, context=ros_context)
    rosout = _Rosout(peer, ns)
    node = SparpLifecycleNode(context=ros_context, namespace=ns,
                              parameter_overrides=_overrides(tf_implementation="tf2_ros"))
    with spinning(executor, peer, node):
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert node.node_state == "unconfigured" and node.pipeline is None
        assert node.tf_buffer is None
        wait_for(lambda: rosout.matching(f"^configure failed, staying unconfigured: {reason}$"),
                 TIMEOUT_S, "the configure failure on /rosout")
        # The node is still up: with a value this install can run it configures.
        node.set_parameters([Parameter("tf_implementation", value="builtin")])
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert type(node.tf_buffer) is TransformBuffer


# -- the adapter's conversion, without tf2_ros ------------------------------------------------------
class StandInTf2BufferForConversionTest:
    """Only for the conversion test: what tf2_ros.Buffer's ``lookup_transform(target_frame,
    source_frame, time, timeout=...)`` returns for a frame pair it holds one transform of (a
    static one: the same at any time). Records the times and timeouts it is asked with."""

    def __init__(self, msg):
        self.msg = msg
        self.calls: list[tuple[Time, Duration]] = []

    def lookup_transform(self, target_frame, source_frame, time, timeout=Duration()):
        assert (target_frame, source_frame) == (self.msg.header.frame_id, self.msg.child_frame_id)
        self.calls.append((time, timeout))
        return self.msg


@pytest.mark.parametrize("T", [_T(0.1, 90.0), _T(-2.0, 30.0, -70.0), np.eye(4)])
def test_the_adapter_converts_as_our_buffer_does(T):
    from builtin_interfaces.msg import Time as Stamp

    stamp = Stamp(sec=1_700_000_123, nanosec=456_789_123)   # more digits than a float holds
    msg = messages.matrix_to_transform_stamped(T, "world", "camera", stamp)
    t = messages.stamp_to_seconds(msg.header.stamp)
    ours, ours_static = TransformBuffer(), TransformBuffer()
    messages.add_transform_stamped(ours, msg)
    messages.add_transform_stamped(ours_static, msg, static=True)
    tf2 = StandInTf2BufferForConversionTest(msg)
    adapter = Tf2Buffer(tf2)

    # Latest: rclpy Time() (tf2's time 0), no waiting.
    np.testing.assert_allclose(adapter.lookup("world", "camera"), ours.lookup("world", "camera"),
                               atol=1e-12)
    when, timeout = tf2.calls[-1]
    assert isinstance(when, Time) and when.nanoseconds == 0 and timeout == Duration()

    # At the transform's own stamp (given as seconds, as the node gives the image stamp): the
    # latest data, whose stamp converts to the same seconds, is the answer.
    tf2.calls.clear()
    np.testing.assert_allclose(adapter.lookup("/world", "camera/", t), ours.lookup("world",
                               "camera", t), atol=1e-12)
    assert [c[0].nanoseconds for c in tf2.calls] == [0]
    np.testing.assert_allclose(adapter.wait_for("world", "camera", t, 0.5),
                               ours.wait_for("world", "camera", t, 0.5), atol=1e-12)
    assert adapter.can_transform("world", "camera", t)

    # Another time: an rclpy Time of that stamp (to the nanosecond a float can hold).
    tf2.calls.clear()
    earlier = t - 0.25
    np.testing.assert_allclose(adapter.lookup("world", "camera", earlier),
                               ours_static.lookup("world", "camera", earlier), atol=1e-12)
    assert [c[0].nanoseconds for c in tf2.calls][0] == 0
    asked = tf2.calls[-1][0]
    assert isinstance(asked, Time)
    expected_ns = 1_700_000_123 * 10**9 + 456_789_123 - 250_000_000
    assert abs(asked.nanoseconds - expected_ns) <= 1_000

    # tolerance_s: the latest data up to that much older than the time asked is the answer.
    tf2.calls.clear()
    np.testing.assert_allclose(adapter.lookup("world", "camera", t + 0.05, tolerance_s=0.1),
                               ours.lookup("world", "camera", t + 0.05, tolerance_s=0.1),
                               atol=1e-12)
    assert len(tf2.calls) == 1


# -- the tf2_ros path end to end (a ROS install) ----------------------------------------------------
def test_tf2_ros_path_end_to_end(request, ros_context, executor, spinning, wait_for,
                                 publish_frame):
    """tf_implementation=tf2_ros: a static transform sent by tf2_ros's StaticTransformBroadcaster
    reaches tf2_ros's listener on the node and gives a keyframe its camera pose through the
    adapter; a dynamic transform is found at exactly its stamp (given as seconds); tf2's errors
    come out as ours."""
    tf2_ros = pytest.importorskip("tf2_ros")
    import rclpy

    from sparp_ros.ros.node import SparpNode
    from sparp_ros.ros.player import PLAYER_QOS

    ns = _namespace(request)
    node = SparpNode(context=ros_context, namespace=ns,
                     parameter_overrides=_overrides(tf_implementation="tf2_ros"))
    peer = rclpy.create_node("peer", namespace=ns, context=ros_context)
    pubs = {p: peer.create_publisher(CameraInfo if p == "camera_info" else Image, p, PLAYER_QOS)
            for p in ("image", "camera_info", "oracle_nocs")}
    T_world_cam, T_world_moving, T_a_b = _T(0.3, 45.0, 10.0), _T(1.0, -20.0), _T(0.0, 5.0)
    static = tf2_ros.StaticTransformBroadcaster(peer)
    static.sendTransform([messages.matrix_to_transform_stamped(T_world_cam, "world", "cam", 0.0),
                          messages.matrix_to_transform_stamped(T_a_b, "a", "b", 0.0)])
    dynamic = tf2_ros.TransformBroadcaster(peer)
    with spinning(executor, node, peer):
        tf = node.tf_buffer
        assert isinstance(tf, Tf2Buffer) and isinstance(tf.buffer, tf2_ros.Buffer)
        assert isinstance(tf.listener, tf2_ros.TransformListener)
        wait_for(lambda: tf.can_transform("world", "cam"), TIMEOUT_S,
                 "the static transform through tf2_ros")
        np.testing.assert_allclose(tf.lookup("world", "cam"), T_world_cam, atol=1e-9)
        np.testing.assert_allclose(tf.lookup("cam", "world"), np.linalg.inv(T_world_cam),
                                   atol=1e-9)

        publish_frame(node, pubs, seed=0)
        wait_for(lambda: len(node.buffer) == 1, TIMEOUT_S, "a keyframe")
        [(frame, _)] = node.buffer.items()
        assert frame.T_world_camera is not None, "no camera pose through tf2_ros"
        np.testing.assert_allclose(frame.T_world_camera, T_world_cam, atol=1e-9)
        assert node.tf_failures == 0

        stamp = peer.get_clock().now().to_msg()
        dynamic.sendTransform(messages.matrix_to_transform_stamped(T_world_moving, "world",
                                                                   "moving", stamp))
        t = messages.stamp_to_seconds(stamp)
        np.testing.assert_allclose(tf.wait_for("world", "moving", t, TIMEOUT_S), T_world_moving,
                                   atol=1e-9)
        with pytest.raises(ExtrapolationError) as future:
            tf.wait_for("world", "moving", t + 10.0, 0.1)
        assert future.value.future
        with pytest.raises(ExtrapolationError) as past:
            tf.lookup("world", "moving", t - 10.0)
        assert not past.value.future
        with pytest.raises(FrameNotFoundError):
            tf.lookup("world", "nowhere")
        with pytest.raises(ConnectivityError):
            tf.lookup("world", "b")
