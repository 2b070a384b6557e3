"""How many keyframes played by ``sparp-ros play`` reach the node over DDS, with the node and the
player as separate processes (slow: a few minutes; the numbers are in README.md):

    .venv/bin/python -m pytest -m slow -s test/ros/test_input_delivery.py

One node process per setting (``--params-file config/sparp.yaml`` plus the setting's
overrides), then RUNS player processes, each playing a 4-view 640x480 RGB-D capture; after each
run the node's ``~/reset`` answers how many keyframes it kept ("cleared N keyframes"). Every view
of the capture is distinct, so a view missing from the buffer is a view lost on the way.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
from std_srvs.srv import Trigger  # noqa: E402

from sparp_ros.ros.node import NODE_NAME  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config" / "sparp.yaml"
OBJECT = "Android_Figure_Orange"
VIEWS = 4
RUNS = 10
SETTLE_S = 3.0
"""After the player exited: the node's sync_timeout_s (1 s) and a reliable repair or two."""
MIN_SHIPPED_FRACTION = 0.95

# (label, node parameter overrides, player flags). The first is the setup before: best-effort
# inputs, a 1 s pairing timeout, each view sent once.
SETTINGS = [
    ("best-effort, 1 s timeout, each view once", ["reliable_inputs:=false", "sync_timeout_s:=1.0"],
     ["--camera-rate", "0"]),
    ("best-effort, player defaults", ["reliable_inputs:=false"], []),
    ("reliable, each view once", [], ["--camera-rate", "0"]),
    ("shipped config, player defaults", [], []),
]


@pytest.fixture(scope="module")
def capture(objects_dir, tmp_path_factory):
    from sparp_ros.render import render_capture
    return render_capture(objects_dir / f"{OBJECT}.glb", tmp_path_factory.mktemp("capture"),
                          views=VIEWS, seed=5, width=640, height=480)


def _kept_per_run(capture, overrides, player_flags, env, client, executor, call_trigger):
    node = subprocess.Popen(
        [sys.executable, "-m", "sparp_ros.ros.run", "--params-file", str(CONFIG), "--ros-args",
         "-p", "mesh:=false"] + [a for o in overrides for a in ("-p", o)],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reset = client.create_client(Trigger, f"/{NODE_NAME}/reset")
    kept = []
    try:
        call_trigger(reset, 60.0)                       # the node is up (model loaded)
        for _ in range(RUNS):
            player = subprocess.run(
                [sys.executable, "-m", "sparp_ros.ros.player", str(capture.root)] + player_flags,
                env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                timeout=120)
            assert player.returncode == 0, player.stdout
            time.sleep(SETTLE_S)
            answer = call_trigger(reset, 10.0).message
            kept.append(int(re.fullmatch(r"cleared (\d+) keyframes", answer).group(1)))
    finally:
        client.destroy_client(reset)
        node.send_signal(2)
        try:
            node.wait(timeout=15)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()
    return kept


@pytest.mark.slow
def test_played_keyframes_reach_the_node(ros_env, ros_context, executor, capture, call_trigger):
    import rclpy

    env = {**os.environ, **ros_env}
    client = rclpy.create_node("delivery_client", context=ros_context)
    executor.add_node(client)
    results = {}
    try:
        for label, overrides, flags in SETTINGS:
            results[label] = _kept_per_run(capture, overrides, flags, env, client, executor,
                                           call_trigger)
            kept = results[label]
            print(f"\n{label}: {sum(kept)}/{VIEWS * RUNS} keyframes kept over {RUNS} runs "
                  f"(per run: {' '.join(map(str, kept))})")
    finally:
        executor.remove_node(client)
        client.destroy_node()
    shipped = results[SETTINGS[-1][0]]
    assert sum(shipped) >= MIN_SHIPPED_FRACTION * VIEWS * RUNS, results
