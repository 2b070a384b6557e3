"""Parameters set at run time over real DDS (``~/set_parameters``, as ``ros2 param set`` does) on
the plain node: the safe ones apply at once, the unsafe ones are refused with the reason and
leave the node as it was; the descriptors carry the ranges (``ros2 param describe``) and a float
parameter takes an integer. (The lifecycle node's state-dependent rules: test_lifecycle.py.)"""
from __future__ import annotations

import re

import pytest

pytest.importorskip("rclpy")
from rcl_interfaces.srv import DescribeParameters, SetParameters  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from sparp_ros.ros.player import PLAYER_QOS  # noqa: E402


@pytest.fixture
def rig(request, ros_context, executor, spinning):
    """A plain node (oracle backend; image, camera_info, oracle_nocs inputs) in its own namespace,
    and a peer with its input publishers and service clients."""
    import rclpy

    from sparp_ros.ros.node import SparpNode

    ns = "/" + re.sub(r"\W", "_", request.node.name)
    node = SparpNode(context=ros_context, namespace=ns, parameter_overrides=[
        Parameter("backend", value="oracle"), Parameter("use_depth", value=False),
        Parameter("use_mask", value=False),
        Parameter("sync_timeout_s", value=2)])     # an integer for a float, as in YAML``: 2``
    peer = rclpy.create_node("peer", namespace=ns, context=ros_context)
    pubs = {p: peer.create_publisher(CameraInfo if p == "camera_info" else Image, p, PLAYER_QOS)
            for p in ("image", "camera_info", "oracle_nocs")}
    clients = {"params": peer.create_client(SetParameters, f"{ns}/sparp_node/set_parameters"),
               "describe": peer.create_client(DescribeParameters,
                                              f"{ns}/sparp_node/describe_parameters"),
               "reconstruct": peer.create_client(Trigger, f"{ns}/sparp_node/reconstruct")}
    with spinning(executor, node, peer):
        yield node, pubs, clients


def test_safe_parameters_apply_at_once(rig, wait_for, publish_frame, set_parameters, call_trigger):
    node, pubs, clients = rig
    for seed in range(3):
        publish_frame(node, pubs, seed=seed)
        wait_for(lambda: len(node.buffer) == seed + 1, 10.0, f"keyframe {seed + 1}")
    results = set_parameters(clients["params"], max_keyframes=2, min_image_change=0.9,
                             sync_slop_s=0.01, size_prior_m=0.5, mesh=False, object_id="mug",
                             diagnostics_period_s=0.5, model_threads=2,
                             min_table_agreement=0.0, geometry_threads=2, light_turns=False,
                             min_print_matches=0)
    assert all(r.successful for r in results), [r.reason for r in results]
    # Keyframes: trimmed to the new bound (oldest first) and the new threshold decides.
    assert len(node.buffer) == 2 and node.buffer.config.min_image_change == 0.9
    publish_frame(node, pubs, seed=7)
    wait_for(lambda: node._images_seen == 4, 10.0, "the fourth image")
    assert len(node.buffer) == 2, "a frame no more than 0.9 different is not a new view"
    assert node.assembler.slop_s == 0.01 and node.object_id == "mug"
    assert node._diagnostics_timer.timer_period_ns == 500_000_000
    # The pipeline takes its live parameters at the next reconstruction.
    call_trigger(clients["reconstruct"], 30.0)
    assert node.pipeline.config.size_prior_m == 0.5 and node.pipeline.config.mesh is False
    assert node.pipeline.config.model_threads == 2
    assert node.pipeline.config.registration_min_table_agreement == 0.0
    assert node.pipeline.config.geometry_threads == 2
    assert node.pipeline.config.registration_light_turns is False
    assert node.pipeline.config.registration_min_print_matches == 0


REFUSED = {   # parameter: (value, what the reason says)
    "use_depth": (True, "changes the subscriptions"),
    "compressed_input": (True, "changes the subscriptions"),
    "reliable_inputs": (False, "changes the subscriptions"),
    "backend": ("model", "read when the model is loaded"),
    "weights": ("/tmp/other", "read when the model is loaded"),
    "max_keyframes": (9, "out of range. Min: 1, Max: 6"),           # rclpy, from the descriptor
    "diagnostics_period_s": (0.0, "diagnostics_period_s must be > 0"),   # ours: 0 is the edge
    "min_sharpness": (-1.0, "out of range"),
    "model_threads": (-1, "out of range. Min: 0, Max: 64"),
    "min_table_agreement": (1.5, "out of range"),
    "light_turns": ("yes", "Wrong parameter type"),
    "min_print_matches": (-1, "out of range. Min: 0, Max: 1000"),
    "geometry_threads": (-1, "out of range. Min: 0, Max: 64"),
    "size_prior_m": ("big", "Wrong parameter type"),
}


def test_unsafe_parameters_are_refused_with_the_reason(rig, set_parameters):
    node, _, clients = rig
    before = {name: node.get_parameter(name).value for name in REFUSED}
    subscriptions = dict(node._subscriptions_by_part)
    for name, (value, reason) in REFUSED.items():
        (result,) = set_parameters(clients["params"], **{name: value})
        assert not result.successful and reason in result.reason, (name, result.reason)
    assert {name: node.get_parameter(name).value for name in REFUSED} == before
    assert node.params["backend"] == "oracle" and node._subscriptions_by_part == subscriptions
    assert node.buffer.config.max_keyframes == 6
    # A refused parameter in a batch refuses the batch (SetParameters sets them one by one).
    results = set_parameters(clients["params"], min_image_change=0.3, use_mask=True)
    assert [r.successful for r in results] == [True, False]
    assert node.buffer.config.min_image_change == 0.3 and node.params["use_mask"] is False


def test_descriptors_carry_ranges_and_floats_take_integers(rig, set_parameters, wait_for):
    """What ``ros2 param describe`` shows: description, range (FloatingPointRange /
    IntegerRange), allowed values; ``ros2 param set ... size_prior_m 1`` is taken as 1.0, at
    start-up too (sync_timeout_s: 2 in the rig)."""
    node, _, clients = rig
    assert node.get_parameter("sync_timeout_s").value == 2.0
    assert node.assembler.timeout_s == 2.0
    wait_for(clients["describe"].service_is_ready, 10.0, "describe_parameters")
    future = clients["describe"].call_async(DescribeParameters.Request(
        names=["size_prior_m", "max_keyframes", "mesh_marker"]))
    wait_for(future.done, 10.0, "the descriptors")
    size, keyframes, marker = future.result().descriptors
    assert "bounding-box diagonal" in size.description
    assert (size.floating_point_range[0].from_value, size.floating_point_range[0].to_value) == (0.0, 10.0)
    assert (keyframes.integer_range[0].from_value, keyframes.integer_range[0].to_value,
            keyframes.integer_range[0].step) == (1, 6, 1)
    assert marker.additional_constraints == "one of: triangle_list, mesh_resource"
    (result,) = set_parameters(clients["params"], size_prior_m=1)
    assert result.successful, result.reason
    value = node.get_parameter("size_prior_m").value
    assert value == 1.0 and isinstance(value, float) and node.params["size_prior_m"] == 1.0
    (result,) = set_parameters(clients["params"], size_prior_m=11)
    assert not result.successful and "out of range" in result.reason
