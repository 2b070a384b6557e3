"""Metric scale from TF over real DDS: the player publishes a rendered capture's camera poses on
/tf (world -> camera) and no depth; the node, with ``world_frame`` set, gives every keyframe its
``T_world_camera`` from TF, and the reconstruction takes its scale from the camera motion. Without
the TF path the scale would be the size prior (0.2 m, ~40 % off here)."""
from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("tf2_msgs.msg")
from std_srvs.srv import Trigger  # noqa: E402

from sparp_ros.ros import messages  # noqa: E402

OBJECT = "Vans_Cereal_Honey_Nut_Crunch_11_oz_box"
VIEWS = 4
WORLD = "world"
MAX_SCALE_ERROR = 0.03             # of the true bounding-box diagonal
MAX_TRANSLATION_ERROR = 0.03       # of the camera-object distance
PIPELINE_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def capture(objects_dir, tmp_path_factory):
    from sparp_ros.render import render_capture
    return render_capture(objects_dir / f"{OBJECT}.glb", tmp_path_factory.mktemp("capture"),
                          views=VIEWS, seed=11)


@pytest.fixture(scope="module")
def result(ros_context, executor, capture, wait_for, call_trigger):
    """Node (world_frame set, no depth) + player + client in one process; play once, trigger."""
    import rclpy
    from rclpy.parameter import Parameter
    from sparp_ros_msgs.msg import ObjectReconstruction

    from sparp_ros.ros.node import RESULT_QOS, SparpNode
    from sparp_ros.ros.player import play

    assert all(f.T_world_camera is not None for f in capture.frames)
    assert capture.gt.extra["canonical"]["diagonal"] / 0.2 - 1 > 3 * MAX_SCALE_ERROR, \
        "the size prior must not pass this test by chance"
    node = SparpNode(context=ros_context, parameter_overrides=[
        Parameter("backend", value="oracle"),     # the geometry from TF, not the model's accuracy
        Parameter("reliable_inputs", value=True), Parameter("sync_timeout_s", value=5.0),
        Parameter("use_depth", value=False), Parameter("world_frame", value=WORLD)])
    player = rclpy.create_node("sparp_tf_test_player", context=ros_context)
    client = rclpy.create_node("sparp_tf_test_client", context=ros_context)
    recons = []
    client.create_subscription(ObjectReconstruction, "/sparp/reconstruction", recons.append,
                               RESULT_QOS)
    reconstruct = client.create_client(Trigger, "/sparp_node/reconstruct")
    nodes = (node, player, client)
    for n in nodes:
        executor.add_node(n)
    try:
        published = play(capture.root, node=player, rate_hz=5.0, depth=False, world_frame=WORLD)
        assert list(dict.fromkeys(i for i, _ in published)) == list(range(VIEWS))
        wait_for(lambda: len(node.buffer) == VIEWS, 20.0, f"{VIEWS} keyframes in the node")
        stamp_to_view = {(s.sec, s.nanosec): i for i, s in published}
        keyframes = [(f, stamp_to_view[(s.sec, s.nanosec)]) for f, s in node.buffer.items()]
        response = call_trigger(reconstruct, PIPELINE_TIMEOUT_S)
        assert response.success, response.message
        wait_for(lambda: bool(recons), 10.0, "the ObjectReconstruction message")
        yield response, recons[-1], keyframes, stamp_to_view, node
    finally:
        for n in nodes:
            executor.remove_node(n)
            n.destroy_node()


def test_keyframes_carry_the_camera_pose_from_tf(result, capture):
    _, _, keyframes, _, _ = result
    assert [view for _, view in keyframes] == list(range(VIEWS))
    for frame, view in keyframes:
        assert frame.depth is None
        assert frame.T_world_camera is not None, f"view {view} has no pose from TF"
        np.testing.assert_allclose(frame.T_world_camera, capture.frames[view].T_world_camera,
                                   atol=1e-6, err_msg=f"view {view}")


def test_scale_and_translation_from_camera_motion(result, capture):
    response, recon, _, stamp_to_view, _ = result
    truth = capture.gt.extra["canonical"]["diagonal"]
    assert recon.scale_source == "camera_motion", response.message
    assert 0 <= recon.scale_uncertainty < 0.05
    assert "camera_motion" in response.message
    scale_error = abs(recon.scale / truth - 1)
    # the published pose's translation is metric: compare with the true object centre
    view = stamp_to_view[(recon.header.stamp.sec, recon.header.stamp.nanosec)]
    center = np.append(np.asarray(capture.gt.extra["canonical"]["center"], float), 1.0)
    t_gt = (capture.gt.T_camera_object[view] @ center)[:3]
    t_est = messages.pose_to_matrix(recon.pose)[:3, 3]
    translation_error = np.linalg.norm(t_est - t_gt) / np.linalg.norm(t_gt)
    print(f"\nscale from TF camera motion: {recon.scale:.4f} m (truth {truth:.4f} m, "
          f"{100 * scale_error:.2f} %), translation error {100 * translation_error:.2f} %")
    assert scale_error < MAX_SCALE_ERROR
    assert translation_error < MAX_TRANSLATION_ERROR


def test_failed_lookup_keeps_the_frame_without_a_pose(result, capture):
    """An unknown camera frame waits ``tf_timeout_s`` (the transform might still come), a stamp
    older than the TF history fails at once; both give None and are counted."""
    from builtin_interfaces.msg import Time

    *_, node = result
    before = node.tf_failures
    timeout = node.params["tf_timeout_s"]
    t0 = time.monotonic()
    assert node._camera_pose("no_such_camera", Time(sec=int(time.time()))) is None
    assert timeout * 0.9 <= time.monotonic() - t0 < timeout + 1.0
    t0 = time.monotonic()
    assert node._camera_pose(capture.frames[0].camera.frame_id, Time(sec=1)) is None
    assert time.monotonic() - t0 < timeout
    assert node.tf_failures == before + 2


def test_pose_published_in_the_world_frame(result, capture, executor, ros_context, wait_for,
                                           call_trigger):
    """publish_in_world_frame: the pose and TF are in world_frame, through the published
    keyframe's camera pose; the object's centre is then where it is in the world (the renderer's
    world is the mesh frame), whichever view was published."""
    import rclpy
    from geometry_msgs.msg import PoseStamped
    from rclpy.parameter import Parameter

    from sparp_ros.ros.node import RESULT_QOS

    *_, node = result
    client = rclpy.create_node("sparp_tf_world_client", context=ros_context)
    poses = []
    client.create_subscription(PoseStamped, "/sparp/object_pose", poses.append, RESULT_QOS)
    reconstruct = client.create_client(Trigger, "/sparp_node/reconstruct")
    executor.add_node(client)
    try:
        assert node.set_parameters([Parameter("publish_in_world_frame", value=True)])[0].successful
        response = call_trigger(reconstruct, PIPELINE_TIMEOUT_S)
        assert response.success, response.message
        wait_for(lambda: any(p.header.frame_id == WORLD for p in poses), 10.0, "a pose in world")
        pose = next(p for p in poses if p.header.frame_id == WORLD)
        center = np.asarray(capture.gt.extra["canonical"]["center"], float)
        t_est = messages.pose_to_matrix(pose.pose)[:3, 3]
        distance = np.linalg.norm(capture.frames[0].T_world_camera[:3, 3] - center)
        assert np.linalg.norm(t_est - center) < MAX_TRANSLATION_ERROR * distance, (t_est, center)
    finally:
        node.set_parameters([Parameter("publish_in_world_frame", value=False)])
        executor.remove_node(client)
        client.destroy_node()
