"""ROS-free geometry: NOCS → pose (PnP), metric scale, mesh."""
