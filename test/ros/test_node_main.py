"""The entry points as separate processes over DDS: ``python -m sparp_ros.ros.run --params-file``,
``python -m sparp_ros.ros.player CAPTURE``, a trigger from this process, and a clean Ctrl-C exit.
Also: config/sparp.yaml lists exactly the node's parameters with the same defaults."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("rclpy")
from std_srvs.srv import Trigger  # noqa: E402

from sparp_ros.ros.node import DEFAULTS, NODE_NAME  # noqa: E402
from sparp_ros.ros.run import _ros_argv  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config" / "sparp.yaml"
OBJECT = "Android_Figure_Orange"


def test_config_yaml_matches_the_declared_parameters():
    params = yaml.safe_load(CONFIG.read_text())[f"/**/{NODE_NAME}"]["ros__parameters"]
    assert params == DEFAULTS
    text = CONFIG.read_text().splitlines()
    for name in DEFAULTS:      # every parameter has a comment line right above it
        i = next(k for k, line in enumerate(text) if line.strip().startswith(f"{name}:"))
        assert text[i - 1].strip().startswith("#"), f"{name} has no comment in {CONFIG}"


def test_params_file_argument_is_passed_to_ros():
    assert _ros_argv(["prog", "--params-file", "a.yaml"]) == ["prog", "--ros-args", "--params-file", "a.yaml", "--"]
    assert _ros_argv(["prog", "--ros-args", "-p", "x:=1"]) == ["prog", "--ros-args", "-p", "x:=1"]


class _ProcessLog:
    """The lines a child process prints, read as they come (so a test can wait for one) and
    kept for the assertions after it stopped."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def has(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def wait_for(self, text: str, timeout_s: float, what: str, context: str = "") -> None:
        """Wait until the process has printed ``text``; else fail with what it printed (and
        ``context``, e.g. another process's output), so that a failure shows its cause."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.has(text):
                return
            time.sleep(0.05)
        tail = "".join(list(self.lines)[-60:])
        pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}; the node printed:\n"
                    f"{tail}{context}")

    def stop(self, timeout_s: float = 15.0) -> tuple[int, str]:
        """Ctrl-C, wait (kill after ``timeout_s``: code -9, after asking the node for its threads'
        stacks, which then end its output); (exit code, everything it printed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            rc = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGUSR1)      # the node dumps every thread's stack first
            time.sleep(3.0)
            self.proc.kill()
            self.proc.wait()
            rc = -9
        self._reader.join(timeout=5.0)
        return rc, "".join(self.lines)


