"""The README's robot build step as written: ``colcon build --base-paths . interfaces
--packages-select sparp_ros_msgs sparp_ros`` finds both packages (colcon does not look inside
another package's folder, so the interfaces must be named) and installs them into a scratch
install, here over the ROS 2 wheels of the venv (colcon, ament, rosidl from PyPI)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_colcon_builds_both_packages_from_the_repository(tmp_path):
    bin_dir = Path(sys.executable).parent
    colcon = shutil.which("colcon", path=str(bin_dir)) or shutil.which("colcon")
    if colcon is None:
        pytest.skip("colcon is not installed")
    prefix = str(bin_dir.parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "AMENT_PREFIX_PATH": os.environ.get("AMENT_PREFIX_PATH", prefix),
           "CMAKE_PREFIX_PATH": os.environ.get("CMAKE_PREFIX_PATH", prefix), "PYTHONNOUSERSITE": "1"}
    run = subprocess.run(
        [colcon, "--log-base", str(tmp_path / "log"), "build", "--base-paths", ".", "interfaces",
         "--packages-select", "sparp_ros_msgs", "sparp_ros", "--build-base", str(tmp_path / "build"),
         "--install-base", str(tmp_path / "install"), "--merge-install"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for package in ("sparp_ros_msgs", "sparp_ros"):
        assert f"Finished <<< {package} " in run.stdout, run.stdout[-2000:]
    install = tmp_path / "install"
    site = next(install.glob("lib/python3*/site-packages"))
    assert (site / "sparp_ros_msgs" / "msg" / "_object_reconstruction.py").is_file()
    assert (site / "sparp_ros" / "pipeline.py").is_file()
    for path in ("share/sparp_ros/launch/sparp.launch.py", "share/sparp_ros/config/sparp.yaml",
                 "share/ament_index/resource_index/packages/sparp_ros",
                 "share/ament_index/resource_index/packages/sparp_ros_msgs"):
        assert (install / path).exists(), path
