"""The managed (lifecycle) node over real DDS, driven from a client node through its
``~/change_state`` and ``~/get_state`` services (lifecycle_msgs), as a lifecycle manager would:
frames are taken only while active, a model that cannot be loaded fails ``configure`` with the
reason (on /diagnostics) and the node stays up, input and model parameters follow the state, and
``sparp-ros node --lifecycle`` is the same node as a process."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from sparp_ros.ros.player import PLAYER_QOS  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
QUIET_S = 1.0
"""How long a frame that must not be taken is given to arrive anyway."""
ORACLE_INPUTS = {"backend": "oracle", "use_depth": False, "use_mask": False,
                 "diagnostics_period_s": 0.2}


TRANSITION_GOALS = {Transition.TRANSITION_CONFIGURE: "inactive",
                    Transition.TRANSITION_ACTIVATE: "active",
                    Transition.TRANSITION_DEACTIVATE: "inactive",
                    Transition.TRANSITION_CLEANUP: "unconfigured",
                    Transition.TRANSITION_UNCONFIGURED_SHUTDOWN: "finalized"}
"""The state each transition the tests ask for leads to when it succeeds."""


class LifecycleClient:
    """``transition`` and ``state`` of one lifecycle node through its services, from ``node``."""

    def __init__(self, node, target: str):
        self.change = node.create_client(ChangeState, f"{target}/change_state")
        self.get = node.create_client(GetState, f"{target}/get_state")

    def transition(self, transition_id: int, wait_for) -> bool:
        """Ask for one transition; True when it succeeded. Should its answer be lost (the race
        that ``state`` describes), the node's state after 30 s tells: the transition's goal
        state means it succeeded."""
        wait_for(self.change.service_is_ready, 10.0, "change_state")
        future = self.change.call_async(ChangeState.Request(transition=Transition(id=transition_id)))
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline and not future.done():
            time.sleep(0.05)
        if future.done():
            return future.result().success
        self.change.remove_pending_request(future)
        return self.state(wait_for) == TRANSITION_GOALS[transition_id]

    def state(self, wait_for, attempts: int = 6) -> str:
        """The node's state label. get_state changes nothing, so a call without an answer in 5 s
        is made again: right after a server in another process is discovered, DDS can drop the
        first response (its writer has not matched this client's reader yet, a known race of
        ROS 2 services), and the test must not fail on that."""
        wait_for(self.get.service_is_ready, 10.0, "get_state")
        for _ in range(attempts):
            future = self.get.call_async(GetState.Request())
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and not future.done():
                time.sleep(0.05)
            if future.done():
                return future.result().current_state.label
            self.get.remove_pending_request(future)
        pytest.fail(f"get_state gave no answer to {attempts} calls of 5 s each")


class Manager(LifecycleClient):
    """A client node driving one lifecycle node, with publishers for its inputs, its parameter
    and reconstruct services, and a /diagnostics listener (statuses of that node only)."""

    def __init__(self, context, target: str):
        import rclpy

        self.node = rclpy.create_node("lifecycle_manager", context=context)
        super().__init__(self.node, target)
        self.params = self.node.create_client(SetParameters, f"{target}/set_parameters")
        self.reconstruct = self.node.create_client(Trigger, f"{target}/reconstruct")
        ns = target.rsplit("/", 1)[0]
        self.pubs = {p: self.node.create_publisher(CameraInfo if p == "camera_info" else Image,
                                                   f"{ns}/{p}", PLAYER_QOS)
                     for p in ("image", "camera_info", "oracle_nocs")}
        self.statuses: list[DiagnosticStatus] = []
        self._lock = threading.Lock()
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self._name = f"{target}: "

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        with self._lock:
            self.statuses += [s for s in msg.status if s.name.startswith(self._name)]

    def wait_status(self, predicate, wait_for, what: str) -> DiagnosticStatus:
        """The first status from now on for which ``predicate`` holds."""
        with self._lock:
            start = len(self.statuses)
        found: list[DiagnosticStatus] = []

        def seen() -> bool:
            with self._lock:
                found.extend(s for s in self.statuses[start:] if predicate(s))
                return bool(found)
        wait_for(seen, 10.0, what)
        return found[0]


@pytest.fixture
def managed(request, ros_context, executor):
    """A lifecycle node in its own namespace (parameters: ORACLE_INPUTS plus an indirect
    parametrisation) and its manager."""
    from sparp_ros.ros.lifecycle_node import SparpLifecycleNode

    ns = "/" + re.sub(r"\W", "_", request.node.name)
    params = {**ORACLE_INPUTS, **getattr(request, "param", {})}
    node = SparpLifecycleNode(context=ros_context, namespace=ns,
                              parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    manager = Manager(ros_context, node.get_fully_qualified_name())
    executor.add_node(node)
    executor.add_node(manager.node)
    try:
        yield node, manager
    finally:
        for n in (node, manager.node):
            executor.remove_node(n)
            n.destroy_node()


def test_frames_are_taken_only_while_active(managed, wait_for, publish_frame):
    node, m = managed
    assert m.state(wait_for) == "unconfigured" and node.pipeline is None and node.buffer is None
    assert m.transition(Transition.TRANSITION_CONFIGURE, wait_for)
    assert m.state(wait_for) == "inactive" and node.pipeline is not None
    # Inactive: nobody subscribes, nothing is taken, no reconstruct service.
    for pub in m.pubs.values():
        pub.publish(CameraInfo() if pub.msg_type is CameraInfo else Image())
    time.sleep(QUIET_S)
    assert all(pub.get_subscription_count() == 0 for pub in m.pubs.values())
    assert node._images_seen == 0 and len(node.buffer) == 0 and not m.reconstruct.service_is_ready()

    assert m.transition(Transition.TRANSITION_ACTIVATE, wait_for)
    assert m.state(wait_for) == "active"
    publish_frame(node, m.pubs, seed=1)
    wait_for(lambda: len(node.buffer) == 1, 10.0, "a keyframe while active")
    wait_for(m.reconstruct.service_is_ready, 10.0, "~/reconstruct while active")

    assert m.transition(Transition.TRANSITION_DEACTIVATE, wait_for)
    assert m.state(wait_for) == "inactive"
    wait_for(lambda: all(p.get_subscription_count() == 0 for p in m.pubs.values()), 10.0,
             "the subscriptions to go")
    wait_for(lambda: not m.reconstruct.service_is_ready(), 10.0, "~/reconstruct to go")
    images = node._images_seen
    for pub in m.pubs.values():
        pub.publish(CameraInfo() if pub.msg_type is CameraInfo else Image())
    time.sleep(QUIET_S)
    assert node._images_seen == images and len(node.buffer) == 1, "kept, but no new frames"

    assert m.transition(Transition.TRANSITION_CLEANUP, wait_for)
    assert m.state(wait_for) == "unconfigured"
    assert node.pipeline is None and node.buffer is None and node.pose_pub is None
    assert m.transition(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN, wait_for)
    assert m.state(wait_for) == "finalized"


class _SlowPipeline:
    """Stands in for the pipeline: a reconstruction that takes ``seconds`` and then fails."""

    def __init__(self, seconds: float):
        from sparp_ros.pipeline import PipelineError

        self.seconds, self.error, self.config = seconds, PipelineError, None

    def __call__(self, frames):
        time.sleep(self.seconds)
        raise self.error("stand-in pipeline")

    def close(self) -> None:
        pass


def test_deactivate_during_a_reconstruction_answers_its_caller_first(managed, wait_for,
                                                                    publish_frame):
    """Deactivation waits for the running reconstruction: its caller gets the answer (not a
    service destroyed under it), a request meanwhile gets "shutting down", then the service
    goes; activated again, reconstructions are taken again."""
    node, m = managed
    assert m.transition(Transition.TRANSITION_CONFIGURE, wait_for)
    assert m.transition(Transition.TRANSITION_ACTIVATE, wait_for)
    publish_frame(node, m.pubs, seed=2)
    wait_for(lambda: len(node.buffer) == 1, 10.0, "a keyframe")
    real, node.pipeline = node.pipeline, _SlowPipeline(2.0)
    try:
        wait_for(m.reconstruct.service_is_ready, 10.0, "~/reconstruct")
        running = m.reconstruct.call_async(Trigger.Request())
        wait_for(node._busy.locked, 10.0, "the reconstruction to start")
        deactivate = m.change.call_async(ChangeState.Request(
            transition=Transition(id=Transition.TRANSITION_DEACTIVATE)))
        wait_for(lambda: node._stopping, 10.0, "the deactivation to begin")
        refused = m.reconstruct.call_async(Trigger.Request())
        wait_for(running.done, 30.0, "the running reconstruction's answer")
        wait_for(deactivate.done, 10.0, "the deactivation")
        wait_for(refused.done, 10.0, "the answer to a request during deactivation")
    finally:
        node.pipeline = real
    assert running.result().message == "pipeline: stand-in pipeline"
    assert refused.result().message.startswith("shutting down")
    assert deactivate.result().success and m.state(wait_for) == "inactive"
    assert m.transition(Transition.TRANSITION_ACTIVATE, wait_for)
    wait_for(m.reconstruct.service_is_ready, 10.0, "~/reconstruct again")
    assert not node._stopping


def _weights(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Model folders that must not load: (folder, what the reason says). Configs are the shipped
    ones; the weights file is missing, corrupt, or pickle-based."""
    import shutil

    from sparp_ros.model.backend import DEFAULT_WEIGHTS

    out = {"missing": (tmp_path / "missing", "no model weights at")}
    for name, weights_file, reason in (
            ("corrupt", "diffusion_pytorch_model.safetensors", "corrupt or unreadable safetensors file"),
            ("pickle", "diffusion_pytorch_model.bin", "pickle-based ['diffusion_pytorch_model.bin'], "
                                                      "which are refused")):
        folder = tmp_path / name
        shutil.copytree(DEFAULT_WEIGHTS, folder, ignore=shutil.ignore_patterns("*.safetensors", "*.png"))
        (folder / "denoiser" / weights_file).write_bytes(b"\x80\x04not weights" * 64)
        out[name] = (folder, reason)
    return out


