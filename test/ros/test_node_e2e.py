"""End to end over real DDS: a rendered capture is played as camera topics, the node keeps the
keyframes, ``~/reconstruct`` runs the (oracle) pipeline, and a client receives the pose, TF,
marker, mesh and our message; a listener started after it still gets the object's TF (latched on
/tf_static). The same in a namespace. Also ``~/reset`` and the busy answer."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
from geometry_msgs.msg import PoseStamped  # noqa: E402
from shape_msgs.msg import Mesh  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from visualization_msgs.msg import Marker  # noqa: E402

from sparp_ros.ros import messages  # noqa: E402
from sparp_ros.conventions import CanonicalFrame, invert_rigid, rotation_angle_deg  # noqa: E402

OBJECT = "Vans_Cereal_Honey_Nut_Crunch_11_oz_box"
VIEWS = 4
MAX_ROTATION_ERROR_DEG = 2.0
MAX_TRANSLATION_ERROR = 0.03       # of the camera-object distance (metric scale from depth)
PIPELINE_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def capture(objects_dir, tmp_path_factory):
    from sparp_ros.render import render_capture
    return render_capture(objects_dir / f"{OBJECT}.glb", tmp_path_factory.mktemp("capture"),
                          views=VIEWS, seed=11)


class Collector:
    """A client node that records the last message on every output topic."""

    def __init__(self, context):
        import rclpy
        from sparp_ros_msgs.msg import ObjectReconstruction
        from tf2_msgs.msg import TFMessage

        from sparp_ros.ros.node import RESULT_QOS
        from sparp_ros.ros.tf_listener import TF_STATIC_QOS

        self.node = rclpy.create_node("sparp_test_client", context=context)
        self.msgs: dict[str, object] = {}
        self.events = {k: threading.Event() for k in ("pose", "tf", "marker", "mesh", "recon")}
        for key, (msg_type, topic, qos) in {
            "pose": (PoseStamped, "/sparp/object_pose", RESULT_QOS),
            "marker": (Marker, "/sparp/mesh_marker", RESULT_QOS),
            "mesh": (Mesh, "/sparp/mesh", RESULT_QOS),
            "recon": (ObjectReconstruction, "/sparp/reconstruction", RESULT_QOS),
            "tf": (TFMessage, "/tf_static", TF_STATIC_QOS),
        }.items():
            self.node.create_subscription(msg_type, topic, self._store(key), qos)
        self.reconstruct = self.node.create_client(Trigger, "/sparp_node/reconstruct")
        self.reset = self.node.create_client(Trigger, "/sparp_node/reset")

    def _store(self, key):
        def callback(msg):
            self.msgs[key] = msg
            self.events[key].set()
        return callback


@pytest.fixture(scope="module")
def system(ros_context, executor, capture):
    """Node + player + client in one process, talking over DDS, spun by one executor."""
    import rclpy

    from sparp_ros.ros.node import SparpNode

    from rclpy.parameter import Parameter

    # Reliable inputs: the player sends each view once, so a lost best-effort image is a lost view.
    node = SparpNode(context=ros_context,
                     parameter_overrides=[Parameter("backend", value="oracle"),
                                          Parameter("reliable_inputs", value=True),
                                          Parameter("sync_timeout_s", value=5.0)])
    player = rclpy.create_node("sparp_test_player", context=ros_context)
    client = Collector(ros_context)
    for n in (node, player, client.node):
        executor.add_node(n)
    try:
        yield node, player, client
    finally:
        for n in (node, player, client.node):
            executor.remove_node(n)
            n.destroy_node()


@pytest.fixture(scope="module")
def result(system, capture, wait_for, call_trigger):
    """Play the capture once, wait for the keyframes, trigger, collect every output."""
    from sparp_ros.ros.player import play

    node, player, client = system
    published = play(capture.root, node=player, rate_hz=5.0)
    assert list(dict.fromkeys(i for i, _ in published)) == list(range(VIEWS))
    wait_for(lambda: len(node.buffer) == VIEWS, 20.0, f"{VIEWS} keyframes in the node")
    t0 = time.monotonic()
    response = call_trigger(client.reconstruct, PIPELINE_TIMEOUT_S)
    elapsed = time.monotonic() - t0
    assert response.success, response.message
    for key, event in client.events.items():
        assert event.wait(10.0), f"no message on the {key} output"
    stamp_to_view = {(s.sec, s.nanosec): i for i, s in published}
    return response, client.msgs, stamp_to_view, elapsed


def _gt_T_camera_object(capture, view: int, reference: int) -> np.ndarray:
    """Ground truth in *our* object frame, whose x axis points at the reference keyframe's camera
    (conventions): T_camera_object = T_camera_mesh @ T_mesh_object."""
    c = capture.gt.extra["canonical"]
    center = np.asarray(c["center"], float)
    d = invert_rigid(capture.gt.T_camera_object[reference])[:3, 3] - center
    azimuth = float(np.arctan2(d[1], d[0]))
    if reference == 0:
        assert abs(azimuth - c["azimuth"]) < 1e-6
    frame = CanonicalFrame(center=center, diagonal=float(c["diagonal"]), azimuth=azimuth)
    return capture.gt.T_camera_object[view] @ frame.T_mesh_object


def test_pose_stamped_matches_ground_truth(result, capture):
    response, msgs, stamp_to_view, elapsed = result
    recon = msgs["recon"]
    views = [stamp_to_view[(s.sec, s.nanosec)] for s in recon.view_stamps]
    assert views == list(range(VIEWS)) and all(recon.view_ok)
    pose: PoseStamped = msgs["pose"]
    published = stamp_to_view[(pose.header.stamp.sec, pose.header.stamp.nanosec)]
    assert published == VIEWS - 1, "the pose must be in the most recent keyframe's camera"
    assert pose.header.frame_id == capture.frames[published].camera.frame_id
    T_est = messages.pose_to_matrix(pose.pose)
    T_gt = _gt_T_camera_object(capture, published, reference=views[0])
    rot_err = rotation_angle_deg(T_est[:3, :3] @ T_gt[:3, :3].T)
    trans_err = np.linalg.norm(T_est[:3, 3] - T_gt[:3, 3]) / np.linalg.norm(T_gt[:3, 3])
    print(f"\ne2e over DDS: rotation error {rot_err:.3f} deg, translation error "
          f"{100 * trans_err:.2f} % ({1000 * np.linalg.norm(T_est[:3, 3] - T_gt[:3, 3]):.1f} mm), "
          f"trigger round trip {elapsed:.2f} s; {response.message}")
    assert rot_err < MAX_ROTATION_ERROR_DEG
    assert trans_err < MAX_TRANSLATION_ERROR
    assert recon.scale_source == "depth"
    assert abs(recon.scale / capture.gt.extra["canonical"]["diagonal"] - 1) < 0.03


def test_relative_rotations_of_every_view_match_ground_truth(result, capture):
    _, msgs, _, _ = result
    Rs = [messages.pose_to_matrix(p)[:3, :3] for p in msgs["recon"].view_poses]
    Rs_gt = [T[:3, :3] for T in capture.gt.T_camera_object]
    for i in range(VIEWS):
        for j in range(i + 1, VIEWS):
            err = rotation_angle_deg((Rs[i] @ Rs[j].T) @ (Rs_gt[i] @ Rs_gt[j].T).T)
            assert err < MAX_ROTATION_ERROR_DEG, f"views {i},{j}: {err:.2f} deg"


def test_tf_marker_mesh_and_message_agree_with_the_pose(result):
    response, msgs, _, _ = result
    pose, (tf,) = msgs["pose"], msgs["tf"].transforms
    assert (tf.header.frame_id, tf.child_frame_id) == (pose.header.frame_id, "sparp_object")
    assert tf.header.stamp == pose.header.stamp
    np.testing.assert_allclose(messages.transform_to_matrix(tf), messages.pose_to_matrix(pose.pose), atol=1e-9)
    marker: Marker = msgs["marker"]
    assert marker.type == Marker.TRIANGLE_LIST and marker.header.frame_id == pose.header.frame_id
    assert len(marker.points) > 1000 and len(marker.points) % 3 == 0 and len(marker.colors) == len(marker.points)
    np.testing.assert_allclose(messages.pose_to_matrix(marker.pose), messages.pose_to_matrix(pose.pose), atol=1e-9)
    mesh: Mesh = msgs["mesh"]
    assert 3 * len(mesh.triangles) == len(marker.points)
    recon = msgs["recon"]
    assert len(recon.mesh.triangles) == len(mesh.triangles) and recon.backend == "oracle"
    assert recon.scale_source == "depth" and 0 <= recon.scale_uncertainty < 0.05
    assert "sparp_object" in response.message and "depth" in response.message


def test_mesh_resource_marker_points_at_the_written_mesh(result, system, call_trigger, tmp_path):
    """mesh_marker=mesh_resource (set at run time): the marker carries no triangles, only the URI
    of the .glb written to mesh_output_dir, which loads back as the published mesh."""
    import trimesh
    from rclpy.parameter import Parameter
    node, _, client = system
    client.events["marker"].clear()
    out = node.set_parameters([Parameter("mesh_output_dir", value=str(tmp_path)),
                               Parameter("mesh_marker", value="mesh_resource")])
    assert all(r.successful for r in out), [r.reason for r in out]
    try:
        response = call_trigger(client.reconstruct, PIPELINE_TIMEOUT_S)
        assert response.success, response.message
        assert client.events["marker"].wait(10.0)
        marker: Marker = client.msgs["marker"]
        assert marker.type == Marker.MESH_RESOURCE and not marker.points
        assert marker.mesh_resource == (tmp_path / "sparp_object.glb").resolve().as_uri()
        assert marker.mesh_use_embedded_materials
        loaded = trimesh.load(tmp_path / "sparp_object.glb", force="mesh")
        assert len(loaded.faces) == len(client.msgs["mesh"].triangles)
        bad = node.set_parameters([Parameter("mesh_marker", value="points")])
        assert not bad[0].successful and "mesh_marker must be one of" in bad[0].reason
    finally:
        node.set_parameters([Parameter("mesh_output_dir", value=""),
                             Parameter("mesh_marker", value="triangle_list")])


def test_busy_then_reset(result, system, call_trigger, wait_for):
    """Two requests at once: one runs, the other is answered busy. Then reset empties the
    buffer and a trigger says there is nothing to reconstruct."""
    _, _, client = system
    futures = [client.reconstruct.call_async(Trigger.Request()) for _ in range(2)]
    wait_for(lambda: all(f.done() for f in futures), PIPELINE_TIMEOUT_S, "both reconstruct responses")
    responses = sorted((f.result() for f in futures), key=lambda r: r.success)
    assert [r.success for r in responses] == [False, True], [r.message for r in responses]
    assert responses[0].message.startswith("busy")
    reset = call_trigger(client.reset, 10.0)
    assert reset.success and reset.message == f"cleared {VIEWS} keyframes"
    empty = call_trigger(client.reconstruct, 10.0)
    assert not empty.success and empty.message.startswith("no keyframes yet")


def test_a_keyframe_whose_object_is_hidden_is_left_out_not_the_capture(result, system, capture,
                                                                        call_trigger, wait_for,
                                                                        tmp_path):
    """The object hidden from one camera: keyframe 1's mask on the mask topic is empty. The node
    keeps the keyframe and reconstructs from the other three; our message marks keyframe 1 not
    ok, the other views' poses match the truth as before, and the pose is published."""
    import shutil

    import cv2

    from sparp_ros.ros.player import play

    node, player, client = system
    call_trigger(client.reset, 10.0)
    root = tmp_path / "hidden"
    shutil.copytree(capture.root, root)
    mask_1 = root / "masks" / "001.png"
    cv2.imwrite(str(mask_1), np.zeros_like(cv2.imread(str(mask_1), cv2.IMREAD_GRAYSCALE)))
    for event in client.events.values():
        event.clear()
    published = play(root, node=player, rate_hz=5.0)
    wait_for(lambda: len(node.buffer) == VIEWS, 20.0, f"{VIEWS} keyframes in the node")
    response = call_trigger(client.reconstruct, PIPELINE_TIMEOUT_S)
    assert response.success, response.message
    assert "3/4 views posed" in response.message
    assert "keyframes 1 left out (object mask has 0 pixels" in response.message, response.message
    assert client.events["recon"].wait(10.0) and client.events["pose"].wait(10.0)
    recon = client.msgs["recon"]
    stamp_to_view = {(s.sec, s.nanosec): i for i, s in published}
    assert [stamp_to_view[(s.sec, s.nanosec)] for s in recon.view_stamps] == list(range(VIEWS))
    assert list(recon.view_ok) == [True, False, True, True]
    Rs = {i: messages.pose_to_matrix(recon.view_poses[i])[:3, :3] for i in (0, 2, 3)}
    Rs_gt = [T[:3, :3] for T in capture.gt.T_camera_object]
    for i, j in ((0, 2), (0, 3), (2, 3)):
        err = rotation_angle_deg((Rs[i] @ Rs[j].T) @ (Rs_gt[i] @ Rs_gt[j].T).T)
        assert err < MAX_ROTATION_ERROR_DEG, f"views {i},{j}: {err:.2f} deg"
    assert call_trigger(client.reset, 10.0).success


