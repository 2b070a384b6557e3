"""The capture player's camera-like schedule: each view is sent again until the next one."""
from __future__ import annotations

import pytest

pytest.importorskip("rclpy")
from sparp_ros.ros.player import camera_repeats  # noqa: E402


@pytest.mark.parametrize("view_period_s, camera_rate_hz, offsets", [
    (0.5, 5.0, [0.0, 0.2, 0.4]),        # the defaults: 2 views/s, 5 Hz
    (0.5, 10.0, [0.0, 0.1, 0.2, 0.3, 0.4]),
    (0.2, 5.0, [0.0]),                  # the next view is due before a repeat
    (0.5, 0.0, [0.0]),                  # --camera-rate 0: each view once
    (0.0, 5.0, [0.0]),                  # --rate 0: as fast as possible, once
])
def test_each_view_repeats_at_the_camera_rate_until_the_next(view_period_s, camera_rate_hz, offsets):
    assert camera_repeats(view_period_s, camera_rate_hz) == pytest.approx(offsets)
