"""Launch the SpaRP node with its parameters from config/sparp.yaml.

    ros2 launch sparp_ros sparp.launch.py image:=/camera/color/image_raw \
        camera_info:=/camera/color/camera_info depth:=/camera/aligned_depth_to_color/image_raw
    ros2 launch sparp_ros sparp.launch.py lifecycle:=true [autostart:=true] [rviz:=true]
    ros2 launch sparp_ros sparp.launch.py namespace:=arm1 image:=/arm1/camera/image_raw ...

``namespace:=arm1`` puts the node's names under /arm1 (``/arm1/sparp/object_pose``,
``/arm1/sparp_node/reconstruct``, TF frame ``arm1/sparp_object``), so two nodes run side by side;
the default (empty) gives ``/sparp/object_pose``, ``/sparp_node/reconstruct``, ``sparp_object``.

``lifecycle:=true`` starts the managed node (unconfigured until a lifecycle manager, or
``ros2 lifecycle set /sparp_node configure`` then ``activate``, drives it; ``autostart:=true``
configures and activates it at start-up). ``rviz:=true`` also opens RViz with rviz/sparp.rviz.
This file only wires (STYLE 9): every parameter lives in the YAML file.
"""
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

PACKAGE = "sparp_ros"
NODE_NAME = "sparp_node"
SHARE = get_package_share_directory(PACKAGE)
DEFAULT_PARAMS = f"{SHARE}/config/sparp.yaml"
RVIZ_CONFIG = f"{SHARE}/rviz/sparp.rviz"

# (launch argument = the node's input topic, default remapping target, description)
TOPICS = (
    ("image", "/camera/color/image_raw", "RGB image topic (rgb8/bgr8/rgba8/bgra8/mono8)"),
    ("camera_info", "/camera/color/camera_info", "CameraInfo of the image"),
    ("depth", "/camera/aligned_depth_to_color/image_raw",
     "depth aligned to the image (16UC1 mm or 32FC1 m)"),
    ("mask", "sparp/mask", "object mask (mono8, object > 127); relative: <namespace>/sparp/mask"),
)
# (launch argument, default, description)
SWITCHES = (
    ("namespace", "", "namespace of the node's topics, services and TF frame (empty: root)"),
    ("lifecycle", "false", "run the managed (lifecycle) node, which starts unconfigured"),
    ("autostart", "false", "with lifecycle:=true, configure and activate it at start-up"),
    ("rviz", "false", "also start RViz with rviz/sparp.rviz"),
)


def _is_true(name: str, context) -> bool:
    return LaunchConfiguration(name).perform(context).strip().lower() in ("true", "1", "yes")


def _sparp_node(context):
    """The plain node, or the lifecycle node (``--lifecycle [--autostart]``)."""
    common = dict(package=PACKAGE, executable="sparp_node", name=NODE_NAME,
                  namespace=LaunchConfiguration("namespace"),
                  output="screen", parameters=[LaunchConfiguration("params_file")],
                  remappings=[(name, LaunchConfiguration(name)) for name, _, _ in TOPICS])
    if not _is_true("lifecycle", context):
        return [Node(**common)]
    flags = ["--lifecycle"] + (["--autostart"] if _is_true("autostart", context) else [])
    return [LifecycleNode(arguments=flags, **common)]


def generate_launch_description() -> LaunchDescription:
    args = [DeclareLaunchArgument("params_file", default_value=DEFAULT_PARAMS,
                                  description="YAML with the sparp_node parameters")]
    args += [DeclareLaunchArgument(name, default_value=default, description=description)
             for name, default, description in TOPICS + SWITCHES]
    rviz = Node(package="rviz2", executable="rviz2", arguments=["-d", RVIZ_CONFIG],
                output="screen", condition=IfCondition(LaunchConfiguration("rviz")))
    return LaunchDescription(args + [OpaqueFunction(function=_sparp_node), rviz])
