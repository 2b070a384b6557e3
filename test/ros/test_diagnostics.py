"""``/diagnostics`` over real DDS: a client receives the node's DiagnosticArray with the buffer,
drops per input and the last reason, latency, backend/device and busy flag, at the level the
situation calls for (OK; WARN for drops rising and for no images). The ERROR level (a model that
fails to load) is checked with the lifecycle node in test_lifecycle.py."""
from __future__ import annotations

import array
import re
import threading

import pytest

pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from sparp_ros.ros.player import PLAYER_QOS  # noqa: E402

PERIOD_S = 0.2
KEYS = {"state", "backend", "device", "model_loaded", "busy", "keyframes", "max_keyframes",
        "images_received", "dropped_total", "dropped.image", "dropped.camera_info",
        "dropped.oracle_nocs", "last_drop_reason", "seconds_since_last_image",
        "last_reconstruction_latency_s", "last_reconstruction"}


class Listener:
    """A client node: the node's statuses on /diagnostics, publishers for its inputs, and its
    reconstruct service."""

    def __init__(self, context, target: str):
        import rclpy

        self.node = rclpy.create_node("diagnostics_listener", context=context)
        self.statuses: list[DiagnosticStatus] = []
        self._lock = threading.Lock()
        self._name = f"{target}: "
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_array, 10)
        ns = target.rsplit("/", 1)[0]
        self.pubs = {p: self.node.create_publisher(CameraInfo if p == "camera_info" else Image,
                                                   f"{ns}/{p}", PLAYER_QOS)
                     for p in ("image", "camera_info", "oracle_nocs")}
        self.reconstruct = self.node.create_client(Trigger, f"{target}/reconstruct")

    def _on_array(self, msg: DiagnosticArray) -> None:
        with self._lock:
            self.statuses += [s for s in msg.status if s.name.startswith(self._name)]

    def next_status(self, predicate, wait_for, what: str, timeout_s: float = 10.0) -> DiagnosticStatus:
        """The first status from now on for which ``predicate(status, values)`` holds."""
        with self._lock:
            start = len(self.statuses)
        found = []

        def seen() -> bool:
            with self._lock:
                found.extend(s for s in self.statuses[start:] if predicate(s, _values(s)))
            return bool(found)
        wait_for(seen, timeout_s, what)
        return found[0]


def _values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


