"""A Frame's depth: what is not a measurement becomes 0 ("unknown"), whatever the caller passed."""
from __future__ import annotations

import numpy as np
import pytest

from sparp_ros.camera import PinholeCamera
from sparp_ros.capture import CaptureError, Frame


def _camera(w=8, h=6):
    return PinholeCamera(w, h, np.array([[10.0, 0, w / 2], [0, 10.0, h / 2], [0, 0, 1]]))


def test_non_finite_and_negative_depth_becomes_unknown():
    depth = np.full((6, 8), 0.5, np.float64)
    depth[0, 0], depth[1, 1], depth[2, 2], depth[3, 3] = np.nan, np.inf, -np.inf, -0.2
    frame = Frame(image=np.zeros((6, 8, 3), np.uint8), camera=_camera(), depth=depth)
    assert frame.depth.dtype == np.float32 and np.all(np.isfinite(frame.depth))
    assert frame.depth[0, 0] == frame.depth[1, 1] == frame.depth[2, 2] == frame.depth[3, 3] == 0.0
    assert np.count_nonzero(frame.depth == 0.5) == 48 - 4
    assert np.isnan(depth[0, 0])                       # the caller's array is not changed


def test_clean_depth_is_kept_as_it_is_and_bad_shapes_are_refused():
    depth = np.full((6, 8), 0.5, np.float32)
    assert Frame(image=np.zeros((6, 8, 3), np.uint8), camera=_camera(), depth=depth).depth is depth
    with pytest.raises(CaptureError, match="HxW"):
        Frame(image=np.zeros((6, 8, 3), np.uint8), camera=_camera(), depth=np.zeros((6, 8, 2)))
