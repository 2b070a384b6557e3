"""benchmarks/pair_candidates.py: the image agreement of a candidate placement (grey values of
one view's measured surface against the other view's image) peaks at the true pose."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from sparp_ros.conventions import invert_rigid, rot_z

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import pair_candidates  # noqa: E402


def test_image_agreement_is_high_at_the_true_pose_and_falls_when_turned(objects_dir):
    from sparp_ros.geometry.measured import measured_views, registration_views
    from sparp_ros.render import render_capture
    capture = render_capture(objects_dir / "Schleich_Hereford_Bull.glb", views=2, seed=2,
                             azimuths_deg=[0.0, 40.0], elevations_deg=[20.0, 30.0])
    frames, gt = capture.frames, capture.gt.T_camera_object
    views = registration_views(frames, measured_views(frames))
    greys = {k: pair_candidates.grey_image(f.image, views[k].mask) for k, f in enumerate(frames)}
    tolerance = 0.02 * capture.gt.extra["canonical"]["diagonal"]
    truth = gt[0] @ invert_rigid(gt[1])
    at_truth = pair_candidates.image_agreement(views, greys, 0, 1, truth, tolerance)
    assert at_truth > 0.7
    turn = np.eye(4)
    turn[:3, :3] = rot_z(np.radians(90.0))
    turned = gt[0] @ turn @ invert_rigid(gt[1])            # the bull a quarter turn about up
    assert pair_candidates.image_agreement(views, greys, 0, 1, turned, tolerance) < at_truth - 0.1
    far = truth.copy()
    far[:3, 3] += [5.0, 0.0, 0.0]                       # nothing lands in the other view
    assert pair_candidates.image_agreement(views, greys, 0, 1, far, tolerance) == 0.0
