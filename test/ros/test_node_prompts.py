"""Prompt segmentation over real DDS: a world point (RViz "Publish Point") and a box
(RegionOfInterest) sent to a node with ``use_mask: false`` pick exactly the objects pointed at,
each reconstructed on its own frame where that object stands. Its own module: the node of
``test_node_objects`` (same name, same services) must be gone first."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh

pytest.importorskip("rclpy")
pytest.importorskip("tf2_msgs.msg")
pytest.importorskip("sparp_ros_msgs.msg")
from std_srvs.srv import Trigger  # noqa: E402

from test_node_objects import (MAX_CENTRE_ERROR_M, OBJECTS, PIPELINE_TIMEOUT_S, VIEWS,  # noqa: E402
                               WORLD, _true_centres)


@pytest.fixture(scope="module")
def scene(objects_dir, tmp_path_factory):
    from sparp_ros.render.depth_noise import STEREO_DEFAULT
    from sparp_ros.render.scene import render_tabletop

    return render_tabletop([objects_dir / f"{n}.glb" for n in OBJECTS],
                           tmp_path_factory.mktemp("table"), views=VIEWS, seed=5,
                           depth_noise=STEREO_DEFAULT, width=480, height=360)


def test_prompts_pick_the_objects_pointed_at(ros_context, executor, scene, wait_for, call_trigger):
    """``segmentation: auto`` with prompts received: a world point on the hammer (RViz "Publish
    Point" in the fixed frame) and a box around the mug in the latest keyframe give exactly those
    two objects, in prompt order, each frame at its object."""
    import rclpy
    from geometry_msgs.msg import PointStamped
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import RegionOfInterest

    from sparp_ros.ros.node import RELIABLE_INPUT_QOS, SparpNode
    from sparp_ros.ros.player import play

    node = SparpNode(context=ros_context, parameter_overrides=[
        Parameter("use_mask", value=False), Parameter("mesh", value=False),
        Parameter("world_frame", value=WORLD), Parameter("publish_in_world_frame", value=True),
        Parameter("sync_timeout_s", value=5.0), Parameter("object_id", value="pointed")])
    peer = rclpy.create_node("sparp_prompt_test_peer", context=ros_context)
    point_pub = peer.create_publisher(PointStamped, "/prompt_point", RELIABLE_INPUT_QOS)
    box_pub = peer.create_publisher(RegionOfInterest, "/prompt_box", RELIABLE_INPUT_QOS)
    reconstruct = peer.create_client(Trigger, "/sparp_node/reconstruct")
    for n in (node, peer):
        executor.add_node(n)
    try:
        play(scene.capture.root, node=peer, rate_hz=5.0, world_frame=WORLD)
        wait_for(lambda: len(node.buffer) == VIEWS, 30.0, f"{VIEWS} keyframes in the node")
        hammer, mug = scene.objects[1], scene.objects[0]
        mesh = trimesh.load(hammer.mesh_path, force="mesh")
        top = mesh.vertices[np.argmax(mesh.vertices @ hammer.T_world_object[2, :3])]
        on_hammer = hammer.T_world_object[:3, :3] @ top + hammer.T_world_object[:3, 3]
        msg = PointStamped()
        msg.header.frame_id = WORLD
        msg.point.x, msg.point.y, msg.point.z = (float(v) for v in on_hammer)
        latest = [view for view in range(VIEWS) if mug.masks[view].any()][-1]
        assert latest == VIEWS - 1, "the box is given in the latest keyframe"
        ys, xs = np.nonzero(mug.masks[latest])
        pad = 6
        box = RegionOfInterest(x_offset=int(xs.min()) - pad, y_offset=int(ys.min()) - pad,
                               width=int(np.ptp(xs)) + 2 * pad, height=int(np.ptp(ys)) + 2 * pad)
        point_pub.publish(msg)
        box_pub.publish(box)
        wait_for(lambda: len(node.prompts) == 2, 10.0, "the two prompts in the node")
        response = call_trigger(reconstruct, PIPELINE_TIMEOUT_S)
        assert response.success, response.message
        assert response.message.startswith("2 object(s) [pointed_0, pointed_1]"), response.message
        truth = _true_centres(scene)
        for child, obj in (("pointed_0", 1), ("pointed_1", 0)):
            T = node.tf.transforms[child]          # what /tf_static carries
            t = np.array([T.transform.translation.x, T.transform.translation.y,
                          T.transform.translation.z])
            assert np.linalg.norm(t - truth[obj]) < MAX_CENTRE_ERROR_M, (child, t, truth[obj])
    finally:
        for n in (node, peer):
            executor.remove_node(n)
            n.destroy_node()
