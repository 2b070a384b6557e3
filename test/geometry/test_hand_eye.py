"""geometry/hand_eye.py without ROS: when it refuses, and what it reports. Its accuracy is
tested through the pipeline (test_pipeline.py, a 3° hand-eye error on a rendered capture) and
measured on the 25 shared objects by benchmarks/hand_eye.py."""
from __future__ import annotations

import numpy as np

from sparp_ros.camera import PinholeCamera
from sparp_ros.geometry.hand_eye import HandEyeParams, estimate_hand_eye
from sparp_ros.geometry.registration import RegistrationView

CAMERA = PinholeCamera(width=80, height=60, K=[[70, 0, 39.5], [0, 70, 29.5], [0, 0, 1]])


def _plane_view(z: float, offset_x: float = 0.0) -> RegistrationView:
    """A fronto-parallel patch at depth z (its points, depth image and mask), shifted sideways."""
    depth = np.full((60, 80), z, np.float32)
    mask = np.ones((60, 80), bool)
    v, u = np.mgrid[0:60, 0:80]
    points = np.stack([(u - 39.5) / 70 * z + offset_x, (v - 29.5) / 70 * z, np.full(u.shape, z)],
                      -1).reshape(-1, 3)
    return RegistrationView(points, depth, mask, CAMERA)


def test_it_needs_two_views_with_depth_and_a_pose():
    view = _plane_view(0.5)
    for views, poses in (([view], [np.eye(4)]), ([view, None], [np.eye(4), np.eye(4)]),
                         ([view, view], [np.eye(4), None])):
        c = estimate_hand_eye(views, poses, object_size=0.2, voxel=0.005)
        assert not c.accepted and "fewer than two views" in c.message
        assert np.array_equal(c.T, np.eye(4)) and c.rotation_deg == 0.0


def test_surfaces_that_do_not_meet_are_refused_with_the_reason():
    far = np.eye(4)
    far[:3, 3] = [2.0, 0.0, 0.0]               # the second camera 2 m to the side
    c = estimate_hand_eye([_plane_view(0.5), _plane_view(0.5)], [np.eye(4), far],
                          object_size=0.2, voxel=0.005)
    assert not c.accepted and "meet in 0 points" in c.message
    record = c.to_dict()
    assert record["accepted"] is False and record["T_camera_correction"] == np.eye(4).tolist()


def test_views_that_already_agree_get_no_correction():
    """Two views of one plane from one place: nothing to correct, so nothing is applied."""
    view = _plane_view(0.5)
    c = estimate_hand_eye([view, view], [np.eye(4), np.eye(4)], object_size=0.2, voxel=0.005,
                          params=HandEyeParams(min_correspondences=10))
    assert not c.accepted and "no closer" in c.message
    assert c.views == [0, 1]


def test_a_failing_correction_keeps_tf_and_says_why(monkeypatch):
    """An unexpected error inside the (optional) correction costs the correction, not the
    reconstruction: TF's poses are kept and the record says what failed."""
    from sparp_ros.geometry import measured

    def broken(*args, **kwargs):
        raise FloatingPointError("singular")
    monkeypatch.setattr(measured, "estimate_hand_eye", broken)
    frames = [_frame(x) for x in (0.0, 0.01)]
    record: dict = {}
    poses = [np.eye(4), np.eye(4)]
    out = measured._correct_hand_eye(frames, [True, True], measured.usable_depths(frames),
                                     [0.0, 0.0], poses, poses, 0.2, 0.002, record)
    assert out is poses and record["poses"] == "tf"
    assert record["hand_eye"] == {"accepted": False, "message": "failed: FloatingPointError: singular"}


def _frame(offset_x: float):
    from sparp_ros.capture import Frame
    T = np.eye(4)
    T[0, 3] = offset_x
    return Frame(image=np.full((60, 80, 3), 128, np.uint8), camera=CAMERA,
                 depth=np.full((60, 80), 0.5, np.float32), mask=np.ones((60, 80), bool),
                 T_world_camera=T)
