"""Every object on the table over real DDS: a 3-object tabletop (noisy depth, camera poses on /tf,
no masks) played to the node with ``use_mask: false``; one trigger reconstructs all three, each
on its own TF frame ``sparp_object_<id>`` that a listener started after the trigger finds, placed
where the object stands; a second trigger keeps the ids; ``~/reset`` forgets them."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh

pytest.importorskip("rclpy")
pytest.importorskip("tf2_msgs.msg")
pytest.importorskip("sparp_ros_msgs.msg")
from std_srvs.srv import Trigger  # noqa: E402

OBJECTS = ("ACE_Coffee_Mug_Kristen_16_oz_cup", "Cole_Hardware_Hammer_Black", "Folic_Acid")
VIEWS = 4
WORLD = "world"
MAX_CENTRE_ERROR_M = 0.02          # object frame origin vs the true mesh's box centre, in world
PIPELINE_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def scene(objects_dir, tmp_path_factory):
    from sparp_ros.render.depth_noise import STEREO_DEFAULT
    from sparp_ros.render.scene import render_tabletop

    return render_tabletop([objects_dir / f"{n}.glb" for n in OBJECTS],
                           tmp_path_factory.mktemp("table"), views=VIEWS, seed=5,
                           depth_noise=STEREO_DEFAULT, width=480, height=360)


@pytest.fixture(scope="module")
def run(ros_context, executor, scene, wait_for, call_trigger):
    """Node + player + client in one process; play once, trigger twice; yields what was seen."""
    import rclpy
    from rclpy.parameter import Parameter
    from sparp_ros_msgs.msg import ObjectReconstructionArray
    from visualization_msgs.msg import MarkerArray

    from sparp_ros.ros.node import RESULT_QOS, SparpNode
    from sparp_ros.ros.player import play

    node = SparpNode(context=ros_context, parameter_overrides=[
        Parameter("use_mask", value=False), Parameter("mesh", value=True),
        Parameter("isolate_mesh", value=False), Parameter("world_frame", value=WORLD),
        Parameter("publish_in_world_frame", value=True), Parameter("sync_timeout_s", value=5.0)])
    player = rclpy.create_node("sparp_objects_test_player", context=ros_context)
    client = rclpy.create_node("sparp_objects_test_client", context=ros_context)
    arrays, marker_arrays = [], []
    client.create_subscription(ObjectReconstructionArray, "/sparp/objects", arrays.append, RESULT_QOS)
    client.create_subscription(MarkerArray, "/sparp/objects/markers", marker_arrays.append, RESULT_QOS)
    reconstruct = client.create_client(Trigger, "/sparp_node/reconstruct")
    reset = client.create_client(Trigger, "/sparp_node/reset")
    nodes = [node, player, client]
    for n in nodes:
        executor.add_node(n)
    try:
        play(scene.capture.root, node=player, rate_hz=5.0, world_frame=WORLD)
        wait_for(lambda: len(node.buffer) == VIEWS, 30.0, f"{VIEWS} keyframes in the node")
        first = call_trigger(reconstruct, PIPELINE_TIMEOUT_S)
        assert first.success, first.message
        wait_for(lambda: bool(arrays) and bool(marker_arrays), 10.0, "the objects' messages")
        array_after_first = arrays[-1]
        second = call_trigger(reconstruct, PIPELINE_TIMEOUT_S)
        assert second.success, second.message
        # a listener that starts after both triggers
        from sparp_ros.ros.tf_listener import TransformListener
        from sparp_ros.tf_buffer import TransformBuffer

        late = rclpy.create_node("sparp_objects_late_listener", context=ros_context)
        buffer = TransformBuffer()
        listener = TransformListener(late, buffer)
        executor.add_node(late)
        nodes.append(late)
        frames = [f"sparp_object_{i}" for i in range(len(OBJECTS))]
        found = {}
        for child in frames:
            found[child] = buffer.wait_for(WORLD, child, None, 10.0)
        tracks_before_reset = [t.id for t in node.objects.tracker.tracks]
        markers_before_reset = marker_arrays[-1]
        after_reset = call_trigger(reset, 10.0)
        wait_for(lambda: marker_arrays[-1] is not markers_before_reset, 10.0, "the reset's markers")
        listener.destroy()
        yield dict(first=first, second=second, array=array_after_first, markers=markers_before_reset,
                   markers_after_reset=marker_arrays[-1],
                   found=found, tracks=tracks_before_reset, reset=after_reset, node=node)
    finally:
        for n in nodes:
            executor.remove_node(n)
            n.destroy_node()


def _true_centres(scene) -> list[np.ndarray]:
    """Each object's resting-box centre in the world (what the object frame's origin estimates)."""
    from sparp_ros.geometry.fusion import resting_box

    out = []
    for o in scene.objects:
        mesh = trimesh.load(o.mesh_path, force="mesh")
        out.append(resting_box(mesh.vertices @ o.T_world_object[:3, :3].T + o.T_world_object[:3, 3])[0])
    return out


def test_every_object_gets_a_frame_a_late_listener_finds(run):
    assert run["first"].message.startswith("3 object(s) [sparp_object_0, sparp_object_1, "
                                           "sparp_object_2]"), run["first"].message
    for child, T in run["found"].items():
        assert T is not None, f"a late listener did not find {child}"


def test_each_frame_stands_where_its_object_stands(run, scene):
    truth = _true_centres(scene)
    errors = []
    for child, T in run["found"].items():
        d = [float(np.linalg.norm(T[:3, 3] - c)) for c in truth]
        errors.append(min(d))
    print(f"\nobject frame origins vs true resting-box centres (m): {[round(e, 4) for e in errors]}")
    assert max(errors) < MAX_CENTRE_ERROR_M, errors
    # three distinct objects, not one object thrice
    origins = np.array([T[:3, 3] for T in run["found"].values()])
    assert min(np.linalg.norm(origins[i] - origins[j]) for i in range(3) for j in range(i + 1, 3)) > 0.05


def test_ids_stay_over_two_triggers_and_reset_forgets_them(run):
    assert run["second"].message.startswith("3 object(s) [sparp_object_0, sparp_object_1, "
                                            "sparp_object_2]"), run["second"].message
    assert run["tracks"] == [0, 1, 2]
    assert run["reset"].success and "3 object ids" in run["reset"].message
    assert run["node"].objects.tracker.tracks == []
    assert {m.action for m in run["markers_after_reset"].markers} == {3}      # DELETEALL only


def test_the_array_and_the_markers_carry_every_object(run):
    array, markers = run["array"], run["markers"]
    assert sorted(o.object_id for o in array.objects) == ["sparp_object_0", "sparp_object_1",
                                                         "sparp_object_2"]
    assert array.header.frame_id == WORLD
    for o in array.objects:
        assert len(o.mesh.vertices) > 100 and any(o.vertex_measured)
        assert 0.05 < o.scale < 0.5 and o.scale_source == "depth"
    from visualization_msgs.msg import Marker

    meshes = [m for m in markers.markers if m.type == Marker.TRIANGLE_LIST]
    labels = [m for m in markers.markers if m.type == Marker.TEXT_VIEW_FACING]
    assert sorted(m.id for m in meshes) == [0, 1, 2]
    assert sorted(m.text for m in labels) == ["sparp_object_0", "sparp_object_1", "sparp_object_2"]
    assert markers.markers[0].action == Marker.DELETEALL     # objects of earlier triggers go

