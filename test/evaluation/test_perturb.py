"""The robustness sweep's perturbations do exactly what they claim: focal scaled by the factor,
mask areas removed / hidden as asked, blur keeps the mean and spreads a point along a line,
ground truth untouched."""
from __future__ import annotations

import numpy as np
import pytest

from sparp_ros.camera import PinholeCamera
from sparp_ros.capture import Capture, Frame, GroundTruth
from sparp_ros.evaluation.perturb import (KINDS, cut_mask, erode_mask, motion_blur,
                                          motion_blur_kernel, occluder_box, perturb_capture,
                                          perturb_frame, scale_focal)

CAM = PinholeCamera(160, 120, np.array([[150.0, 0, 81.3], [0, 149.0, 58.7], [0, 0, 1]]))


def _blob_mask(h: int = 120, w: int = 160) -> np.ndarray:
    v, u = np.mgrid[0:h, 0:w]
    return ((u - 80) / 45.0) ** 2 + ((v - 60) / 30.0) ** 2 < 1.0


def _frame(seed: int = 0) -> Frame:
    rng = np.random.default_rng(seed)
    mask = _blob_mask()
    nocs = np.where(mask[..., None], rng.uniform(0.1, 0.9, (120, 160, 3)), 0).astype(np.float32)
    return Frame(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8), CAM,
                 depth=np.full((120, 160), 0.5, np.float32), mask=mask, nocs=nocs,
                 T_world_camera=np.eye(4))


@pytest.mark.parametrize("factor", [0.9, 0.95, 1.05, 1.1])
def test_scale_focal_scales_fx_fy_exactly_and_nothing_else(factor):
    cam = scale_focal(CAM, factor)
    assert cam.K[0, 0] == CAM.K[0, 0] * factor and cam.K[1, 1] == CAM.K[1, 1] * factor
    assert (cam.K[0, 2], cam.K[1, 2]) == (CAM.K[0, 2], CAM.K[1, 2])
    assert (cam.width, cam.height) == (CAM.width, CAM.height)
    assert CAM.K[0, 0] == 150.0                                 # the original is untouched
    with pytest.raises(ValueError):
        scale_focal(CAM, 0.0)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.5])
def test_erode_removes_the_asked_fraction_from_the_rim(fraction):
    mask = _blob_mask()
    out = erode_mask(mask, fraction)
    assert not (out & ~mask).any()                              # only removes
    assert mask.sum() - out.sum() == round(fraction * mask.sum())
    if fraction > 0:
        # the rim goes first: every removed pixel is nearer the boundary than every kept one
        assert not out[0].any() and out[60, 80]                 # centre kept
        removed = mask & ~out
        v, u = np.nonzero(removed)
        r_removed = (((u - 80) / 45.0) ** 2 + ((v - 60) / 30.0) ** 2).min()
        assert r_removed > 0.3                                  # nothing removed near the centre


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5])
def test_cut_removes_the_asked_fraction_on_one_side_of_a_line(fraction):
    mask = _blob_mask()
    out = cut_mask(mask, fraction, np.random.default_rng(3))
    assert not (out & ~mask).any()
    assert mask.sum() - out.sum() == round(fraction * mask.sum())
    # one side of a line: some direction (searched in 0.5° steps) separates the removed pixels
    # from the kept ones, up to the rounding of that search
    removed = np.argwhere(mask & ~out).astype(float)
    kept = np.argwhere(out).astype(float)
    a = np.radians(np.arange(0.0, 360.0, 0.5))
    d = np.stack([np.sin(a), np.cos(a)], axis=1)                 # (row, col) directions
    gap = (kept @ d.T).min(axis=0) - (removed @ d.T).max(axis=0)
    assert gap.max() > -1.0


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_occluder_hides_the_asked_fraction_of_the_object(fraction, seed):
    mask = _blob_mask()
    u0, v0, u1, v1 = occluder_box(mask, fraction, np.random.default_rng(seed))
    assert 0 <= u0 <= u1 < mask.shape[1] and 0 <= v0 <= v1 < mask.shape[0]
    hidden = mask[v0:v1 + 1, u0:u1 + 1].sum() / mask.sum()
    assert abs(hidden - fraction) < 0.02, hidden


