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


def test_fit_to_scales_for_binning_and_refuses_another_aspect_ratio():
    cam = _camera()
    assert cam.fit_to(640, 480) is cam
    half = cam.fit_to(320, 240)
    np.testing.assert_allclose(half.K, cam.resize(320, 240).K)
    assert half.K[0, 0] == 260.0 and half.K[0, 2] == (331.5 + 0.5) / 2 - 0.5
    odd = PinholeCamera(1281, 721, cam.K).fit_to(640, 360)        # binning 2 of an odd size
    assert (odd.width, odd.height) == (640, 360)
    with pytest.raises(CameraError, match="not the same aspect ratio"):
        cam.fit_to(640, 360)                                      # a 16:9 crop of 4:3
    with pytest.raises(CameraError, match="not the same aspect ratio"):
        cam.fit_to(0, 0)


def test_distortion_coefficients_are_checked_and_padded():
    K = _camera().K
    assert PinholeCamera(640, 480, K, D=[0.1, 0.01, 0, 0], distortion_model="plumb_bob").D.size == 5
    assert PinholeCamera(640, 480, K, D=[0.1], distortion_model="rational_polynomial").D.size == 8
    assert PinholeCamera(640, 480, K, D=[0.1, 0, 0, 0, 0], distortion_model="equidistant").D.size == 4
    assert not PinholeCamera(640, 480, K, D=[0.0] * 5, distortion_model="").has_distortion
    with pytest.raises(CameraError, match="non-zero ones past the 4th"):
        PinholeCamera(640, 480, K, D=[0.1, 0, 0, 0, 0.2], distortion_model="equidistant")
    with pytest.raises(CameraError, match="not finite"):
        PinholeCamera(640, 480, K, D=[np.inf, 0, 0, 0, 0], distortion_model="plumb_bob")
    with pytest.raises(CameraError, match="last row"):
        PinholeCamera(640, 480, np.diag([500.0, 500.0, 0.0]))


DISTORTIONS = {"plumb_bob": (-0.25, 0.08, 0.001, -0.002, -0.01),
               "rational_polynomial": (0.3, -0.1, 0.001, 0.002, 0.01, 0.6, -0.05, 0.02),
               "equidistant": (0.08, -0.02, 0.005, -0.001)}


@pytest.mark.parametrize("model", sorted(DISTORTIONS))
def test_undistort_puts_every_point_where_the_ideal_camera_projects_it(model):
    """Dots drawn where the distorted camera sees 3D points land, after undistortion, where the
    ideal camera (same K, no D) projects them; the image keeps its dtype."""
    cam = PinholeCamera(640, 480, _camera().K, D=DISTORTIONS[model], distortion_model=model)
    P = np.c_[np.random.default_rng(3).uniform(-0.4, 0.4, (12, 2)) * [1.0, 0.75], np.ones(12)]
    img = np.zeros((480, 640), np.uint16)
    for u, v in np.round(cam.project(P)).astype(int):
        img[v - 4:v + 5, u - 4:u + 5] = 1000
    ideal = cam.undistorted()
    assert not ideal.has_distortion and np.array_equal(ideal.K, cam.K)
    out = cam.undistort(img, nearest=True)
    assert out.dtype == np.uint16
    for (u, v), (ud, vd) in zip(ideal.project(P), np.round(cam.project(P))):
        ys, xs = np.nonzero(out[int(v) - 12:int(v) + 13, int(u) - 12:int(u) + 13])
        assert len(xs) > 20
        # the dot's centre moves with the local distortion; 1 px covers its rounding
        centre = np.array([xs.mean(), ys.mean()]) + [int(u) - 12, int(v) - 12]
        expected = ideal.project(cam.unproject([[ud, vd]], [1.0]))[0]
        assert np.linalg.norm(centre - expected) < 1.0, (model, centre, expected)
    assert cam.undistort(img > 0, nearest=True).dtype == bool


def test_undistort_blanks_rays_past_where_the_distortion_folds_back():
    """k1 = -0.6: r(1 + k1 r²) peaks at r = 0.75, inside this camera's corners (r ≈ 0.77); past
    it the polynomial maps far rays back onto the image, which must not be sampled."""
    cam = PinholeCamera(640, 480, [[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]],
                        D=[-0.6, 0, 0, 0, 0], distortion_model="plumb_bob")
    out = cam.undistort(np.full((480, 640), 255, np.uint8))
    assert out[0, 0] == 0 and out[-1, -1] == 0          # corners: past the fold
    assert out[240, 320] == 255 and out[240, 20] == 255  # centre and mid-edge: inside
    with pytest.raises(CameraError, match="image is 10x10, camera is 640x480"):
        cam.undistort(np.zeros((10, 10), np.uint8))