def _node_player_and_trigger(ros_env, ros_context, executor, call_trigger, wait_for, capture_dir,
                             params: list[str], player_args: list[str] = (), views: int = 3,
                             timeout_s: float = 60.0):
    """The node as a process (shipped params file plus ``params``), the player as a process on
    ``capture_dir``, then ``~/reconstruct`` once the node has ``views`` keyframes; (response, the
    player's output, the node's exit code, the node's output). Asserts the player succeeded."""
    import rclpy

    env = {**os.environ, **ros_env, "PYTHONUNBUFFERED": "1"}
    node_args = [a for p in params for a in ("-p", p)]
    node_proc = subprocess.Popen(
        [sys.executable, "-m", "sparp_ros.ros.run", "--params-file", str(CONFIG), "--ros-args", *node_args],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    node_log = _ProcessLog(node_proc)
    response = None
    client = rclpy.create_node("main_test_client", context=ros_context)
    executor.add_node(client)
    try:
        reconstruct = client.create_client(Trigger, f"/{NODE_NAME}/reconstruct")
        wait_for(reconstruct.service_is_ready, 60.0, "the node process's service")
        player = subprocess.run(
            [sys.executable, "-m", "sparp_ros.ros.player", str(capture_dir), *player_args],
            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
        assert player.returncode == 0, player.stdout
        # a frame is a keyframe once all its parts arrived; reliable repair of a lost fragment of
        # a large image can take seconds after the player has exited
        wait_for(lambda: node_log.has(f"keyframe {views}/6"), 30.0, f"the node's keyframe {views}")
        response = call_trigger(reconstruct, timeout_s)
    finally:
        executor.remove_node(client)
        client.destroy_node()
        rc, out = node_log.stop()
    return response, player.stdout, rc, out


def test_node_and_player_processes(ros_env, ros_context, executor, objects_dir, tmp_path,
                                   call_trigger, wait_for):
    from sparp_ros.render import render_capture

    capture = render_capture(objects_dir / f"{OBJECT}.glb", tmp_path / "capture", views=3, seed=5,
                             width=320, height=240)
    response, player_out, rc, out = _node_player_and_trigger(
        ros_env, ros_context, executor, call_trigger, wait_for, capture.root,
        # reliable repair of a lost fragment of a large image can exceed the 1 s default on CI
        ["object_id:=android", "mesh:=false", "reliable_inputs:=true", "sync_timeout_s:=5.0"],
        player_args=["--rate", "5"])
    assert "published 3 views" in player_out
    assert response.success and "3/3 views posed" in response.message, f"{response.message}\n{out}"
    assert "pose of android in camera" in response.message
    assert rc == 0, f"node exited with {rc}:\n{out}"
    assert "keyframe 3/6" in out and "Traceback" not in out, out


def test_a_backend_that_cannot_run_stops_the_node_with_its_reason(ros_env):
    proc = subprocess.run([sys.executable, "-m", "sparp_ros.ros.run", "--ros-args", "-p", "backend:=nonsense"],
                          env={**os.environ, **ros_env}, cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=60)
    assert proc.returncode == 1 and "unknown backend 'nonsense'" in proc.stdout, proc.stdout
    assert "Traceback" not in proc.stdout


def test_ctrl_c_during_a_reconstruction_answers_the_caller(ros_env, ros_context, executor,
                                                          objects_dir, tmp_path, wait_for):
    """Ctrl-C while ``~/reconstruct`` runs (the shipped model on 640x480 RGB-D: seconds): a new
    request is answered "shutting down", the running one finishes and answers its caller, and the
    node exits 0 without the errors of a context shut down under it (a response on a destroyed
    service, a stopped executor, log lines to /rosout)."""
    import rclpy

    from sparp_ros.render import render_capture

    capture = render_capture(objects_dir / f"{OBJECT}.glb", tmp_path / "capture", views=3, seed=5,
                             width=640, height=480)
    env = {**os.environ, **ros_env, "PYTHONUNBUFFERED": "1"}
    node_proc = subprocess.Popen(
        [sys.executable, "-m", "sparp_ros.ros.run", "--params-file", str(CONFIG),
         "--ros-args", "-p", "mesh:=false"],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    node_log = _ProcessLog(node_proc)
    client = rclpy.create_node("shutdown_test_client", context=ros_context)
    executor.add_node(client)
    try:
        reconstruct = client.create_client(Trigger, f"/{NODE_NAME}/reconstruct")
        wait_for(reconstruct.service_is_ready, 60.0, "the node process's service")
        # played twice: this test is about Ctrl-C, and a view lost on a loaded machine (one CI
        # run's node had not logged its third keyframe 30 s after the player ended) must not
        # decide it; the second pass adds no keyframe (the same images)
        player = subprocess.run([sys.executable, "-m", "sparp_ros.ros.player", str(capture.root),
                                 "--repeat", "2"],
                                env=env, cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, timeout=60)
        assert player.returncode == 0, player.stdout
        node_log.wait_for("keyframe 3/6", 30.0, "the node's third keyframe",
                          f"\nthe player printed:\n{player.stdout}")
        running = reconstruct.call_async(Trigger.Request())
        wait_for(lambda: node_log.has("reconstructing from"), 10.0, "the reconstruction to start")
        node_proc.send_signal(signal.SIGINT)
        wait_for(lambda: node_log.has("waiting up to"), 10.0, "the node to wait for it")
        refused = reconstruct.call_async(Trigger.Request())
        wait_for(running.done, 60.0, "the running reconstruction's answer")
        wait_for(refused.done, 10.0, "the answer to a request during shutdown")
        wait_for(lambda: node_proc.poll() is not None, 30.0, "the node to exit")
    finally:
        executor.remove_node(client)
        client.destroy_node()
        rc, out = node_log.stop(timeout_s=60.0)
    assert running.result().success, f"{running.result().message}\n{out}"
    assert not refused.result().success and refused.result().message.startswith("shutting down")
    assert rc == 0, f"node exited with {rc}:\n{out}"
    for error in ("Traceback", "cannot schedule new futures", "Failed to publish log message",
                  "never retrieved", "Destroyable"):
        assert error not in out, out


def test_without_a_mask_topic_the_node_segments_the_object_from_depth(
        ros_env, ros_context, executor, objects_dir, tmp_path, call_trigger, wait_for):
    """A robot with only an RGB-D camera: ``use_mask: false``, a table with two objects and no
    mask anywhere. The node finds the support plane and the object nearest the image centre in
    the depth, reconstructs it, and says so in its log; no ``no object mask`` refusal."""
    from sparp_ros.render.scene import render_tabletop

    render_tabletop([objects_dir / f"{OBJECT}.glb", objects_dir / "Folic_Acid.glb"],
                    tmp_path / "table", views=3, seed=3, width=320, height=240)
    response, _, rc, out = _node_player_and_trigger(
        ros_env, ros_context, executor, call_trigger, wait_for, tmp_path / "table",
        ["use_mask:=false", "mesh:=false", "sync_timeout_s:=5.0"], timeout_s=90.0)
    assert response is not None and response.success, f"{response and response.message}\n{out}"
    assert "segmentation (depth): 2 object(s)" in out, out
    assert response.message.startswith("2 object(s) [sparp_object_0, sparp_object_1]"), response.message
    assert "views posed" in response.message, out
    assert rc == 0 and "Traceback" not in out, out
