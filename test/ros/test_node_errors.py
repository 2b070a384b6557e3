"""Bad input over real DDS: the node answers ``success=false`` with a reason and stays alive.

Whatever a camera driver sends (unreadable images, uncalibrated or mismatched CameraInfo), the
message is dropped and counted in ``node.dropped``, nothing reaches the keyframe buffer, and the
services keep answering; readable variants (padded rows, mono, compressed, binned or distorted
cameras) are buffered correctly."""
from __future__ import annotations

import array
import re

import numpy as np
import pytest

pytest.importorskip("rclpy")
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from sparp_ros.ros import messages  # noqa: E402
from sparp_ros.camera import PinholeCamera  # noqa: E402
from sparp_ros.ros.player import PLAYER_QOS  # noqa: E402

CAMERA = PinholeCamera(width=64, height=48, K=[[60, 0, 31.5], [0, 60, 23.5], [0, 0, 1]], frame_id="cam")


@pytest.fixture
def rig(request, ros_context, executor, spinning):
    """A fresh node in its own namespace (parameters from an indirect ``rig`` parametrisation),
    with publishers for its inputs and service clients."""
    import rclpy

    from sparp_ros.ros.node import SparpNode

    ns = "/" + re.sub(r"\W", "_", request.node.name)
    params = {"backend": "oracle", **getattr(request, "param", {})}
    overrides = [Parameter(k, value=v) for k, v in params.items()]
    node = SparpNode(context=ros_context, namespace=ns, parameter_overrides=overrides)
    peer = rclpy.create_node("peer", namespace=ns, context=ros_context)
    types = {"camera_info": CameraInfo, "image/compressed": CompressedImage}
    pubs = {t: peer.create_publisher(types.get(t, Image), t, PLAYER_QOS)
            for t in ("image", "image/compressed", "camera_info", "depth", "mask", "oracle_nocs")}
    clients = {s: peer.create_client(Trigger, f"{ns}/sparp_node/{s}") for s in ("reconstruct", "reset")}
    with spinning(executor, node, peer):
        yield node, pubs, clients


def _publish(node, pubs, wait_for, parts=("image", "camera_info", "depth", "mask", "oracle_nocs"),
             image: Image | CompressedImage | None = None, seed: int = 0, empty_mask: bool = False,
             camera_info: CameraInfo | None = None) -> None:
    """One synthetic frame (the parts given, one stamp) after the node's subscriptions matched;
    a CompressedImage goes to ``image/compressed``."""
    topic = {p: p for p in parts}
    if isinstance(image, CompressedImage):
        topic["image"] = "image/compressed"
    wait_for(lambda: all(pubs[topic[p]].get_subscription_count() > 0 for p in parts), 10.0, "discovery")
    rng = np.random.default_rng(seed)
    stamp = node.get_clock().now().to_msg()
    mask = np.zeros((48, 64), bool)
    mask[10:40, 15:50] = not empty_mask
    msgs = {
        "camera_info": camera_info or messages.camera_to_camera_info(CAMERA, stamp),
        "depth": messages.depth_to_image(np.full((48, 64), 0.5, np.float32), "cam", stamp),
        "mask": messages.mask_to_image(mask, "cam", stamp),
        "oracle_nocs": messages.nocs_to_image(rng.random((48, 64, 3)).astype(np.float32), mask, "cam", stamp),
        "image": image or messages.numpy_to_image(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8),
                                                "rgb8", "cam", stamp),
    }
    msgs["image"].header.stamp = msgs["camera_info"].header.stamp = stamp
    for p in ("camera_info", "depth", "mask", "oracle_nocs", "image"):
        if p in parts:
            pubs[topic[p]].publish(msgs[p])


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


def _image(encoding: str, height: int, width: int, step: int, nbytes: int) -> Image:
    msg = Image(height=height, width=width, encoding=encoding, step=step)
    msg.data = array.array("B", np.random.default_rng(5).integers(0, 256, nbytes, np.uint8).tobytes())
    return msg


