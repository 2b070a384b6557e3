"""The managed (lifecycle) variant of the SpaRP node: ``sparp-ros node --lifecycle``.

The same core as ``node.SparpNode`` (``node.SparpNodeCore``), driven by the ROS 2 lifecycle
state machine (``~/change_state``, ``~/get_state``; lifecycle_msgs) instead of its constructor:

  unconfigured --configure--> inactive   load the model (STYLE 8), keyframe buffer, lifecycle
                                         publishers; missing, corrupt or pickle-based weights fail
                                         the transition: the node stays unconfigured, logs the
                                         reason and reports it on /diagnostics (ERROR)
  inactive --activate--> active          subscribe, offer ~/reconstruct and ~/reset, activate the
                                         publishers: frames are taken from now on
  active --deactivate--> inactive        unsubscribe and withdraw the services (a running
                                         reconstruction finishes first); keyframes are kept
  inactive --cleanup--> unconfigured     destroy the publishers, drop the keyframes, free the
                                         model and its GPU memory
  any --shutdown--> finalized            deactivate and clean up whatever is up

``/diagnostics`` and the parameter services work in every state. Input parameters (topics, QoS)
may change while inactive, model parameters (backend, weights, device) while unconfigured
(``node_params``).
"""
from __future__ import annotations

from typing import Any

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from .node import NODE_NAME, SparpNodeCore


class SparpLifecycleNode(SparpNodeCore, LifecycleNode):
    """See the module docstring; ``kwargs`` go to ``rclpy.lifecycle.LifecycleNode``."""

    managed = True

    def __init__(self, **kwargs: Any):
        super().__init__(NODE_NAME, **kwargs)
        self._init_core()
        self.get_logger().info("lifecycle node unconfigured: configure and activate it through "
                               f"{self.get_fully_qualified_name()}/change_state")

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure()
        except ValueError as exc:          # PipelineError: the model cannot be loaded
            self.get_logger().error(f"configure failed, staying unconfigured: {exc}")
            self._cleanup()
            return TransitionCallbackReturn.FAILURE
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._activate()
        return super().on_activate(state)          # activates the lifecycle publishers

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._cleanup()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.node_state == "active":
            self._deactivate()
        self._cleanup()
        self.node_state = "finalized"
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """An exception in a transition: back to unconfigured, with nothing held."""
        self.get_logger().error(f"error in a transition from {state.label}: cleaning up")
        if self.node_state == "active":
            self._deactivate()
        self._cleanup()
        return TransitionCallbackReturn.SUCCESS

    # Results go through lifecycle publishers: they publish only while the node is active.
    def _create_output_publisher(self, msg_type, topic: str, qos):
        pub = self.create_lifecycle_publisher(msg_type, topic, qos)
        self._outputs.append(pub)
        return pub

    def _destroy_output_publisher(self, pub) -> None:
        self.destroy_lifecycle_publisher(pub)
