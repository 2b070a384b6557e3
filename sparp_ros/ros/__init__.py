"""The ROS 2 edge of sparp_ros: everything that imports rclpy or ROS message types lives here.

The node (``node``, ``lifecycle_node``, its parameter table ``params``), the message conversions
(``messages``), the TF listener (``tf_listener``), the capture player (``player``), the end-to-end
demo (``demo``) and the rosbag2 reader (``bag``). Why a package of its own: the perception code
(``sparp_ros.pipeline`` and everything it imports) must load and be testable without ROS installed
(``test/test_layers.py`` checks that importing the pipeline loads no rclpy), and a reader of the
tree should see at a glance where ROS starts.
"""
