"""The launch file's wiring and the RViz config, without a ROS install: ``launch`` and
``launch_ros`` are replaced by recorders (they are not available as wheels), so the test checks
what the file asks for: the plain or the lifecycle node with its flags, the parameters file and
remappings, RViz with rviz/sparp.rviz; and that the RViz config shows the node's outputs and is
installed."""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


class _Action:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _Config:
    """LaunchConfiguration: ``perform`` reads the launch arguments given to the test."""

    def __init__(self, name: str):
        self.name = name

    def perform(self, context: dict) -> str:
        return context[self.name]


@pytest.fixture
def launch_module(monkeypatch):
    kinds = {"launch": {"LaunchDescription": _Action},
             "launch.actions": {"DeclareLaunchArgument": _Action, "OpaqueFunction": _Action},
             "launch.conditions": {"IfCondition": _Action},
             "launch.substitutions": {"LaunchConfiguration": _Config},
             "launch_ros": {}, "launch_ros.actions": {"Node": type("Node", (_Action,), {}),
                                                      "LifecycleNode": type("LifecycleNode", (_Action,), {})},
             "ament_index_python": {}, "ament_index_python.packages": {
                 "get_package_share_directory": lambda package: f"/opt/share/{package}"}}
    for name, attrs in kinds.items():
        monkeypatch.setitem(sys.modules, name, types.SimpleNamespace(**attrs))
    spec = importlib.util.spec_from_file_location("sparp_launch", REPO / "launch" / "sparp.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _node(module, **arguments):
    description = module.generate_launch_description()
    actions = description.args[0]
    declared = {a.args[0]: a.kwargs["default_value"] for a in actions
                if type(a).__name__ == "_Action" and a.args}
    context = {**declared, **arguments}
    opaque = next(a for a in actions if "function" in a.kwargs)
    (node,) = opaque.kwargs["function"](context)
    rviz = next(a for a in actions if a.kwargs.get("executable") == "rviz2")
    return node, rviz, declared


def test_launch_starts_the_plain_node_by_default(launch_module):
    node, rviz, declared = _node(launch_module)
    assert type(node).__name__ == "Node" and "arguments" not in node.kwargs
    assert {"lifecycle", "autostart", "rviz", "params_file", "image"} <= set(declared)
    assert node.kwargs["executable"] == "sparp_node" and node.kwargs["name"] == "sparp_node"
    assert node.kwargs["parameters"][0].name == "params_file"
    assert [r[0] for r in node.kwargs["remappings"]] == ["image", "camera_info", "depth", "mask"]
    assert rviz.kwargs["arguments"] == ["-d", "/opt/share/sparp_ros/rviz/sparp.rviz"]
    assert rviz.kwargs["condition"].args[0].name == "rviz"


@pytest.mark.parametrize("autostart, flags", [("false", ["--lifecycle"]),
                                              ("true", ["--lifecycle", "--autostart"])])
def test_launch_lifecycle_true_starts_the_managed_node(launch_module, autostart, flags):
    node, _, _ = _node(launch_module, lifecycle="true", autostart=autostart)
    assert type(node).__name__ == "LifecycleNode" and node.kwargs["arguments"] == flags
    assert node.kwargs["namespace"].name == "namespace" and node.kwargs["name"] == "sparp_node"


def test_launch_namespace_argument_moves_the_node_and_its_relative_mask(launch_module):
    """``namespace:=arm1``: the node's relative names (and the relative default of ``mask``)
    resolve under /arm1; by default the namespace is the root, as before."""
    node, _, declared = _node(launch_module, namespace="arm1")
    assert declared["namespace"] == "" and node.kwargs["namespace"].perform({"namespace": "arm1"}) == "arm1"
    remaps = {name: target for name, target in node.kwargs["remappings"]}
    assert declared["mask"] == "sparp/mask" and remaps["mask"].name == "mask"
    assert declared["image"].startswith("/")          # a camera topic stays where the driver is


def test_rviz_config_shows_image_mesh_pose_and_tf_and_is_installed():
    config = yaml.safe_load((REPO / "rviz" / "sparp.rviz").read_text())
    displays = {d["Class"].split("/")[-1]: d for d in config["Visualization Manager"]["Displays"]}
    assert {"Image", "Marker", "Pose", "TF"} <= set(displays)
    assert displays["Image"]["Topic"]["Value"] == "/camera/color/image_raw"    # launch default
    for kind, topic in (("Marker", "/sparp/mesh_marker"), ("Pose", "/sparp/object_pose")):
        assert displays[kind]["Topic"]["Value"] == topic
        assert displays[kind]["Topic"]["Durability Policy"] == "Transient Local"   # RESULT_QOS
    assert '("share/" + package_name + "/rviz", ["rviz/sparp.rviz"])' in (REPO / "setup.py").read_text()
