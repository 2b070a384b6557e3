"""Fill a ``tf_buffer.TransformBuffer`` from ``/tf`` and ``/tf_static`` (tf2_ros's
``TransformListener`` for installs without tf2_ros: the PyPI wheels have none); and
``StaticTransformSender``, the node's side of ``/tf_static`` (as rclcpp's
``StaticTransformBroadcaster``: every frame sent is kept and all go out in one latched message).

Where ``import tf2_ros`` works (a ROS install) the node reads TF with tf2_ros's own ``Buffer`` and
``TransformListener`` instead (``tf_implementation: auto``, the default; ``tf2_adapter``): the
reference implementation, the one the robot's other nodes use. tf2's buffer answers in
``TransformStamped`` messages, so ``tf2_adapter.Tf2Buffer`` turns them into the 4x4
``T_target_source`` matrices and ``tf_buffer`` errors the node and the pipeline take from this
listener's ``TransformBuffer``. This listener serves the pip-wheel install, which has no tf2_ros
(or ``tf_implementation: builtin``); the rosbag reader (``bag``) fills a ``TransformBuffer``
itself. The message type is ``tf2_msgs/TFMessage``: the real package on a ROS install, else ours
from ``interfaces/tf2_msgs`` (``scripts/build_interfaces.sh``).

QoS as tf2_ros's listener: ``/tf`` reliable, volatile, depth 100; ``/tf_static`` reliable,
transient local, depth 100 (so static transforms sent before we started still arrive). The topic
names are absolute like tf2's and remap like any topic (``--ros-args -r /tf:=/robot1/tf``).
"""
from __future__ import annotations

import threading
import time

from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from . import messages
from ..tf_buffer import TransformBuffer

TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
TF_LISTENER_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)
TF_STATIC_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL,
                           history=HistoryPolicy.KEEP_LAST)
TF_STATIC_BROADCASTER_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                       durability=DurabilityPolicy.TRANSIENT_LOCAL,
                                       history=HistoryPolicy.KEEP_LAST)
"""tf2_ros's StaticTransformBroadcaster: one latched message that holds every static frame."""
WARN_THROTTLE_S = 5.0


class TransformListener:
    """Subscribes ``/tf`` and ``/tf_static`` on ``node`` and adds every transform to ``buffer``.

    The callbacks run in their own reentrant group, so a callback of the node that waits for a
    transform (``TransformBuffer.wait_for``) does not block their delivery under a
    MultiThreadedExecutor. A transform the buffer refuses is counted in ``rejected`` and logged
    (at most once every WARN_THROTTLE_S); the rest of its message is still used. Raises
    ImportError when no ``tf2_msgs`` is importable."""

    def __init__(self, node: Node, buffer: TransformBuffer, tf_topic: str = TF_TOPIC,
                 tf_static_topic: str = TF_STATIC_TOPIC):
        from tf2_msgs.msg import TFMessage

        self.node, self.buffer = node, buffer
        self.received = 0
        self.rejected = 0
        self._warned_at = -WARN_THROTTLE_S
        self._count_lock = threading.Lock()         # the callbacks may run in parallel
        group = ReentrantCallbackGroup()
        self.tf_sub = node.create_subscription(
            TFMessage, tf_topic, lambda msg: self._on_message(msg, False), TF_LISTENER_QOS,
            callback_group=group)
        self.tf_static_sub = node.create_subscription(
            TFMessage, tf_static_topic, lambda msg: self._on_message(msg, True), TF_STATIC_QOS,
            callback_group=group)

    def _on_message(self, msg, static: bool) -> None:
        for transform in msg.transforms:
            try:
                messages.add_transform_stamped(self.buffer, transform, static)
            except ValueError as exc:
                self._reject(exc, static)
                continue
            with self._count_lock:
                self.received += 1

    def _reject(self, error: ValueError, static: bool) -> None:
        with self._count_lock:
            self.rejected += 1
            count, now = self.rejected, time.monotonic()
            if now - self._warned_at < WARN_THROTTLE_S:
                return
            self._warned_at = now
        topic = (self.tf_static_sub if static else self.tf_sub).topic_name
        self.node.get_logger().warning(f"ignoring a transform on {topic} ({count} so far): {error}")

    def destroy(self) -> None:
        self.node.destroy_subscription(self.tf_sub)
        self.node.destroy_subscription(self.tf_static_sub)


class StaticTransformSender:
    """Publishes transforms on ``/tf_static``: each ``send`` replaces the transform of its child
    frame and publishes all of them in one ``TFMessage`` on a transient-local publisher, so a
    listener that starts later still receives every frame. ``make_publisher(msg_type, topic,
    qos)`` makes the publisher (the lifecycle node passes its lifecycle publisher). Raises
    ImportError when no ``tf2_msgs`` is importable."""

    def __init__(self, make_publisher, topic: str = TF_STATIC_TOPIC):
        from tf2_msgs.msg import TFMessage

        self._message = TFMessage
        self.publisher = make_publisher(TFMessage, topic, TF_STATIC_BROADCASTER_QOS)
        self.transforms: dict[str, object] = {}       # child frame -> TransformStamped

    def send(self, transform) -> None:
        self.transforms[transform.child_frame_id] = transform
        self.publisher.publish(self._message(transforms=list(self.transforms.values())))

    def remove(self, child_frames) -> None:
        """Stop sending these frames (``~/reset``): the next latched message leaves them out, so
        a listener that starts later no longer finds them (one that already has them keeps them
        as static transforms, as with tf2_ros)."""
        for child in child_frames:
            self.transforms.pop(child, None)
        self.publisher.publish(self._message(transforms=list(self.transforms.values())))