@pytest.mark.parametrize("managed", [{"backend": "model"}], indirect=True, ids=["model"])
def test_configure_with_bad_weights_fails_with_the_reason_and_the_node_survives(
        managed, tmp_path, wait_for, set_parameters):
    node, m = managed
    for name, (folder, reason) in _weights(tmp_path).items():
        assert [r.successful for r in set_parameters(m.params, weights=str(folder))] == [True]
        assert not m.transition(Transition.TRANSITION_CONFIGURE, wait_for), name
        assert m.state(wait_for) == "unconfigured" and node.pipeline is None
        assert reason in node.load_error, node.load_error
        status = m.wait_status(lambda s: str(folder) in s.message, wait_for, f"the {name} ERROR")
        assert status.level == DiagnosticStatus.ERROR, status
        assert status.message.startswith("model failed to load: ") and reason in status.message
        values = {kv.key: kv.value for kv in status.values}
        assert values["model_loaded"] == "false" and reason in values["load_error"]
    # Still alive: fixed parameters configure, and the ERROR is gone.
    assert all(r.successful for r in set_parameters(m.params, backend="oracle", weights=""))
    assert m.transition(Transition.TRANSITION_CONFIGURE, wait_for)
    assert m.state(wait_for) == "inactive" and node.load_error == ""
    status = m.wait_status(lambda s: "inactive" in s.message, wait_for, "an OK status")
    assert status.level == DiagnosticStatus.OK


