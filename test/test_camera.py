"""Camera maths: crop/resize intrinsics against a direct projection, project ↔ unproject."""
import numpy as np
import pytest

from sparp_ros.camera import CameraError, PinholeCamera
from sparp_ros.segmentation import CropBox, crop_camera, crop_image


def _camera(D=()):
    return PinholeCamera(640, 480, [[520.0, 0, 331.5], [0, 515.0, 236.2], [0, 0, 1]], D=D,
                         distortion_model="plumb_bob" if len(D) else "")


def _points(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return np.c_[rng.uniform(-0.2, 0.2, (n, 2)), rng.uniform(0.5, 2.0, n)]


@pytest.mark.parametrize("D", [(), (0.1, -0.05, 0.001, -0.002, 0.01)])
def test_project_unproject_round_trip(D):
    cam = _camera(D)
    P = _points()
    uv = cam.project(P)
    back = cam.unproject(uv, P[:, 2])
    np.testing.assert_allclose(back, P, atol=1e-6)


def test_crop_then_resize_matches_direct_pixel_mapping():
    cam = _camera()
    P = _points()
    uv = cam.project(P)
    x0, y0, side, size = 101, 57, 300, 128
    cell = cam.crop(x0, y0, side, side).resize(size, size)
    uv_cell = cell.project(P)
    # A source pixel coordinate u maps into the cell as (u - x0 + 0.5) * s - 0.5.
    s = size / side
    expected = (uv - [x0, y0] + 0.5) * s - 0.5
    np.testing.assert_allclose(uv_cell, expected, atol=1e-9)
    box_cell = crop_camera(cam, CropBox(x0, y0, side), size)
    np.testing.assert_allclose(box_cell.K, cell.K, atol=1e-9)


def test_crop_image_samples_where_the_camera_says():
    """A bright dot at a known 3D point lands in the cropped image where crop_camera projects it."""
    cam = _camera()
    img = np.zeros((480, 640), np.float32)
    P = np.array([[0.05, -0.03, 1.0]])
    u, v = cam.project(P)[0]
    img[int(round(v)) - 3:int(round(v)) + 4, int(round(u)) - 3:int(round(u)) + 4] = 1.0
    box = CropBox(200.3, 120.7, 260.0)
    cell = crop_image(img, box, 130, nearest=False)
    ys, xs = np.nonzero(cell > 0.5)
    uc, vc = crop_camera(cam, box, 130).project(P)[0]
    assert abs(xs.mean() - uc) < 0.6 and abs(ys.mean() - vc) < 0.6


def test_bad_intrinsics_are_refused():
    with pytest.raises(CameraError, match="focal"):
        PinholeCamera(640, 480, np.zeros((3, 3)))
    with pytest.raises(CameraError, match="size"):
        PinholeCamera(0, 480, np.eye(3))
    with pytest.raises(CameraError, match="distortion"):
        PinholeCamera(640, 480, np.eye(3), distortion_model="weird")
