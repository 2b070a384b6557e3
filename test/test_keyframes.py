"""Keyframe selection and stamp pairing (ROS-free)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from sparp_ros.camera import PinholeCamera
from sparp_ros.capture import Frame
from sparp_ros.keyframes import (FrameAssembler, KeyframeBuffer, KeyframeConfig, sharpness,
                                 thumbnail)

CAMERA = PinholeCamera(width=160, height=120, K=[[150, 0, 79.5], [0, 150, 59.5], [0, 0, 1]])


def _scene(shift: int, seed: int = 0) -> np.ndarray:
    """A textured image; ``shift`` moves the content (a different view)."""
    rng = np.random.default_rng(seed)
    big = cv2.resize(rng.integers(0, 256, (30, 60, 3), dtype=np.uint8), (480, 120),
                     interpolation=cv2.INTER_NEAREST)
    return np.ascontiguousarray(big[:, shift:shift + 160])


def _frame(image: np.ndarray, T_world_camera: np.ndarray | None = None) -> Frame:
    return Frame(image=image, camera=CAMERA, T_world_camera=T_world_camera)


def test_similar_frames_are_not_kept_and_new_views_are():
    buf = KeyframeBuffer()
    assert buf.offer(_frame(_scene(0))).accepted
    noisy = np.clip(_scene(0).astype(int) + np.random.default_rng(1).integers(-3, 4, (120, 160, 3)),
                    0, 255).astype(np.uint8)
    d = buf.offer(_frame(noisy))
    assert not d.accepted and "too similar" in d.reason
    assert buf.offer(_frame(_scene(80))).accepted
    assert len(buf) == 2


def test_a_frame_must_differ_from_every_kept_keyframe_not_only_the_last():
    buf = KeyframeBuffer()
    for shift in (0, 80, 160):
        assert buf.offer(_frame(_scene(shift))).accepted
    assert not buf.offer(_frame(_scene(0))).accepted      # the camera came back to view 0
    assert len(buf) == 3


def test_blurry_frames_are_dropped():
    buf = KeyframeBuffer(KeyframeConfig(min_sharpness=1e-3))
    sharp = _scene(0)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 6)
    assert sharpness(blurred) < 1e-3 < sharpness(sharp)
    d = buf.offer(_frame(blurred))
    assert not d.accepted and "blurry" in d.reason
    assert buf.offer(_frame(sharp)).accepted


def test_buffer_is_bounded_and_drops_the_oldest():
    buf = KeyframeBuffer(KeyframeConfig(max_keyframes=3))
    frames = [_frame(_scene(0, seed=s)) for s in range(5)]
    decisions = [buf.offer(f, meta=i) for i, f in enumerate(frames)]
    assert all(d.accepted for d in decisions)
    assert [d.dropped_oldest for d in decisions] == [False, False, False, True, True]
    assert buf.snapshot() == frames[2:]
    assert [m for _, m in buf.items()] == [2, 3, 4]
    buf.clear()
    assert len(buf) == 0


def test_reconfigure_applies_new_thresholds_and_trims_to_the_new_bound():
    """A node's parameters changed at run time: a smaller bound drops the oldest at once, and the
    new thresholds decide the next offer."""
    buf = KeyframeBuffer()
    frames = [_frame(_scene(0, seed=s)) for s in range(4)]
    for i, f in enumerate(frames):
        assert buf.offer(f, meta=i).accepted
    assert buf.reconfigure(KeyframeConfig(max_keyframes=2, min_image_change=1.0)) == 2
    assert [m for _, m in buf.items()] == [2, 3]
    d = buf.offer(_frame(_scene(0, seed=9)))
    assert not d.accepted and "too similar" in d.reason      # no image differs by 1.0
    assert buf.reconfigure(KeyframeConfig(max_keyframes=6)) == 0 and len(buf) == 2


def test_camera_motion_from_tf_counts_as_a_new_view():
    buf = KeyframeBuffer(KeyframeConfig(min_rotation_deg=10.0))
    image = _scene(0)
    T0 = np.eye(4)
    T1 = np.eye(4)
    T1[:3, :3] = cv2.Rodrigues(np.array([0.0, np.radians(20.0), 0.0]))[0]
    T_small = np.eye(4)
    T_small[:3, :3] = cv2.Rodrigues(np.array([0.0, np.radians(5.0), 0.0]))[0]
    assert buf.offer(_frame(image, T0)).accepted
    assert not buf.offer(_frame(image, T_small)).accepted
    assert buf.offer(_frame(image, T1)).accepted


def test_config_is_checked():
    with pytest.raises(ValueError, match="max_keyframes must be in 1..6"):
        KeyframeConfig(max_keyframes=7)
    with pytest.raises(ValueError, match="min_image_change must be >= 0"):
        KeyframeConfig(min_image_change=-1)


def test_thumbnail_is_small_grey_and_in_unit_range():
    t = thumbnail(_scene(0))
    assert t.shape == (32, 32) and t.dtype == np.float32 and 0 <= t.min() <= t.max() <= 1


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_assembler_pairs_parts_by_stamp_in_any_order():
    a = FrameAssembler(("image", "camera_info", "depth"), slop_s=0.001)
    assert not a.add("depth", 1.0, "d1").complete
    assert not a.add("image", 2.0, "i2").complete
    assert not a.add("camera_info", 1.0005, "c1").complete
    out = a.add("image", 1.0, "i1")
    assert out.complete == [{"depth": "d1", "camera_info": "c1", "image": "i1", "stamp": 1.0}]
    assert a.pending() == 1


def test_assembler_drops_incomplete_instants_and_says_what_was_missing():
    clock = _Clock()
    a = FrameAssembler(("image", "camera_info"), timeout_s=1.0, clock=clock)
    a.add("image", 1.0, "i1")
    clock.t = 2.0
    out = a.add("image", 2.0, "i2")
    assert out.dropped == [(1.0, ["camera_info"])] and not out.complete
    bounded = FrameAssembler(("image", "camera_info"), max_pending=3, clock=clock)
    dropped = [d for k in range(10) for d in bounded.add("image", float(k), k).dropped]
    assert bounded.pending() == 3 and len(dropped) == 7
    with pytest.raises(ValueError, match="unknown part 'depth'"):
        bounded.add("depth", 0.0, None)
