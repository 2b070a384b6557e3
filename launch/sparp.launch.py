"""Launch the SpaRP node with its parameters from config/sparp.yaml.

    ros2 launch sparp_ros sparp.launch.py image:=/camera/color/image_raw \
        camera_info:=/camera/color/camera_info depth:=/camera/aligned_depth_to_color/image_raw

This file only wires (STYLE 9): every parameter lives in the YAML file.
"""
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "sparp_ros"
DEFAULT_PARAMS = f"{get_package_share_directory(PACKAGE)}/config/sparp.yaml"

# (launch argument = the node's input topic, default remapping target, description)
TOPICS = (
    ("image", "/camera/color/image_raw", "RGB image topic (rgb8/bgr8/rgba8/bgra8/mono8)"),
    ("camera_info", "/camera/color/camera_info", "CameraInfo of the image"),
    ("depth", "/camera/aligned_depth_to_color/image_raw",
     "depth aligned to the image (16UC1 mm or 32FC1 m)"),
    ("mask", "/sparp/mask", "object mask (mono8, object > 127)"),
)


def generate_launch_description() -> LaunchDescription:
    args = [DeclareLaunchArgument("params_file", default_value=DEFAULT_PARAMS,
                                  description="YAML with the sparp_node parameters")]
    args += [DeclareLaunchArgument(name, default_value=default, description=description)
             for name, default, description in TOPICS]
    node = Node(
        package=PACKAGE,
        executable="sparp_node",
        name="sparp_node",
        output="screen",
        parameters=[LaunchConfiguration("params_file")],
        remappings=[(name, LaunchConfiguration(name)) for name, _, _ in TOPICS],
    )
    return LaunchDescription(args + [node])
