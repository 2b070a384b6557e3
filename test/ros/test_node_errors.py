"""Bad input over real DDS: the node answers ``success=false`` with a reason and stays alive."""
from __future__ import annotations

import array

import numpy as np
import pytest

pytest.importorskip("rclpy")
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from sparp_ros import ros_io  # noqa: E402
from sparp_ros.camera import PinholeCamera  # noqa: E402
from sparp_ros.player import PLAYER_QOS  # noqa: E402

CAMERA = PinholeCamera(width=64, height=48, K=[[60, 0, 31.5], [0, 60, 23.5], [0, 0, 1]], frame_id="cam")


@pytest.fixture
def rig(request, ros_context, executor):
    """A fresh node in its own namespace, with publishers for its inputs and service clients."""
    import rclpy

    from sparp_ros.node import SparpNode

    ns = f"/{request.node.name.replace('[', '_').replace(']', '')}"
    node = SparpNode(context=ros_context, namespace=ns)
    peer = rclpy.create_node("peer", namespace=ns, context=ros_context)
    pubs = {t: peer.create_publisher(CameraInfo if t == "camera_info" else Image, t, PLAYER_QOS)
            for t in ("image", "camera_info", "depth", "mask", "oracle_nocs")}
    clients = {s: peer.create_client(Trigger, f"{ns}/sparp_node/{s}") for s in ("reconstruct", "reset")}
    executor.add_node(node)
    executor.add_node(peer)
    try:
        yield node, pubs, clients
    finally:
        for n in (node, peer):
            executor.remove_node(n)
            n.destroy_node()


def _publish(node, pubs, wait_for, parts=("image", "camera_info", "depth", "mask", "oracle_nocs"),
             image: Image | None = None, seed: int = 0, empty_mask: bool = False) -> None:
    """One synthetic frame (the parts given, one stamp) after the node's subscriptions matched."""
    wait_for(lambda: all(pubs[p].get_subscription_count() > 0 for p in parts), 10.0, "discovery")
    rng = np.random.default_rng(seed)
    stamp = node.get_clock().now().to_msg()
    mask = np.zeros((48, 64), bool)
    mask[10:40, 15:50] = not empty_mask
    msgs = {
        "camera_info": ros_io.camera_to_camera_info(CAMERA, stamp),
        "depth": ros_io.depth_to_image(np.full((48, 64), 0.5, np.float32), "cam", stamp),
        "mask": ros_io.mask_to_image(mask, "cam", stamp),
        "oracle_nocs": ros_io.nocs_to_image(rng.random((48, 64, 3)).astype(np.float32), mask, "cam", stamp),
        "image": image or ros_io.numpy_to_image(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8),
                                                "rgb8", "cam", stamp),
    }
    msgs["image"].header.stamp = stamp
    for p in ("camera_info", "depth", "mask", "oracle_nocs", "image"):
        if p in parts:
            pubs[p].publish(msgs[p])


def test_trigger_before_any_input_says_what_is_missing(rig, call_trigger):
    node, _, clients = rig
    r = call_trigger(clients["reconstruct"], 10.0)
    assert not r.success and r.message.startswith("no CameraInfo received on")


def test_trigger_without_camera_info_fails_with_a_message(rig, call_trigger, wait_for):
    node, pubs, clients = rig
    _publish(node, pubs, wait_for, parts=("image", "depth", "mask", "oracle_nocs"))
    wait_for(lambda: node._images_seen >= 1, 10.0, "the image to reach the node")
    r = call_trigger(clients["reconstruct"], 10.0)
    assert not r.success
    assert "no CameraInfo received" in r.message and "1 images received" in r.message


def test_unsupported_encoding_is_dropped_and_the_node_keeps_working(rig, call_trigger, wait_for):
    node, pubs, clients = rig
    yuv = Image(height=48, width=64, encoding="yuv422", step=128)
    yuv.data = array.array("B", bytes(128 * 48))
    _publish(node, pubs, wait_for, image=yuv)
    wait_for(lambda: node._images_seen >= 1, 10.0, "the image to reach the node")
    assert len(node.buffer) == 0
    r = call_trigger(clients["reconstruct"], 10.0)
    assert not r.success and r.message.startswith("no keyframes yet")
    # Still alive and working: a good frame becomes a keyframe, reset clears it.
    _publish(node, pubs, wait_for, seed=1)
    wait_for(lambda: len(node.buffer) == 1, 10.0, "a keyframe from the good frame")
    r = call_trigger(clients["reset"], 10.0)
    assert r.success and r.message == "cleared 1 keyframes" and len(node.buffer) == 0


def test_pipeline_error_is_a_failed_response_not_a_crash(rig, call_trigger, wait_for):
    """A frame with an empty object mask cannot be cropped: the pipeline's error is the answer."""
    node, pubs, clients = rig
    _publish(node, pubs, wait_for, seed=2, empty_mask=True)
    wait_for(lambda: len(node.buffer) == 1, 10.0, "a keyframe")
    r = call_trigger(clients["reconstruct"], 60.0)
    assert not r.success and r.message.startswith("pipeline: view 0"), r.message
    assert call_trigger(clients["reset"], 10.0).success
