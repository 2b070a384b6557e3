"""The colour cut that sharpens the learned foreground (``sparp_ros.segment_refine``)."""
import cv2
import numpy as np
import pytest

from sparp_ros.segment_refine import ColourRefinement, refine_foreground, seeds


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return np.count_nonzero(a & b) / np.count_nonzero(a | b)


def _disc_scene(seed: int = 0, size: int = 240):
    """A red disc on a noisy green-blue background, and the disc's true mask."""
    rng = np.random.default_rng(seed)
    img = np.empty((size, size, 3), np.uint8)
    img[...] = (40, 150, 90)
    img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    truth = np.zeros((size, size), np.uint8)
    cv2.circle(truth, (size // 2, size // 2), size // 4, 1, -1)
    truth = truth > 0
    img[truth] = np.clip(np.array([200, 40, 40]) + rng.normal(0, 12, (truth.sum(), 3)), 0, 255)
    return img, truth


def _blurred_guess(truth: np.ndarray, shrink_px: int) -> np.ndarray:
    """What a coarse network gives: the object shrunk and its rim blurred into a probability."""
    inner = cv2.erode(truth.astype(np.uint8), np.ones((2 * shrink_px + 1,) * 2, np.uint8))
    return cv2.GaussianBlur(inner.astype(np.float32), (0, 0), 6)


def test_refinement_recovers_the_rim_a_blurred_probability_misses():
    img, truth = _disc_scene()
    p = _blurred_guess(truth, 12)
    plain = p >= 0.5
    refined = refine_foreground(img, p, ColourRefinement(long_side=0))
    assert _iou(plain, truth) < 0.8
    assert _iou(refined, truth) > 0.95
    assert refined.shape == truth.shape and refined.dtype == bool


def test_refinement_on_a_reduced_copy_keeps_the_image_size():
    img, truth = _disc_scene(size=400)
    p = _blurred_guess(truth, 20)
    refined = refine_foreground(img, p, ColourRefinement(long_side=160))
    assert refined.shape == truth.shape
    assert _iou(refined, truth) > 0.9


def test_off_or_impossible_refinement_is_the_thresholded_probability():
    img, truth = _disc_scene()
    p = _blurred_guess(truth, 12)
    np.testing.assert_array_equal(refine_foreground(img, p, ColourRefinement(iterations=0)), p >= 0.5)
    np.testing.assert_array_equal(refine_foreground(img, p, threshold=0.7,
                                                    r=ColourRefinement(iterations=0)), p >= 0.7)
    # no foreground, or nothing but foreground: GrabCut lacks a colour model; no error
    assert not refine_foreground(img, np.zeros(truth.shape, np.float32)).any()
    assert refine_foreground(img, np.ones(truth.shape, np.float32)).all()
    # one flat colour everywhere: whatever the cut does, a mask of the image's size comes back
    flat = np.full_like(img, 128)
    out = refine_foreground(flat, p)
    assert out.shape == truth.shape and out.dtype == bool


def test_seeds_follow_the_probability():
    p = np.zeros((50, 50), np.float32)
    p[10:40, 10:40] = 0.7
    p[20:30, 20:30] = 0.99
    labels = seeds(p, ColourRefinement(erode_px=1, background_margin_px=2))
    assert labels[25, 25] == cv2.GC_FGD            # confident, inside the eroded core
    assert labels[12, 12] == cv2.GC_PR_FGD         # above the threshold, not confident
    assert labels[0, 0] == cv2.GC_BGD              # far from anything
    assert labels[8, 8] == cv2.GC_PR_BGD           # background next to the object: the cut decides


@pytest.mark.parametrize("kwargs", [{"iterations": -1}, {"sure_foreground": 0.4},
                                    {"sure_background": 0.6}, {"long_side": -5},
                                    {"erode_px": -1}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        ColourRefinement(**kwargs)
