"""Camera effects: each effect does what its parameter says, off is the identity, seeds repeat."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from sparp_ros.render.camera_effects import CameraEffects, apply_camera_effects


def _image(h: int = 120, w: int = 160, seed: int = 0) -> np.ndarray:
    """Smooth content with an edge, so blur and JPEG have something to change."""
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:h, 0:w]
    img = np.stack([60 + u, 80 + v // 2, np.full_like(u, 120)], -1).astype(np.float64)
    img[40:80, 50:110] = rng.uniform(30, 220, size=3)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_all_off_is_identity() -> None:
    img = _image()
    out = apply_camera_effects(img, np.random.default_rng(1), CameraEffects.off())
    np.testing.assert_array_equal(out, img)
    assert out is not img


def test_noise_std_matches_parameter() -> None:
    flat = np.full((200, 200, 3), 128, np.uint8)
    p = replace(CameraEffects().only("noise"), noise_std_range=(5.0, 5.0),
                shot_noise_range=(0.0, 0.0))
    out = apply_camera_effects(flat, np.random.default_rng(2), p)
    diff = out.astype(np.float64) - 128.0
    assert abs(diff.std() - 5.0) < 0.15                  # rounding adds 1/12 in variance
    assert abs(diff.mean()) < 0.1


def test_jpeg_changes_image_and_lower_quality_changes_more() -> None:
    img = _image()
    errs = []
    for q in (30, 95):
        p = replace(CameraEffects().only("jpeg"), jpeg_quality_range=(q, q))
        out = apply_camera_effects(img, np.random.default_rng(3), p)
        assert out.shape == img.shape and out.dtype == np.uint8
        errs.append(np.abs(out.astype(int) - img).mean())
    assert errs[1] > 0.0                                 # even high quality is lossy
    assert errs[0] > errs[1]


def test_blur_lowers_gradients() -> None:
    img = _image()
    out = apply_camera_effects(img, np.random.default_rng(4), CameraEffects().only("blur"))
    grad = lambda a: np.abs(np.diff(a.astype(float), axis=1)).max()   # noqa: E731
    assert grad(out) < grad(img)


def test_exposure_and_white_balance_and_vignetting() -> None:
    grey = np.full((90, 120, 3), 128, np.uint8)
    p = replace(CameraEffects().only("exposure"), exposure_range=(1.5, 1.5))
    out = apply_camera_effects(grey, np.random.default_rng(5), p)
    assert out.mean() > 150 and np.ptp(out) == 0         # brighter, uniformly
    p = replace(CameraEffects().only("white_balance"), white_balance_range=(0.8, 0.8))
    out = apply_camera_effects(grey, np.random.default_rng(6), p)
    assert out[..., 0].mean() < 128 and out[..., 2].mean() < 128 and out[..., 1].mean() == 128
    out = apply_camera_effects(grey, np.random.default_rng(7), CameraEffects().only("vignetting"))
    assert out[45, 60].mean() >= 127 and out[0, 0].mean() < out[45, 60].mean()


def test_seeded_and_checked() -> None:
    img = _image()
    a = apply_camera_effects(img, np.random.default_rng(8))
    b = apply_camera_effects(img, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="uint8"):
        apply_camera_effects(img.astype(np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError, match="noise_prob"):
        CameraEffects(noise_prob=1.5)
    with pytest.raises(ValueError, match="unknown effect"):
        CameraEffects().only("lens_flare")
