"""Synthetic captures: ground truth consistent with the conventions, framing, round trip, seeds."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sparp_ros.capture import Capture, CaptureError, GroundTruth, load_capture
from sparp_ros.conventions import CanonicalFrame, invert_rigid, transform_points
from sparp_ros.render import render_capture

OBJECTS = ("ACE_Coffee_Mug_Kristen_16_oz_cup.glb", "Schleich_Spinosaurus_Action_Figure.glb",
           "Diamond_Visions_Scissors_Red.glb")


@pytest.fixture(scope="module")
def captures(objects_dir: Path) -> list[Capture]:
    return [render_capture(objects_dir / name, views=4, seed=i) for i, name in enumerate(OBJECTS)]


def _canonical(capture: Capture) -> CanonicalFrame:
    return capture.gt.canonical_frame()


def test_ground_truth_without_a_canonical_frame_is_a_clear_error() -> None:
    with pytest.raises(CaptureError, match="without a canonical frame"):
        GroundTruth([np.eye(4)]).canonical_frame()
    with pytest.raises(CaptureError, match="without a canonical frame"):
        GroundTruth([np.eye(4)], extra={"canonical": {"center": [0, 0, 0]}}).canonical_frame()


def test_nocs_in_unit_cube_and_consistent_with_pose(captures: list[Capture]) -> None:
    for cap in captures:
        frame = _canonical(cap)
        for f, T_camera_mesh in zip(cap.frames, cap.gt.T_camera_object):
            nocs = f.nocs[f.mask]
            assert nocs.size and nocs.min() >= 0.0 and nocs.max() <= 1.0
            assert (f.nocs[~f.mask] == 0).all()
            # NOCS → mesh → camera reproduces the depth at each pixel
            p_object = (nocs.astype(np.float64) - 0.5) * frame.diagonal
            p_camera = transform_points(T_camera_mesh @ frame.T_mesh_object, p_object)
            np.testing.assert_allclose(p_camera[:, 2], f.depth[f.mask], atol=1e-5)


def test_view0_has_azimuth_zero(captures: list[Capture]) -> None:
    """The canonical x axis points from the object towards camera 0 (on the ground plane)."""
    for cap in captures:
        frame = _canonical(cap)
        T_object_camera = frame.T_object_mesh @ invert_rigid(cap.gt.T_camera_object[0])
        x, y, _ = T_object_camera[:3, 3]
        assert x > 0 and abs(np.arctan2(y, x)) < 1e-6


def test_object_inside_image_and_framed(captures: list[Capture]) -> None:
    for cap in captures:
        for f in cap.frames:
            m = f.mask
            assert not (m[:2].any() or m[-2:].any() or m[:, :2].any() or m[:, -2:].any())
            rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
            fill = max((cols[-1] - cols[0] + 1) / m.shape[1], (rows[-1] - rows[0] + 1) / m.shape[0])
            assert 0.2 < fill < 0.8


def test_world_is_the_mesh_frame(captures: list[Capture]) -> None:
    for cap in captures:
        for f, T in zip(cap.frames, cap.gt.T_camera_object):
            np.testing.assert_allclose(f.T_world_camera @ T, np.eye(4), atol=1e-12)


def test_camera_shared_and_upright(captures: list[Capture]) -> None:
    for cap in captures:
        K0 = cap.frames[0].camera.K
        for f, T in zip(cap.frames, cap.gt.T_camera_object):
            np.testing.assert_array_equal(f.camera.K, K0)
            up_camera = T[:3, :3] @ np.array([0.0, 0.0, 1.0])
            # world up points roughly to image up (-y) : roll ≤ 10°, plus look-at tilt
            roll = np.degrees(np.arctan2(up_camera[0], -up_camera[1]))
            assert abs(roll) < 20


def test_azimuth_spread_and_views_differ(captures: list[Capture]) -> None:
    for cap in captures:
        centres = [invert_rigid(T)[:3, 3] for T in cap.gt.T_camera_object]
        az = np.degrees([np.arctan2(c[1], c[0]) for c in centres])
        for i in range(len(az)):
            for j in range(i):
                assert abs((az[i] - az[j] + 180) % 360 - 180) > 25


def test_save_load_round_trip(captures: list[Capture], tmp_path: Path, objects_dir: Path) -> None:
    cap = render_capture(objects_dir / OBJECTS[0], out_dir=tmp_path / "cap", views=2, seed=5)
    back = load_capture(tmp_path / "cap")
    assert len(back.frames) == 2
    for a, b in zip(cap.frames, back.frames):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.mask, b.mask)
        np.testing.assert_allclose(a.depth, b.depth, atol=6e-4)
        np.testing.assert_allclose(a.nocs, b.nocs, atol=1e-4)
        np.testing.assert_allclose(a.camera.K, b.camera.K)
        np.testing.assert_allclose(a.T_world_camera, b.T_world_camera)
        assert a.stamp == b.stamp
    for Ta, Tb in zip(cap.gt.T_camera_object, back.gt.T_camera_object):
        np.testing.assert_allclose(Ta, Tb)
    assert back.gt.object == Path(OBJECTS[0]).stem and back.gt.metric
    assert back.mesh_path() == (objects_dir / OBJECTS[0]).resolve()
    assert back.gt.extra["canonical"] == cap.gt.extra["canonical"]     # JSON floats round-trip


def test_deterministic_by_seed(objects_dir: Path) -> None:
    path = objects_dir / OBJECTS[0]
    a = render_capture(path, views=2, seed=11)
    b = render_capture(path, views=2, seed=11)
    c = render_capture(path, views=2, seed=12)
    for fa, fb in zip(a.frames, b.frames):
        np.testing.assert_array_equal(fa.image, fb.image)
        np.testing.assert_array_equal(fa.nocs, fb.nocs)
    assert not np.array_equal(a.frames[0].camera.K, c.frames[0].camera.K)


def test_explicit_views_and_size(objects_dir: Path) -> None:
    az = [0.0, 15.0, 30.0]
    el = [10.0, 20.0, 30.0]
    cap = render_capture(objects_dir / OBJECTS[0], views=3, seed=3, width=320, height=240,
                         azimuths_deg=az, elevations_deg=el)
    assert (cap.frames[0].camera.width, cap.frames[0].camera.height) == (320, 240)
    for T, a, e in zip(cap.gt.T_camera_object, az, el):
        c = invert_rigid(T)[:3, 3] - np.asarray(cap.gt.extra["canonical"]["center"])
        # the look-at jitter moves the optical axis, not the camera direction from the object
        assert np.degrees(np.arctan2(c[1], c[0])) == pytest.approx(a, abs=0.5)
        assert np.degrees(np.arcsin(c[2] / np.linalg.norm(c))) == pytest.approx(e, abs=0.5)


def test_bad_arguments(objects_dir: Path) -> None:
    with pytest.raises(ValueError, match="azimuths_deg"):
        render_capture(objects_dir / OBJECTS[0], views=2, azimuths_deg=[0.0])
    with pytest.raises(ValueError, match="width"):
        render_capture(objects_dir / OBJECTS[0], width=320)