BAD_IMAGES = {   # name: (message, what the drop reason says)
    "truncated": (_image("rgb8", 48, 64, 192, 192 * 48 - 100), "image data truncated"),
    "short_step": (_image("rgb8", 48, 64, 100, 100 * 48), "step 100 is shorter than one row"),
    "unsupported_encoding": (_image("nv21", 48, 64, 64, 64 * 72), "unsupported image encoding 'nv21'"),
    "zero_size": (_image("rgb8", 0, 64, 192, 0), "zero size"),
    "huge": (_image("mono8", 1, 9000, 9000, 9000), "larger than 8192 pixels per side"),
    "odd_width_yuv": (_image("yuv422", 48, 63, 126, 126 * 48), "width must be even"),
}


@pytest.mark.parametrize("bad", sorted(BAD_IMAGES))
def test_unreadable_image_is_dropped_and_the_node_keeps_working(rig, call_trigger, wait_for, bad):
    node, pubs, clients = rig
    image, reason = BAD_IMAGES[bad]
    _publish(node, pubs, wait_for, image=image)
    wait_for(lambda: node.dropped["image"] == 1, 10.0, f"the {bad} image to be dropped")
    # the CameraInfo travels on its own topic and may arrive after the image
    wait_for(lambda: node._camera_info_seen, 10.0, "the CameraInfo")
    assert len(node.buffer) == 0
    # Still alive and answering, with the reason ...
    r = call_trigger(clients["reconstruct"], 10.0)
    assert not r.success and r.message.startswith("no keyframes yet"), r.message
    assert "1 images received; 1 dropped as unusable, last image: " in r.message and reason in r.message
    # ... and working: a good frame becomes a keyframe, reset clears it.
    _publish(node, pubs, wait_for, seed=1)
    wait_for(lambda: len(node.buffer) == 1, 10.0, "a keyframe from the good frame")
    r = call_trigger(clients["reset"], 10.0)
    assert r.success and r.message == "cleared 1 keyframes" and len(node.buffer) == 0


def test_padded_rgba8_and_mono8_frames_are_buffered_with_their_pixels(rig, wait_for):
    node, pubs, _ = rig
    rng = np.random.default_rng(7)
    rgba = rng.integers(0, 256, (48, 64, 4), np.uint8)
    step = 64 * 4 + 12                                   # row padding, as some drivers send
    rows = np.zeros((48, step), np.uint8)
    rows[:, :64 * 4] = rgba.reshape(48, -1)
    padded = Image(height=48, width=64, encoding="rgba8", step=step)
    padded.data = array.array("B", rows.tobytes())
    _publish(node, pubs, wait_for, image=padded)
    wait_for(lambda: len(node.buffer) == 1, 10.0, "a keyframe from the rgba8 frame")
    np.testing.assert_array_equal(node.buffer.items()[0][0].image, rgba[..., :3])
    grey = rng.integers(0, 256, (48, 64), np.uint8)
    _publish(node, pubs, wait_for, image=messages.numpy_to_image(grey, "mono8"))
    wait_for(lambda: len(node.buffer) == 2, 10.0, "a keyframe from the mono8 frame")
    np.testing.assert_array_equal(node.buffer.items()[1][0].image, np.repeat(grey[..., None], 3, axis=2))
    assert sum(node.dropped.values()) == 0


def test_uncalibrated_camera_info_is_dropped_and_named_in_the_answer(rig, call_trigger, wait_for):
    node, pubs, clients = rig
    info = messages.camera_to_camera_info(CAMERA)
    info.k = [0.0] * 9
    _publish(node, pubs, wait_for, camera_info=info)
    wait_for(lambda: node.dropped["camera_info"] == 1, 10.0, "the CameraInfo to be dropped")
    assert len(node.buffer) == 0
    r = call_trigger(clients["reconstruct"], 10.0)
    assert not r.success and r.message.startswith("no usable CameraInfo received on"), r.message
    assert "all-zero K" in r.message


