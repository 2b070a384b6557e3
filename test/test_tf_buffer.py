"""TransformBuffer (ROS-free tf2-like buffer): chains through the tree, inversions, interpolation,
static + dynamic edges, bounded history and every error, against transforms built independently
with scipy."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from scipy.spatial.transform import Rotation, Slerp

from sparp_ros.tf_buffer import (ConnectivityError, ExtrapolationError, FrameNotFoundError,
                                 TransformBuffer, TransformError, matrix_to_quaternion,
                                 quaternion_to_matrix, slerp)

RNG = np.random.default_rng(7)


def random_T(rng=RNG) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.random(random_state=int(rng.integers(1 << 31))).as_matrix()
    T[:3, 3] = rng.uniform(-2, 2, 3)
    return T


def xyzw(T: np.ndarray) -> np.ndarray:
    return Rotation.from_matrix(T[:3, :3]).as_quat()       # scipy is (x, y, z, w) too


def add(buf: TransformBuffer, parent: str, child: str, t: float, T: np.ndarray, static=False):
    return buf.set_transform(parent, child, t, T[:3, 3], xyzw(T), static=static)


def test_quaternion_matrix_round_trip_matches_scipy():
    Rs = list(Rotation.random(200, random_state=1).as_matrix())
    Rs += [np.diag([1.0, -1.0, -1.0]), np.diag([-1.0, 1.0, -1.0]), np.diag([-1.0, -1.0, 1.0]),
           np.eye(3)]                                        # 180° turns: the w ≈ 0 branch
    for R in Rs:
        q = matrix_to_quaternion(R)
        assert q[3] >= 0 and abs(np.linalg.norm(q) - 1) < 1e-12
        np.testing.assert_allclose(quaternion_to_matrix(q), R, atol=1e-12)
        np.testing.assert_allclose(quaternion_to_matrix(q), Rotation.from_quat(q).as_matrix(),
                                   atol=1e-12)


def test_slerp_matches_scipy_and_takes_the_short_arc():
    r = Rotation.random(2, random_state=3)
    q0, q1 = r.as_quat()
    reference = Slerp([0.0, 1.0], r)
    for ratio in (0.0, 0.1, 0.5, 0.9, 1.0):
        expected = reference([ratio]).as_matrix()[0]
        np.testing.assert_allclose(quaternion_to_matrix(slerp(q0, q1, ratio)), expected, atol=1e-9)
        # -q1 is the same rotation: the result must not go the long way round
        np.testing.assert_allclose(quaternion_to_matrix(slerp(q0, -q1, ratio)), expected, atol=1e-9)


def test_chain_inverse_and_siblings_through_the_common_ancestor():
    """world -> base -> arm -> camera and base -> lidar: every pair of frames, both ways."""
    T = {"base": random_T(), "arm": random_T(), "camera": random_T(), "lidar": random_T()}
    buf = TransformBuffer()
    add(buf, "world", "base", 0.0, T["base"], static=True)    # T_world_base
    add(buf, "base", "arm", 0.0, T["arm"], static=True)       # T_base_arm
    add(buf, "arm", "camera", 0.0, T["camera"], static=True)  # T_arm_camera
    add(buf, "base", "lidar", 0.0, T["lidar"], static=True)   # T_base_lidar
    T_world = {"world": np.eye(4), "base": T["base"], "arm": T["base"] @ T["arm"],
               "camera": T["base"] @ T["arm"] @ T["camera"], "lidar": T["base"] @ T["lidar"]}
    assert buf.frames() == set(T_world)
    for target in T_world:
        for source in T_world:
            expected = np.linalg.inv(T_world[target]) @ T_world[source]
            np.testing.assert_allclose(buf.lookup(target, source, 5.0), expected, atol=1e-9,
                                       err_msg=f"T_{target}_{source}")
    np.testing.assert_allclose(buf.lookup("camera", "lidar") @ buf.lookup("lidar", "camera"),
                               np.eye(4), atol=1e-9)
    # a point given in the camera frame lands where composing by hand puts it
    p_camera = np.array([0.1, -0.2, 0.7, 1.0])
    np.testing.assert_allclose(buf.lookup("lidar", "camera") @ p_camera,
                               np.linalg.inv(T["lidar"]) @ T["arm"] @ T["camera"] @ p_camera,
                               atol=1e-9)


def test_leading_slash_is_ignored_like_tf2():
    buf = TransformBuffer()
    add(buf, "/world", "camera", 0.0, np.eye(4), static=True)
    np.testing.assert_allclose(buf.lookup("world", "/camera"), np.eye(4))


def test_interpolation_linear_translation_and_slerp_rotation():
    buf = TransformBuffer()
    T0, T1 = random_T(), random_T()
    add(buf, "world", "camera", 10.0, T0)
    add(buf, "world", "camera", 12.0, T1)
    reference = Slerp([10.0, 12.0], Rotation.from_matrix([T0[:3, :3], T1[:3, :3]]))
    for t in (10.0, 10.5, 11.0, 11.9, 12.0):
        T = buf.lookup("world", "camera", t)
        ratio = (t - 10.0) / 2.0
        np.testing.assert_allclose(T[:3, 3], (1 - ratio) * T0[:3, 3] + ratio * T1[:3, 3], atol=1e-9)
        np.testing.assert_allclose(T[:3, :3], reference([t]).as_matrix()[0], atol=1e-9)
        # the inverse lookup interpolates the same transform
        np.testing.assert_allclose(buf.lookup("camera", "world", t), np.linalg.inv(T), atol=1e-9)


def test_rotation_about_one_axis_interpolates_the_angle():
    buf = TransformBuffer()
    for t, deg in ((0.0, 0.0), (1.0, 90.0)):
        T = np.eye(4)
        T[:3, :3] = Rotation.from_euler("z", deg, degrees=True).as_matrix()
        add(buf, "base", "tool", t, T)
    R = buf.lookup("base", "tool", 0.25)[:3, :3]
    np.testing.assert_allclose(R, Rotation.from_euler("z", 22.5, degrees=True).as_matrix(), atol=1e-12)


def test_out_of_order_samples_are_sorted_and_a_repeated_stamp_replaces():
    buf = TransformBuffer()
    Ts = {t: random_T() for t in (3.0, 1.0, 2.0)}
    for t, T in Ts.items():
        add(buf, "world", "camera", t, T)
    for t, T in Ts.items():
        np.testing.assert_allclose(buf.lookup("world", "camera", t), T, atol=1e-9)
    T_new = random_T()
    add(buf, "world", "camera", 2.0, T_new)
    np.testing.assert_allclose(buf.lookup("world", "camera", 2.0), T_new, atol=1e-9)


def test_static_and_dynamic_mix():
    """A static camera mount on a moving base: static edges hold at any time, the dynamic one
    is interpolated, and the latest-time lookup uses the newest dynamic stamp."""
    T_base_camera = random_T()
    buf = TransformBuffer()
    add(buf, "base", "camera", 0.0, T_base_camera, static=True)
    T_odom_base = {}
    for t in (100.0, 101.0, 102.0):
        T = np.eye(4)
        T[:3, 3] = [t - 100.0, 0.0, 0.0]                     # base drives along x at 1 m/s
        T_odom_base[t] = T
        add(buf, "odom", "base", t, T)
    T = buf.lookup("odom", "camera", 101.5)
    expected = np.eye(4)
    expected[:3, 3] = [1.5, 0, 0]
    np.testing.assert_allclose(T, expected @ T_base_camera, atol=1e-9)
    np.testing.assert_allclose(buf.lookup("odom", "camera"), T_odom_base[102.0] @ T_base_camera,
                               atol=1e-9)
    # a static-only chain answers at any time, even far outside the dynamic history
    np.testing.assert_allclose(buf.lookup("camera", "base", 1e9), np.linalg.inv(T_base_camera),
                               atol=1e-9)
    with pytest.raises(ExtrapolationError):
        buf.lookup("odom", "camera", 50.0)


def test_latest_time_is_the_newest_time_common_to_the_chain():
    buf = TransformBuffer()
    for t in (0.0, 1.0, 2.0):
        add(buf, "world", "base", t, np.eye(4))
    T0, T1 = random_T(), random_T()
    add(buf, "base", "camera", 0.0, T0)
    add(buf, "base", "camera", 1.0, T1)
    # base -> camera ends at t=1, so the latest common time is 1 (not 2)
    np.testing.assert_allclose(buf.lookup("world", "camera"), T1, atol=1e-9)


def test_unknown_frame_and_disconnected_trees():
    buf = TransformBuffer()
    add(buf, "world", "base", 0.0, random_T(), static=True)
    add(buf, "map", "robot2", 0.0, random_T(), static=True)
    with pytest.raises(FrameNotFoundError, match="'nowhere' does not exist"):
        buf.lookup("world", "nowhere", 0.0)
    with pytest.raises(FrameNotFoundError):
        buf.lookup("nowhere", "nowhere", 0.0)
    with pytest.raises(ConnectivityError, match="not connected") as info:
        buf.lookup("world", "robot2", 0.0)
    assert "'map'" in str(info.value) and "'world'" in str(info.value)
    assert issubclass(ConnectivityError, TransformError) and issubclass(TransformError, LookupError)
    assert not buf.can_transform("base", "robot2")
    assert buf.can_transform("base", "world")
    np.testing.assert_allclose(buf.lookup("base", "base", 3.0), np.eye(4))
    add(buf, "base", "camera", 1.0, random_T())
    assert (buf.root("/camera"), buf.root("base"), buf.root("world"), buf.root("robot2")) == \
        ("world", "world", "world", "map")
    with pytest.raises(FrameNotFoundError, match="'nowhere' does not exist"):
        buf.root("nowhere")


def test_extrapolation_past_and_future_with_tolerance():
    buf = TransformBuffer()
    T0, T1 = random_T(), random_T()
    add(buf, "world", "camera", 10.0, T0)
    add(buf, "world", "camera", 11.0, T1)
    with pytest.raises(ExtrapolationError, match="into the future") as future:
        buf.lookup("world", "camera", 11.2)
    assert future.value.future and "world -> camera" in str(future.value)
    with pytest.raises(ExtrapolationError, match="into the past") as past:
        buf.lookup("world", "camera", 9.5)
    assert not past.value.future
    # within the tolerance, the nearest sample is used (never extrapolated)
    np.testing.assert_allclose(buf.lookup("world", "camera", 11.2, tolerance_s=0.25), T1, atol=1e-9)
    np.testing.assert_allclose(buf.lookup("world", "camera", 9.9, tolerance_s=0.25), T0, atol=1e-9)
    with pytest.raises(ExtrapolationError):
        buf.lookup("world", "camera", 11.3, tolerance_s=0.25)
    # a single sample: only its own stamp (or within the tolerance)
    one = TransformBuffer()
    add(one, "world", "camera", 5.0, T0)
    np.testing.assert_allclose(one.lookup("world", "camera", 5.0), T0, atol=1e-9)
    with pytest.raises(ExtrapolationError):
        one.lookup("world", "camera", 5.01)


def test_history_is_bounded_by_the_cache_duration_and_sample_count():
    buf = TransformBuffer(cache_duration_s=5.0)
    for t in range(21):                                     # 0..20 s at 1 Hz
        assert add(buf, "world", "camera", float(t), random_T())
    buf.lookup("world", "camera", 15.0)
    buf.lookup("world", "camera", 17.5)
    with pytest.raises(ExtrapolationError, match="past"):
        buf.lookup("world", "camera", 14.5)
    # older than the newest stamp minus the cache duration: ignored (tf2's TF_OLD_DATA)
    assert not add(buf, "world", "camera", 2.0, random_T())
    with pytest.raises(ExtrapolationError):
        buf.lookup("world", "camera", 2.0)
    small = TransformBuffer(cache_duration_s=1e6, max_samples=10)
    for t in range(100):
        add(small, "world", "camera", float(t), random_T())
    small.lookup("world", "camera", 90.0)
    with pytest.raises(ExtrapolationError):
        small.lookup("world", "camera", 89.5)
    with pytest.raises(ValueError):
        TransformBuffer(cache_duration_s=0)


def test_reparenting_clear_and_bad_input():
    buf = TransformBuffer()
    T_a, T_b = random_T(), random_T()
    add(buf, "a", "camera", 0.0, T_a, static=True)
    add(buf, "b", "camera", 0.0, T_b, static=True)          # the camera moved to another parent
    np.testing.assert_allclose(buf.lookup("b", "camera"), T_b, atol=1e-9)
    with pytest.raises(FrameNotFoundError):                 # "a" was only camera's old parent
        buf.lookup("a", "camera")
    add(buf, "world", "b", 1.0, random_T())
    buf.clear()                                             # dynamic data go, static stay
    np.testing.assert_allclose(buf.lookup("b", "camera"), T_b, atol=1e-9)
    with pytest.raises(FrameNotFoundError):                 # only the dynamic edge named it
        buf.lookup("world", "camera", 1.0)
    with pytest.raises(ValueError, match="loop"):
        add(buf, "camera", "b", 0.0, np.eye(4))             # b -> camera exists already
    with pytest.raises(ValueError, match="own parent"):
        add(buf, "b", "b", 0.0, np.eye(4))
    with pytest.raises(ValueError, match="zero length"):
        buf.set_transform("b", "x", 0.0, [0, 0, 0], [0, 0, 0, 0])
    with pytest.raises(ValueError, match="non-finite"):
        buf.set_transform("b", "x", 0.0, [np.nan, 0, 0], [0, 0, 0, 1])
    # a non-unit quaternion is normalised
    buf.set_transform("b", "x", 0.0, [1, 2, 3], [0, 0, 0, 2], static=True)
    np.testing.assert_allclose(buf.lookup("b", "x")[:3, :3], np.eye(3), atol=1e-12)
    # set_matrix is set_transform of the matrix
    T = random_T()
    buf.set_matrix("b", "y", 0.0, T, static=True)
    np.testing.assert_allclose(buf.lookup("b", "y"), T, atol=1e-9)


def test_wait_for_returns_when_the_data_arrive_and_fails_fast_on_the_past():
    buf = TransformBuffer()
    T = random_T()
    add(buf, "world", "camera", 1.0, random_T())
    timer = threading.Timer(0.2, lambda: add(buf, "world", "camera", 2.0, T))
    timer.start()
    try:
        t0 = time.monotonic()
        np.testing.assert_allclose(buf.wait_for("world", "camera", 2.0, timeout_s=5.0), T, atol=1e-9)
        assert time.monotonic() - t0 < 2.0
    finally:
        timer.cancel()
    t0 = time.monotonic()
    with pytest.raises(ExtrapolationError, match="past"):
        buf.wait_for("world", "camera", 0.0, timeout_s=5.0)
    assert time.monotonic() - t0 < 0.5, "waiting cannot bring data from the past"
    t0 = time.monotonic()
    with pytest.raises(FrameNotFoundError):
        buf.wait_for("world", "never", 2.0, timeout_s=0.3)
    assert 0.25 < time.monotonic() - t0 < 2.0
