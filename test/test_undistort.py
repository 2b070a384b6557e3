"""A distorted camera gives the same poses as an ideal one once its frames are undistorted
(``Frame.undistorted``, what the node does with every keyframe): rendered views are warped into
a distorted camera, undistorted again and reconstructed with the oracle backend."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from sparp_ros.camera import PinholeCamera
from sparp_ros.capture import Frame
from sparp_ros.conventions import rotation_angle_deg
from sparp_ros.pipeline import PipelineConfig, SparpPipeline

OBJECT = "Schleich_Hereford_Bull"
DISTORTIONS = {"plumb_bob": [-0.3, 0.1, 0.002, -0.001, -0.02],
               "rational_polynomial": [0.4, -0.1, 0.001, 0.002, 0.01, 0.75, -0.05, 0.02],
               "equidistant": [0.1, -0.03, 0.01, -0.002]}
ROTATION_TOL_DEG = 0.5
TRANSLATION_TOL = 0.01          # of the camera-object distance


@pytest.fixture(scope="module")
def capture(objects_dir):
    from sparp_ros.render import render_capture
    return render_capture(objects_dir / f"{OBJECT}.glb", views=3, seed=11, width=480, height=360)


def _distort(frame: Frame, cam: PinholeCamera) -> Frame:
    """``frame`` (an ideal camera) as the distorted camera ``cam`` (same K) would record it."""
    rays = cam.normalized_rays(cam.pixel_grid().reshape(-1, 2))
    uv = frame.camera.project(rays).reshape(cam.height, cam.width, 2).astype(np.float32)

    def warp(a, nearest):
        src = a.astype(np.uint8) if a.dtype == bool else a
        out = cv2.remap(src, uv[..., 0], uv[..., 1], cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return out.astype(bool) if a.dtype == bool else out

    return Frame(image=warp(frame.image, False), camera=cam, depth=warp(frame.depth, True),
                 mask=warp(frame.mask, True), nocs=warp(frame.nocs, True), stamp=frame.stamp)


def _pose_errors(recon, reference) -> tuple[float, float]:
    """Worst rotation error (degrees) and relative translation error over the views."""
    rot, trans = 0.0, 0.0
    for v, r in zip(recon.views, reference.views):
        assert v.ok and r.ok, (v.message, r.message)
        T, T_ref = v.T_camera_object, r.T_camera_object
        rot = max(rot, rotation_angle_deg(T[:3, :3] @ T_ref[:3, :3].T))
        trans = max(trans, np.linalg.norm(T[:3, 3] - T_ref[:3, 3]) / np.linalg.norm(T_ref[:3, 3]))
    return rot, trans


@pytest.mark.parametrize("model", sorted(DISTORTIONS))
def test_undistorted_frames_give_the_poses_of_the_ideal_camera(capture, model):
    ideal = capture.frames[0].camera
    cam = PinholeCamera(ideal.width, ideal.height, ideal.K, D=DISTORTIONS[model],
                        distortion_model=model, frame_id=ideal.frame_id)
    distorted = [_distort(f, cam) for f in capture.frames]
    pipeline = SparpPipeline(PipelineConfig(backend="oracle", mesh=False))
    reference = pipeline(capture.frames)

    recon = pipeline([f.undistorted() for f in distorted])
    rot, trans = _pose_errors(recon, reference)
    assert rot < ROTATION_TOL_DEG and trans < TRANSLATION_TOL, (model, rot, trans)
    assert abs(recon.scale / reference.scale - 1) < TRANSLATION_TOL

    # The check has teeth: the same distorted pixels read as an ideal camera are off.
    ignored = pipeline([Frame(f.image, cam.undistorted(), f.depth, f.mask, f.nocs) for f in distorted])
    rot_ignored, trans_ignored = _pose_errors(ignored, reference)
    assert rot_ignored > 2 * ROTATION_TOL_DEG or trans_ignored > 2 * TRANSLATION_TOL, \
        (model, rot_ignored, trans_ignored)