def test_camera_info_of_another_resolution_is_scaled_or_refused(rig, wait_for):
    """A CameraInfo for the full sensor with a binned (2x2) image: K scaled to the image. One for
    another aspect ratio: the frame is dropped, not guessed."""
    node, pubs, _ = rig
    full = messages.camera_to_camera_info(CAMERA.resize(128, 96))
    _publish(node, pubs, wait_for, camera_info=full)
    wait_for(lambda: len(node.buffer) == 1, 10.0, "a keyframe with the binned image")
    np.testing.assert_allclose(node.buffer.items()[0][0].camera.K, CAMERA.K, atol=1e-9)
    other = messages.camera_to_camera_info(PinholeCamera(64, 64, CAMERA.K, frame_id="cam"))
    _publish(node, pubs, wait_for, camera_info=other, seed=3)
    wait_for(lambda: node.dropped["frame"] == 1, 10.0, "the mismatched frame to be dropped")
    assert len(node.buffer) == 1 and "not the same aspect ratio" in node._last_drop


def test_distorted_camera_frames_are_undistorted_before_buffering(rig, wait_for):
    node, pubs, _ = rig
    distorted = PinholeCamera(64, 48, CAMERA.K, D=[-0.2, 0.05, 0.0, 0.0, 0.0],
                              distortion_model="plumb_bob", frame_id="cam")
    _publish(node, pubs, wait_for, camera_info=messages.camera_to_camera_info(distorted), seed=4)
    wait_for(lambda: len(node.buffer) == 1, 10.0, "a keyframe")
    frame = node.buffer.items()[0][0]
    assert not frame.camera.has_distortion and np.array_equal(frame.camera.K, CAMERA.K)
    rng = np.random.default_rng(4)                       # as _publish draws them
    rng.random((48, 64, 3))
    raw = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(frame.image, distorted.undistort(raw))
    assert not np.array_equal(frame.image, raw)


def _jpeg(seed: int) -> CompressedImage:
    import cv2
    rgb = np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    msg = CompressedImage(format="rgb8; jpeg compressed bgr8")
    msg.data = array.array("B", cv2.imencode(".jpg", rgb[..., ::-1])[1].tobytes())
    return msg


@pytest.mark.parametrize("rig", [{"compressed_input": True}], indirect=True, ids=["compressed"])
def test_compressed_input_reads_image_compressed(rig, call_trigger, wait_for):
    node, pubs, clients = rig
    assert node._subscriptions_by_part["image"].topic_name.endswith("/image/compressed")
    corrupt = _jpeg(1)
    corrupt.data = corrupt.data[:30]
    _publish(node, pubs, wait_for, image=corrupt)
    wait_for(lambda: node.dropped["image"] == 1, 10.0, "the corrupt JPEG to be dropped")
    assert len(node.buffer) == 0 and "CompressedImage" in node._last_drop
    _publish(node, pubs, wait_for, image=_jpeg(2), seed=2)
    wait_for(lambda: len(node.buffer) == 1, 10.0, "a keyframe from the JPEG")
    assert node.buffer.items()[0][0].image.shape == (48, 64, 3)
    assert call_trigger(clients["reset"], 10.0).success


def test_pipeline_error_is_a_failed_response_not_a_crash(rig, call_trigger, wait_for):
    """A frame with an empty object mask cannot be cropped: the pipeline's error is the answer."""
    node, pubs, clients = rig
    _publish(node, pubs, wait_for, seed=2, empty_mask=True)
    wait_for(lambda: len(node.buffer) == 1, 10.0, "a keyframe")
    r = call_trigger(clients["reconstruct"], 60.0)
    assert not r.success and r.message.startswith("pipeline: view 0"), r.message
    assert call_trigger(clients["reset"], 10.0).success
