"""TransformListener over real DDS: /tf_static sent before the listener exists still arrives
(transient local), /tf samples are interpolated by the buffer, a bad transform is skipped without
losing the rest of its message, and /tf remaps like any topic."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy")
tf2_msgs = pytest.importorskip("tf2_msgs.msg")

from sparp_ros.ros import messages  # noqa: E402
from sparp_ros.tf_buffer import FrameNotFoundError, TransformBuffer  # noqa: E402
from sparp_ros.ros.tf_listener import TF_LISTENER_QOS, TF_STATIC_QOS, TransformListener  # noqa: E402

TIMEOUT_S = 10.0


def _T(x: float, yaw_deg: float = 0.0) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("z", yaw_deg, degrees=True).as_matrix()
    T[:3, 3] = [x, 0.5, -0.25]
    return T


@pytest.fixture
def publisher(ros_context, executor):
    import rclpy

    node = rclpy.create_node("tf_test_publisher", context=ros_context)
    executor.add_node(node)
    try:
        yield node
    finally:
        executor.remove_node(node)
        node.destroy_node()


def _listener(ros_context, executor, name: str, cli_args=None):
    import rclpy

    node = rclpy.create_node(name, context=ros_context, cli_args=cli_args)
    executor.add_node(node)
    buffer = TransformBuffer()
    return node, buffer, TransformListener(node, buffer)


def _close(executor, node) -> None:
    executor.remove_node(node)
    node.destroy_node()


def test_static_before_start_and_dynamic_interpolated(ros_context, executor, publisher, wait_for):
    TFMessage = tf2_msgs.TFMessage
    T_base_camera = _T(0.1, 90.0)
    static_pub = publisher.create_publisher(TFMessage, "/tf_static", TF_STATIC_QOS)
    static_pub.publish(TFMessage(transforms=[
        messages.matrix_to_transform_stamped(T_base_camera, "base", "camera", 0.0)]))
    node, buffer, listener = _listener(ros_context, executor, "tf_test_listener")
    try:
        wait_for(lambda: buffer.can_transform("base", "camera"), TIMEOUT_S,
                 "the static transform sent before the listener started")
        tf_pub = publisher.create_publisher(TFMessage, "/tf", TF_LISTENER_QOS)
        wait_for(lambda: tf_pub.get_subscription_count() > 0
                 and listener.tf_sub.get_publisher_count() > 0, TIMEOUT_S, "/tf matched")
        bad = messages.matrix_to_transform_stamped(np.eye(4), "world", "broken", 0.0)
        bad.transform.rotation.w = 0.0                      # zero quaternion: refused
        tf_pub.publish(TFMessage(transforms=[
            bad, messages.matrix_to_transform_stamped(_T(0.0, 0.0), "world", "base", 100.0)]))
        tf_pub.publish(TFMessage(transforms=[
            messages.matrix_to_transform_stamped(_T(1.0, 40.0), "world", "base", 101.0)]))
        # the messages may be handled in parallel (reentrant group, as tf2): wait for all
        wait_for(lambda: listener.received == 3 and listener.rejected == 1, TIMEOUT_S,
                 "the static, both /tf samples and the refused one")
        T = buffer.lookup("world", "camera", 100.5)
        np.testing.assert_allclose(T, _T(0.5, 20.0) @ T_base_camera, atol=1e-9)
        with pytest.raises(FrameNotFoundError):
            buffer.lookup("world", "broken", 100.0)
    finally:
        listener.destroy()
        _close(executor, node)


def test_tf_topic_is_remappable(ros_context, executor, publisher, wait_for):
    TFMessage = tf2_msgs.TFMessage
    node, buffer, listener = _listener(ros_context, executor, "tf_test_remapped",
                                       cli_args=["--ros-args", "-r", "/tf:=/robot1/tf"])
    try:
        assert listener.tf_sub.topic_name == "/robot1/tf"
        robot_pub = publisher.create_publisher(TFMessage, "/robot1/tf", TF_LISTENER_QOS)
        plain_pub = publisher.create_publisher(TFMessage, "/tf", TF_LISTENER_QOS)
        wait_for(lambda: robot_pub.get_subscription_count() > 0
                 and listener.tf_sub.get_publisher_count() > 0, TIMEOUT_S, "/robot1/tf matched")
        plain_pub.publish(TFMessage(transforms=[
            messages.matrix_to_transform_stamped(_T(2.0), "world", "other_robot", 1.0)]))
        robot_pub.publish(TFMessage(transforms=[
            messages.matrix_to_transform_stamped(_T(3.0), "world", "robot1", 1.0)]))
        wait_for(lambda: buffer.can_transform("world", "robot1", 1.0), TIMEOUT_S,
                 "the transform on /robot1/tf")
        np.testing.assert_allclose(buffer.lookup("world", "robot1", 1.0), _T(3.0), atol=1e-9)
        assert "other_robot" not in buffer.frames()
    finally:
        listener.destroy()
        _close(executor, node)