@pytest.mark.parametrize("kind", ["occluder", "occluder_in_mask"])
def test_occluder_frame_pastes_a_rectangle_and_updates_the_mask_only_when_asked(kind):
    f = _frame()
    g, info = perturb_frame(f, kind, 0.25, np.random.default_rng(0))
    u0, v0, u1, v1 = info["box"]
    assert abs(info["hidden_fraction"] - 0.25) < 0.02
    inside = np.zeros(f.mask.shape, bool)
    inside[v0:v1 + 1, u0:u1 + 1] = True
    assert np.array_equal(g.image[~inside], f.image[~inside])   # only the box is painted
    assert not np.array_equal(g.image[inside], f.image[inside])
    if kind == "occluder":
        assert np.array_equal(g.mask, f.mask & ~inside)
    else:
        assert np.array_equal(g.mask, f.mask)
    assert g.nocs is f.nocs and g.camera == f.camera            # ground truth kept


@pytest.mark.parametrize("length", [3, 8, 15])
@pytest.mark.parametrize("angle_deg", [0.0, 30.0, 90.0, 135.0])
def test_blur_kernel_is_a_normalised_line_of_the_asked_length(length, angle_deg):
    k = motion_blur_kernel(length, np.radians(angle_deg))
    assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
    assert abs(k.sum() - 1.0) < 1e-6
    c = (k.shape[0] - 1) / 2
    v, u = np.nonzero(k > 1e-6)
    # the support lies along the line through the centre at angle_deg (y down), within a pixel
    a = np.radians(angle_deg)
    off_line = np.abs(-(u - c) * np.sin(a) + (v - c) * np.cos(a))
    assert off_line.max() <= 1.0
    along = (u - c) * np.cos(a) + (v - c) * np.sin(a)
    assert along.max() - along.min() >= length - 2


def test_blur_preserves_the_mean_and_a_constant_image():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    out = motion_blur(img, 9, np.radians(20))
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert abs(out.astype(float).mean() - img.astype(float).mean()) < 0.5
    assert out.std() < img.std()                                # and it does blur
    flat = np.full((50, 60, 3), 77, np.uint8)
    assert np.array_equal(motion_blur(flat, 11, 1.0), flat)
    assert np.array_equal(motion_blur(img, 1, 0.0), img)


def test_blur_spreads_a_point_along_its_direction():
    img = np.zeros((41, 41, 3), np.uint8)
    img[20, 20] = 255
    out = motion_blur(img, 11, 0.0)[..., 0]                     # horizontal
    assert out[20].astype(int).sum() == pytest.approx(255, abs=12)
    assert (out[20, 15:26] > 0).all() and out[:19].max() == 0 and out[22:].max() == 0


def test_perturb_capture_touches_every_view_and_keeps_ground_truth():
    frames = [_frame(s) for s in range(3)]
    gt = GroundTruth([np.eye(4)] * 3, metric=True, object="blob")
    cap = Capture(frames, gt)
    for kind in KINDS:
        level = {"focal": 1.05, "blur": 7}.get(kind, 0.2)
        out, infos = perturb_capture(cap, kind, level, seed=1)
        again, _ = perturb_capture(cap, kind, level, seed=1)
        assert out.gt is gt and len(out.frames) == 3 and len(infos) == 3
        for f, g, h in zip(frames, out.frames, again.frames):
            assert np.array_equal(g.image, h.image) and np.array_equal(g.mask, h.mask)  # seeded
            assert g.depth is f.depth and g.nocs is f.nocs
            assert np.array_equal(g.T_world_camera, f.T_world_camera)
            changed = (not np.array_equal(g.image, f.image) or not np.array_equal(g.mask, f.mask)
                       or not np.array_equal(g.camera.K, f.camera.K))
            assert changed, kind
    with pytest.raises(ValueError):
        perturb_capture(cap, "rain", 0.1)