def test_input_and_model_parameters_follow_the_lifecycle_state(managed, wait_for, set_parameters):
    node, m = managed
    assert m.transition(Transition.TRANSITION_CONFIGURE, wait_for)
    assert m.transition(Transition.TRANSITION_ACTIVATE, wait_for)
    assert node.assembler.parts == ("image", "camera_info", "oracle_nocs")
    (inputs,) = set_parameters(m.params, use_depth=True)
    (model,) = set_parameters(m.params, backend="oracle_per_view")
    assert not inputs.successful and "deactivate the node first" in inputs.reason
    assert not model.successful and "clean up the node first" in model.reason
    assert all(r.successful for r in set_parameters(m.params, min_image_change=0.2))   # live

    assert m.transition(Transition.TRANSITION_DEACTIVATE, wait_for)
    assert [r.successful for r in set_parameters(m.params, use_depth=True)] == [True]
    assert not set_parameters(m.params, backend="oracle_per_view")[0].successful
    assert m.transition(Transition.TRANSITION_ACTIVATE, wait_for)
    assert node.assembler.parts == ("image", "camera_info", "depth", "oracle_nocs")

    assert m.transition(Transition.TRANSITION_DEACTIVATE, wait_for)
    assert m.transition(Transition.TRANSITION_CLEANUP, wait_for)
    assert [r.successful for r in set_parameters(m.params, backend="oracle_per_view")] == [True]
    assert m.transition(Transition.TRANSITION_CONFIGURE, wait_for)
    assert node.pipeline.backend.name == "oracle_per_view"


def test_autostart_configures_and_activates(ros_context):
    from sparp_ros.ros.run import make_node

    node = make_node(lifecycle=True, autostart=True, context=ros_context, namespace="/autostart",
                     parameter_overrides=[Parameter(k, value=v) for k, v in ORACLE_INPUTS.items()])
    try:
        assert node.node_state == "active" and node._subscriptions_by_part
    finally:
        node.destroy_node()


def test_cli_node_lifecycle_process(ros_env, ros_context, executor, wait_for):
    """``sparp-ros node --lifecycle --params-file config/sparp.yaml`` as a process: unconfigured
    until told, then active; Ctrl-C exits cleanly."""
    import rclpy

    env = {**os.environ, **ros_env, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "sparp_ros.cli", "node", "--lifecycle",
                             "--params-file", str(REPO / "config" / "sparp.yaml")],
                            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    client = rclpy.create_node("cli_lifecycle_client", context=ros_context)
    executor.add_node(client)
    m = LifecycleClient(client, "/sparp_node")
    try:
        wait_for(m.get.service_is_ready, 60.0, "the node process's get_state")
        assert m.state(wait_for) == "unconfigured"
        assert m.transition(Transition.TRANSITION_CONFIGURE, wait_for)
        assert m.transition(Transition.TRANSITION_ACTIVATE, wait_for)
        assert m.state(wait_for) == "active"
    finally:
        executor.remove_node(client)
        client.destroy_node()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0 and "Traceback" not in out, out
    assert "lifecycle node unconfigured" in out and "pipeline ready" in out, out
