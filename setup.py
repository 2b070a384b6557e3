from setuptools import find_packages, setup

package_name = "sparp_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(include=["sparp_ros", "sparp_ros.*"]),
    package_data={"sparp_ros": ["data/*", "data/**/*", "model/weights/**/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", ["launch/sparp.launch.py"]),
        ("share/" + package_name + "/config", ["config/sparp.yaml"]),
        ("share/" + package_name + "/rviz", ["rviz/sparp.rviz"]),
    ],
    install_requires=["numpy", "opencv-python-headless", "scipy", "trimesh"],
    zip_safe=True,
    maintainer="sparp_ros developers",
    description="Object pose and mesh from a few RGB(-D) keyframes for ROS 2 (SpaRP, with depth fusion and TF)",
    license="Apache-2.0",
    entry_points={"console_scripts": [
        "sparp-ros = sparp_ros.cli:main",
        "sparp_node = sparp_ros.ros.run:main",
    ]},
)
