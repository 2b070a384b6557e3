"""Camera elevation and roll read from a pose, and the frame rotation that sets them."""
from __future__ import annotations

import numpy as np
import pytest

from sparp_ros.conventions import camera_azimuth, unit_direction
from sparp_ros.geometry.view_angles import elevation_roll_deg, tilt_correction
from sparp_ros.render.capture_renderer import look_at


def _pose(azimuth_deg, elevation_deg, look_at_roll_deg=0.0, target=(0.0, 0.0, 0.0), distance=3.0):
    eye = distance * unit_direction(np.radians(azimuth_deg), np.radians(elevation_deg))
    return look_at(eye, np.asarray(target, float), np.radians(look_at_roll_deg))


@pytest.mark.parametrize("elevation", [-30.0, 0.0, 25.0, 60.0])
def test_elevation_and_roll_of_a_look_at_camera(elevation):
    e, r = elevation_roll_deg(_pose(40.0, elevation))
    assert e == pytest.approx(elevation, abs=1e-9)
    assert r == pytest.approx(0.0, abs=1e-9)
    # Our roll is positive when the object's up axis leans towards image right.
    T = _pose(40.0, elevation, look_at_roll_deg=12.0)
    up_in_camera = T[:3, :3] @ np.array([0.0, 0.0, 1.0])
    assert np.sign(up_in_camera[0]) == np.sign(elevation_roll_deg(T)[1])
    assert abs(elevation_roll_deg(T)[1]) == pytest.approx(12.0, abs=1e-6)


def test_tilt_correction_sets_the_angles_and_keeps_what_the_camera_sees():
    rng = np.random.default_rng(3)
    for _ in range(50):
        T = _pose(rng.uniform(-180, 180), rng.uniform(-25, 55), rng.uniform(-10, 10),
                  target=rng.normal(scale=0.2, size=3))          # the object off the optical axis
        target_el, target_roll = rng.uniform(-20, 50), rng.uniform(-12, 12)
        Q = tilt_correction(T, target_el, target_roll)
        assert np.allclose(Q @ Q.T, np.eye(3), atol=1e-9) and np.linalg.det(Q) == pytest.approx(1.0)
        T2 = T.copy()
        T2[:3, :3] = T[:3, :3] @ Q.T
        e, r = elevation_roll_deg(T2)
        assert e == pytest.approx(target_el, abs=0.01) and r == pytest.approx(target_roll, abs=0.01)
        # The azimuth of the camera is not touched (only the tilt moves)...
        assert camera_azimuth(T2) == pytest.approx(camera_azimuth(T), abs=1e-7)
        # ...and every point, moved with the frame, projects where it did.
        p = rng.normal(scale=0.3, size=(20, 3))
        before = (T[:3, :3] @ p.T).T + T[:3, 3]
        after = (T2[:3, :3] @ (Q @ p.T)).T + T2[:3, 3]
        assert np.allclose(before, after, atol=1e-9)


def test_a_correction_to_the_current_angles_is_the_identity():
    T = _pose(100.0, 20.0, 5.0, target=(0.05, -0.02, 0.1))
    e, r = elevation_roll_deg(T)
    assert np.allclose(tilt_correction(T, e, r), np.eye(3), atol=1e-9)
