"""An RGB-only camera and no detector over real DDS: ``use_depth: false, use_mask: false`` selects
the learned segmenter (``segmentation: auto``); a trigger on a one-object tabletop reconstructs
the object it finds and publishes it on its own frame."""
from __future__ import annotations

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("tf2_msgs.msg")
pytest.importorskip("sparp_ros_msgs.msg")
from std_srvs.srv import Trigger  # noqa: E402

OBJECT = "ACE_Coffee_Mug_Kristen_16_oz_cup"
VIEWS = 3


def test_rgb_only_keyframes_are_segmented_by_the_learned_network(
        objects_dir, tmp_path, ros_context, executor, wait_for, call_trigger):
    import rclpy
    from rclpy.parameter import Parameter

    from sparp_ros.render.scene import render_tabletop
    from sparp_ros.ros.node import SparpNode
    from sparp_ros.ros.player import play

    render_tabletop([objects_dir / f"{OBJECT}.glb"], tmp_path / "table", views=VIEWS, seed=2,
                    width=480, height=360)
    node = SparpNode(context=ros_context, parameter_overrides=[
        Parameter("use_depth", value=False), Parameter("use_mask", value=False),
        Parameter("mesh", value=False), Parameter("sync_timeout_s", value=5.0)])
    peer = rclpy.create_node("sparp_learned_test_peer", context=ros_context)
    reconstruct = peer.create_client(Trigger, "/sparp_node/reconstruct")
    for n in (node, peer):
        executor.add_node(n)
    try:
        play(tmp_path / "table", node=peer, rate_hz=5.0, depth=False, tf=False)
        wait_for(lambda: len(node.buffer) == VIEWS, 30.0, f"{VIEWS} keyframes in the node")
        response = call_trigger(reconstruct, 120.0)
        assert response.success, response.message
        assert response.message.startswith("1 object(s) [sparp_object_0]"), response.message
        assert "views posed" in response.message and "(prior)" in response.message
        assert "sparp_object_0" in node.tf.transforms
    finally:
        for n in (node, peer):
            executor.remove_node(n)
            n.destroy_node()