def _late_listener(context, executor, wait_for, child: str):
    """The transform of frame ``child`` that a /tf_static listener created now (after the
    reconstruction) receives, subscribed as tf2's listener does."""
    import rclpy
    from tf2_msgs.msg import TFMessage

    from sparp_ros.ros.tf_listener import TF_STATIC_QOS

    late = rclpy.create_node("late_tf_listener", context=context)
    got = []
    late.create_subscription(TFMessage, "/tf_static", got.append, TF_STATIC_QOS)
    executor.add_node(late)
    found = []

    def has_child() -> bool:
        found.extend(t for m in list(got) for t in m.transforms if t.child_frame_id == child)
        return bool(found)
    try:
        wait_for(has_child, 10.0, f"{child} on the latched /tf_static")
    finally:
        executor.remove_node(late)
        late.destroy_node()
    return found[-1]


def test_a_listener_started_later_still_gets_the_object_frame(result, ros_context, executor,
                                                              wait_for):
    _, msgs, _, _ = result
    tf = _late_listener(ros_context, executor, wait_for, "sparp_object")
    np.testing.assert_allclose(messages.transform_to_matrix(tf),
                               messages.pose_to_matrix(msgs["pose"].pose), atol=1e-9)


def test_a_node_in_a_namespace_resolves_its_names_there(result, capture, ros_context, executor,
                                                        wait_for, call_trigger):
    """The same capture through a node in /arm1: its inputs, services and outputs resolve under
    /arm1, and its object frame is arm1/sparp_object, latched on /tf_static beside the root
    node's sparp_object."""
    import rclpy
    from rclpy.parameter import Parameter

    from sparp_ros.ros.node import RESULT_QOS, SparpNode
    from sparp_ros.ros.player import play

    ns = "/arm1"
    node = SparpNode(context=ros_context, namespace=ns, parameter_overrides=[
        Parameter("backend", value="oracle"), Parameter("mesh", value=False),
        Parameter("reliable_inputs", value=True), Parameter("sync_timeout_s", value=5.0)])
    peer = rclpy.create_node("arm1_peer", namespace=ns, context=ros_context)
    poses = []
    peer.create_subscription(PoseStamped, "sparp/object_pose", poses.append, RESULT_QOS)
    reconstruct = peer.create_client(Trigger, "sparp_node/reconstruct")
    for n in (node, peer):
        executor.add_node(n)
    try:
        assert node.pose_pub.topic_name == "/arm1/sparp/object_pose"
        assert node._subscriptions_by_part["image"].topic_name == "/arm1/image"
        wait_for(lambda: "/arm1/sparp_node/reconstruct" in dict(peer.get_service_names_and_types()),
                 10.0, "the service /arm1/sparp_node/reconstruct in the ROS graph")
        play(capture.root, node=peer, rate_hz=5.0)          # publishes /arm1/image, ...
        wait_for(lambda: len(node.buffer) == VIEWS, 20.0, f"{VIEWS} keyframes in /arm1")
        response = call_trigger(reconstruct, PIPELINE_TIMEOUT_S)
        assert response.success and "pose of arm1/sparp_object" in response.message, response.message
        wait_for(lambda: bool(poses), 10.0, "the pose on /arm1/sparp/object_pose")
        tf = _late_listener(ros_context, executor, wait_for, "arm1/sparp_object")
        assert tf.header.frame_id == poses[-1].header.frame_id
    finally:
        for n in (node, peer):
            executor.remove_node(n)
            n.destroy_node()