@pytest.fixture
def watched(request, ros_context, executor):
    """A plain node (oracle backend, image + camera_info + oracle_nocs inputs, fast diagnostics;
    more parameters by indirect parametrisation) in its own namespace, and a listener."""
    from sparp_ros.ros.node import SparpNode

    ns = "/" + re.sub(r"\W", "_", request.node.name)
    params = {"backend": "oracle", "use_depth": False, "use_mask": False, "diagnostics_period_s": PERIOD_S,
              **getattr(request, "param", {})}
    node = SparpNode(context=ros_context, namespace=ns,
                     parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    listener = Listener(ros_context, node.get_fully_qualified_name())
    for n in (node, listener.node):
        executor.add_node(n)
    try:
        yield node, listener
    finally:
        for n in (node, listener.node):
            executor.remove_node(n)
            n.destroy_node()


def _truncated_image() -> Image:
    msg = Image(height=48, width=64, encoding="rgb8", step=192)
    msg.data = array.array("B", bytes(100))
    return msg


def test_status_reports_buffer_drops_and_latency(watched, wait_for, publish_frame, call_trigger):
    node, listener = watched
    first = listener.next_status(lambda s, v: True, wait_for, "a status")
    values = _values(first)
    assert KEYS <= set(values), KEYS - set(values)
    assert first.name == f"{node.get_fully_qualified_name()}: object reconstruction"
    assert first.hardware_id == "cpu" and values["backend"] == "oracle" and values["device"] == "cpu"
    assert values["state"] == "active" and values["model_loaded"] == "true" and values["busy"] == "false"

    publish_frame(node, listener.pubs, seed=1)
    ok = listener.next_status(lambda s, v: v["keyframes"] == "1", wait_for, "keyframes=1")
    assert ok.level == DiagnosticStatus.OK and ok.message == "taking frames: 1/6 keyframes", ok
    # Input timing: the image latency (stamp to callback) and the time in the input callbacks.
    timing = _values(ok)
    assert timing["image_latency_count"] == "1" and int(timing["callback_count"]) >= 3
    assert 0 <= float(timing["image_latency_ms.p50"]) < 10_000
    assert 0 < float(timing["callback_ms.p50"]) <= float(timing["callback_ms.max"])

    # A corrupt image: WARN naming the input and the reason, for one report; then OK again.
    publish_frame(node, listener.pubs, seed=2, image=_truncated_image())
    warn = listener.next_status(lambda s, v: v["dropped.image"] == "1", wait_for, "the drop")
    assert warn.level == DiagnosticStatus.WARN, warn
    assert "1 dropped since the last report" in warn.message and "image data truncated" in warn.message
    assert _values(warn)["last_drop_reason"].startswith("image: image data truncated")
    listener.next_status(lambda s, v: s.level == DiagnosticStatus.OK, wait_for, "OK after the drop")

    # The last reconstruction's latency and answer (no mask, so the pipeline refuses at once).
    response = call_trigger(listener.reconstruct, 30.0)
    assert not response.success
    done = listener.next_status(lambda s, v: v["last_reconstruction_latency_s"] != "", wait_for,
                                "the latency")
    assert float(_values(done)["last_reconstruction_latency_s"]) >= 0
    assert _values(done)["last_reconstruction"] == f"failed: {response.message}"


@pytest.mark.parametrize("watched", [{"diagnostics_frame_timeout_s": 0.5}], indirect=True,
                         ids=["timeout"])
def test_no_images_warn_until_frames_come(watched, wait_for, publish_frame):
    node, listener = watched
    warn = listener.next_status(lambda s, v: s.level == DiagnosticStatus.WARN, wait_for, "a WARN")
    assert warn.message.startswith("no image since activation"), warn.message
    assert _values(warn)["seconds_since_last_image"] == ""
    publish_frame(node, listener.pubs, seed=3)
    ok = listener.next_status(lambda s, v: s.level == DiagnosticStatus.OK, wait_for, "OK")
    assert float(_values(ok)["seconds_since_last_image"]) < 0.5
    warn = listener.next_status(lambda s, v: s.level == DiagnosticStatus.WARN, wait_for, "a WARN again")
    assert warn.message.startswith("no image for "), warn.message


def test_destroying_the_node_while_a_status_is_published_raises_nothing(ros_context, executor,
                                                                         wait_for):
    """rclpy does not wait for a timer callback under way when a node is destroyed; the status
    being published then must finish first, and a later one must not touch the destroyed node
    (that raised InvalidHandle into the executor, whose spinning thread died)."""
    from sparp_ros.ros.node import SparpNode

    node = SparpNode(context=ros_context, namespace="/destroyed_while_publishing",
                     parameter_overrides=[Parameter(k, value=v) for k, v in (
                         ("backend", "oracle"), ("use_depth", False), ("use_mask", False),
                         ("diagnostics_period_s", 0.05))])
    inside, release, finished = threading.Event(), threading.Event(), []
    snapshot = node.health_snapshot

    def slow_snapshot():
        inside.set()
        release.wait(10.0)
        finished.append(True)
        return snapshot()
    node.health_snapshot = slow_snapshot
    executor.add_node(node)
    wait_for(inside.is_set, 10.0, "a status being published")
    executor.remove_node(node)
    destroyer = threading.Thread(target=node.destroy_node)
    destroyer.start()
    destroyer.join(0.3)
    assert destroyer.is_alive(), "destroy_node waits for the status under way"
    release.set()
    destroyer.join(10.0)
    assert not destroyer.is_alive() and finished
    node._publish_diagnostics()          # a call that was already queued: returns, raises nothing
    assert executor.errors == []
