"""sparp_ros: sparse-view object pose and mesh (SpaRP) for ROS 2."""
__version__ = "0.1.0"
