"""`make demo` in small: the demo renders, plays, reconstructs over DDS and writes its files."""
from __future__ import annotations

import re

import pytest

pytest.importorskip("rclpy")


def test_demo_runs_end_to_end(ros_env, tmp_path, capsys):
    from sparp_ros.demo import main

    assert main(["--out", str(tmp_path / "demo"), "--views", "3", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    rotation = float(re.search(r"rotation ([0-9.]+) deg", out).group(1))
    assert rotation < 2.0, out
    assert "ground-truth NOCS" in out and f"ROS_DOMAIN_ID={ros_env['ROS_DOMAIN_ID']}" in out
    for name in ("mesh.glb", "overview.png", "result.json"):
        assert (tmp_path / "demo" / name).is_file()
