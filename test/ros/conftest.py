"""Fixtures for tests over real DDS (rclpy + Fast DDS from the ROS 2 wheels).

Every test module gets its own rclpy context on its own ``ROS_DOMAIN_ID`` (random in 1..101,
distinct per module in this pytest run) with ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, so test
runs side by side on one machine never see each other's topics. Nothing here needs
``AMENT_PREFIX_PATH``: messages import and publish without it (it only serves ament_index
lookups, which the node does not make).
"""
from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from typing import Callable, Iterator

import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.executors import MultiThreadedExecutor  # noqa: E402

_DOMAINS_USED: set[int] = set()


def pick_domain_id() -> int:
    """A domain not used yet in this run. At most 101: DDS derives its UDP ports from the domain,
    and above 101 they fall in Linux's ephemeral port range, where any outgoing connection may
    hold one (ROS 2's "The ROS_DOMAIN_ID" concept page)."""
    rng = random.SystemRandom()
    while True:
        domain = rng.randint(1, 101)
        if domain not in _DOMAINS_USED:
            _DOMAINS_USED.add(domain)
            return domain


@pytest.fixture(scope="module")
def ros_env() -> Iterator[dict[str, str]]:
    """This module's ROS environment, also set in os.environ (for subprocesses)."""
    env = {"ROS_DOMAIN_ID": str(pick_domain_id()), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def ros_context(ros_env):
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(ros_env["ROS_DOMAIN_ID"]))
    try:
        yield context
    finally:
        context.try_shutdown()


class RoundExecutor(MultiThreadedExecutor):
    """A MultiThreadedExecutor that spins in short rounds, each under a lock, and removes a node
    only between rounds.

    Why: a test removes and destroys its nodes while this executor spins in another thread, and
    rclpy does not make destroying a node that a wait is using safe (ros2/rclpy#255, #663). Once,
    in a clean-clone CI run, the spinning thread then held the GIL in
    ``_wait_for_ready_callbacks`` for 14 minutes and the test never finished. Removed between
    rounds, the node is in no wait set when the test destroys it."""

    ROUND_S = 0.05

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._round = threading.Lock()
        self._stop = threading.Event()
        self.errors: list[BaseException] = []

    def spin_in_rounds(self) -> None:
        """Spin until stopped. An exception a callback raised (rclpy re-raises it from a later
        ``spin_once``) is kept in ``errors`` and spinning goes on: the thread must not die, or
        every later test of the module would wait for answers nobody takes, far from the cause.
        The ``executor`` fixture fails the module's teardown with what was kept."""
        while not self._stop.is_set() and self.context.ok():
            with self._round:
                try:
                    self.spin_once(timeout_sec=self.ROUND_S)
                except Exception as exc:  # noqa: BLE001 - kept and reported by the fixture
                    self.errors.append(exc)

    def remove_node(self, node) -> None:
        with self._round:
            super().remove_node(node)

    def stop(self) -> None:
        self._stop.set()


@pytest.fixture(scope="module")
def executor(ros_context) -> Iterator[MultiThreadedExecutor]:
    """A MultiThreadedExecutor spinning in a background thread; add nodes to it
    (``RoundExecutor``: removing a node waits for the current round)."""
    ex = RoundExecutor(num_threads=4, context=ros_context)
    thread = threading.Thread(target=ex.spin_in_rounds, daemon=True)
    thread.start()
    try:
        yield ex
    finally:
        ex.stop()
        thread.join(timeout=5.0)
        ex.shutdown(timeout_sec=5.0)
    assert not ex.errors, f"callbacks raised while spinning: {ex.errors!r}"


@contextlib.contextmanager
def spinning(executor, *nodes):
    """Spin ``nodes`` on the background ``executor`` inside the block; remove and destroy them
    after it."""
    for n in nodes:
        executor.add_node(n)
    try:
        yield nodes
    finally:
        for n in nodes:
            executor.remove_node(n)
            n.destroy_node()


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str, period_s: float = 0.05) -> None:
    """Poll ``predicate`` until true; fail the test naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(period_s)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")


def call_trigger(client, timeout_s: float):
    """Call a std_srvs/Trigger service (the executor spins the client's node); returns the response."""
    from std_srvs.srv import Trigger

    wait_for(client.service_is_ready, 10.0, f"service {client.srv_name}")
    future = client.call_async(Trigger.Request())
    wait_for(future.done, timeout_s, f"the response of {client.srv_name}")
    return future.result()


@pytest.fixture(name="wait_for", scope="session")
def wait_for_fixture() -> Callable[..., None]:
    return wait_for


@pytest.fixture(name="call_trigger", scope="session")
def call_trigger_fixture():
    return call_trigger


FRAME_PARTS = ("image", "camera_info", "oracle_nocs")
"""The parts a node with ``use_depth:=false use_mask:=false`` and an oracle backend waits for."""


def publish_frame(node, pubs, seed: int = 0, parts: tuple[str, ...] = FRAME_PARTS,
                  image=None) -> None:
    """Publish one synthetic 64x48 frame (``parts``, one stamp from ``node``'s clock) on the
    publishers ``pubs[part]``, after they have matched a subscription; ``image`` replaces the
    random rgb8 image."""
    import numpy as np

    from sparp_ros.ros import messages
    from sparp_ros.camera import PinholeCamera

    wait_for(lambda: all(pubs[p].get_subscription_count() > 0 for p in parts), 10.0, "discovery")
    camera = PinholeCamera(width=64, height=48, K=[[60, 0, 31.5], [0, 60, 23.5], [0, 0, 1]],
                           frame_id="cam")
    rng = np.random.default_rng(seed)
    stamp = node.get_clock().now().to_msg()
    mask = np.ones((48, 64), bool)
    msgs = {"camera_info": messages.camera_to_camera_info(camera, stamp),
            "oracle_nocs": messages.nocs_to_image(rng.random((48, 64, 3)).astype(np.float32), mask,
                                                "cam", stamp),
            "depth": messages.depth_to_image(np.full((48, 64), 0.5, np.float32), "cam", stamp),
            "mask": messages.mask_to_image(mask, "cam", stamp),
            "image": image or messages.numpy_to_image(rng.integers(0, 256, (48, 64, 3), np.uint8),
                                                    "rgb8", "cam", stamp)}
    msgs["image"].header.stamp = stamp
    for part in parts:
        pubs[part].publish(msgs[part])


def set_parameters(client, timeout_s: float = 10.0, **values):
    """Set parameters through a node's ``set_parameters`` service (rcl_interfaces/SetParameters,
    one result per parameter, in order); returns the list of SetParametersResult."""
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    wait_for(client.service_is_ready, 10.0, f"service {client.srv_name}")
    request = SetParameters.Request(
        parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
    future = client.call_async(request)
    wait_for(future.done, timeout_s, f"the response of {client.srv_name}")
    return list(future.result().results)


@pytest.fixture(name="spinning", scope="session")
def spinning_fixture():
    return spinning


@pytest.fixture(name="publish_frame", scope="session")
def publish_frame_fixture():
    return publish_frame


@pytest.fixture(name="set_parameters", scope="session")
def set_parameters_fixture():
    return set_parameters
