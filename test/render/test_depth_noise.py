"""Stereo depth noise model: each effect measured against its parameter, determinism, bad inputs,
and a noisy capture that differs from the clean one in depth only."""
from __future__ import annotations

import json
from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np
import pytest

from sparp_ros.capture import load_capture
from sparp_ros.cli import main as cli_main
from sparp_ros.render import render_capture
from sparp_ros.render.depth_noise import STEREO_DEFAULT, DepthNoise, apply_depth_noise

H, W = 480, 640
FOCAL = 600.0
# Every effect off: each test switches on the one it measures.
QUIET = DepthNoise(sigma_base_m=0.0, sigma_quadratic=0.0, hole_fraction=0.0, edge_hole_width_px=0,
                   dark_dropout_probability=0.0, specular_dropout_probability=0.0,
                   flying_pixel_probability=0.0, disparity_subpixel=0.0, depth_resolution_m=0.0)
OBJECT = "Folic_Acid.glb"


def _plane(z: float) -> np.ndarray:
    return np.full((H, W), z, np.float32)


def _apply(depth: np.ndarray, noise: DepthNoise, image: np.ndarray | None = None,
           seed: int = 0) -> np.ndarray:
    return apply_depth_noise(depth, image, FOCAL, noise, np.random.default_rng(seed))


def test_axial_noise_std_follows_sigma_of_z() -> None:
    noise = replace(QUIET, sigma_base_m=STEREO_DEFAULT.sigma_base_m,
                    sigma_quadratic=STEREO_DEFAULT.sigma_quadratic)
    std = {}
    for z in (0.5, 1.0):
        err = (_apply(_plane(z), noise) - z).astype(np.float64)
        std[z] = err.std()
        assert std[z] == pytest.approx(noise.sigma(z), rel=0.15)
        assert abs(err.mean()) < 0.05 * noise.sigma(z)              # unbiased
    # 1.425 mm at 0.5 m, 3.3 mm at 1 m: the ratio is the formula's, not linear nor constant
    assert std[1.0] / std[0.5] == pytest.approx(noise.sigma(1.0) / noise.sigma(0.5), rel=0.05)


def test_axial_noise_with_defaults_is_still_millimetre_order() -> None:
    """Quantisation and holes on: over the surviving pixels the error is sigma(z) plus the
    quantisation's (step / sqrt 12), nothing more."""
    z = 1.0
    out = _apply(_plane(z), STEREO_DEFAULT)
    err = (out[out > 0] - z).astype(np.float64)
    step = STEREO_DEFAULT.quantisation_step(z, FOCAL)
    expected = np.hypot(STEREO_DEFAULT.sigma(z), step / np.sqrt(12))
    assert err.std() == pytest.approx(expected, rel=0.15)


@pytest.mark.parametrize("fraction", [STEREO_DEFAULT.hole_fraction, 0.2])
def test_hole_fraction_on_a_flat_plane(fraction: float) -> None:
    out = _apply(_plane(0.7), replace(STEREO_DEFAULT, hole_fraction=fraction))
    assert (out == 0).mean() == pytest.approx(fraction, abs=0.01)


def test_edge_holes_on_the_far_side_of_a_step_only() -> None:
    depth = _plane(0.8)
    depth[:, :W // 2] = 0.5                              # near surface left, far surface right
    for width in (1, 2, 4):
        out = _apply(depth, replace(QUIET, edge_hole_width_px=width))
        holes_cols = np.flatnonzero((out == 0).all(axis=0))
        np.testing.assert_array_equal(holes_cols, np.arange(W // 2, W // 2 + width))
        assert (out == 0).sum() == H * width                 # nowhere else
    # a step below the threshold, and a slanted plane, are surfaces: no holes
    small = _plane(0.8)
    small[:, :W // 2] = 0.8 - 0.5 * STEREO_DEFAULT.edge_threshold_m
    slope = np.tile(np.linspace(0.5, 1.0, W, dtype=np.float32), (H, 1))
    for flat in (small, slope, _plane(0.6)):
        assert (_apply(flat, replace(QUIET, edge_hole_width_px=3)) > 0).all()


def test_flying_pixels_between_foreground_and_background() -> None:
    # Inside the object: a step 0.5 → 0.8; the near-side column moves towards 0.8.
    depth = _plane(0.8)
    depth[:, :W // 2] = 0.5
    out = _apply(depth, replace(QUIET, flying_pixel_probability=1.0))
    near = out[:, W // 2 - 1]
    assert ((near >= 0.5) & (near <= 0.8)).all() and near.std() > 0.05
    np.testing.assert_array_equal(np.delete(out, W // 2 - 1, axis=1),
                                  np.delete(depth, W // 2 - 1, axis=1))
    # At a silhouette against no depth: only the object's rim moves, at most the set distance back.
    obj = np.zeros((H, W), np.float32)
    obj[100:300, 200:400] = 0.6
    noise = replace(QUIET, flying_pixel_probability=0.3, flying_pixel_distance_m=0.1)
    out = _apply(obj, noise)
    rim = np.zeros((H, W), bool)
    rim[100:300, 200:400] = True
    rim[101:299, 201:399] = False
    assert (out[obj == 0] == 0).all()                      # the background stays empty
    np.testing.assert_array_equal(out[(obj > 0) & ~rim], np.float32(0.6))
    moved = out[rim] != np.float32(0.6)
    assert moved.mean() == pytest.approx(0.3, abs=0.05)
    assert (out[rim][moved] > 0.6).all() and (out[rim][moved] <= 0.7 + 1e-6).all()


def test_dark_and_specular_pixels_lose_depth_at_their_probability() -> None:
    image = np.full((H, W, 3), 128, np.uint8)
    image[:, : W // 3] = 5                                  # dark (luminance 5 < 30)
    image[:, 2 * W // 3:] = (255, 255, 250)                 # saturated (luminance ≈ 254 ≥ 250)
    noise = replace(QUIET, dark_dropout_probability=0.4, specular_dropout_probability=0.7)
    holes = _apply(_plane(0.5), noise, image) == 0
    assert holes[:, : W // 3].mean() == pytest.approx(0.4, abs=0.01)
    assert holes[:, 2 * W // 3:].mean() == pytest.approx(0.7, abs=0.01)
    assert not holes[:, W // 3: 2 * W // 3].any()
    # a grey image works as well; without an image there are no such dropouts
    assert (_apply(_plane(0.5), noise, image[..., 0]) == 0)[:, : W // 3].mean() == \
        pytest.approx(0.4, abs=0.01)
    assert (_apply(_plane(0.5), noise) > 0).all()


@pytest.mark.parametrize("z", [0.5, 1.0, 1.5])
def test_disparity_quantisation_step(z: float) -> None:
    noise = replace(QUIET, disparity_subpixel=8.0, baseline_m=0.05)
    ramp = np.linspace(0.97 * z, 1.03 * z, H * W).reshape(H, W).astype(np.float32)
    out = _apply(ramp, noise)
    levels = np.unique(out)
    steps = np.diff(levels)
    # 1.04 / 4.17 / 9.38 mm at 0.5 / 1 / 1.5 m
    expected = z * z / (FOCAL * noise.baseline_m * noise.disparity_subpixel)
    assert noise.quantisation_step(z, FOCAL) == pytest.approx(expected)
    mid = np.argmin(abs(levels[:-1] - z))
    assert steps[mid] == pytest.approx(expected, rel=0.02)
    # everywhere on the ramp the step follows z² (here ±6 %), and rounding moves at most half one
    np.testing.assert_allclose(steps, levels[:-1] ** 2 / (FOCAL * 0.05 * 8.0), rtol=0.02)
    assert np.abs(out - ramp).max() <= 0.5 * 1.04 ** 2 * expected + 1e-6


def test_stored_resolution_is_whole_millimetres() -> None:
    out = _apply(_plane(0.73), STEREO_DEFAULT).astype(np.float64)
    mm = out * 1000.0
    np.testing.assert_allclose(mm, np.round(mm), atol=1e-3)
    assert len(np.unique(out[out > 0])) > 3                    # noise spreads over several mm


def test_deterministic_by_rng() -> None:
    depth = _plane(0.8)
    depth[:, :W // 2] = 0.5
    depth[:50] = 0.0
    image = np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)
    a = _apply(depth, STEREO_DEFAULT, image, seed=3)
    b = _apply(depth, STEREO_DEFAULT, image, seed=3)
    c = _apply(depth, STEREO_DEFAULT, image, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.float32 and a.shape == depth.shape


def test_non_finite_and_negative_depth_is_no_depth() -> None:
    depth = _plane(0.6)
    depth[0, :4] = (np.nan, np.inf, -np.inf, -0.3)
    before = depth.copy()
    for noise in (STEREO_DEFAULT, DepthNoise.none()):
        out = _apply(depth, noise)
        assert np.isfinite(out).all() and (out >= 0).all()
        np.testing.assert_array_equal(out[0, :4], 0.0)
        assert out is not depth
    np.testing.assert_array_equal(depth, before)               # the input is left alone
    # switched off: the clean depth passes through unchanged
    clean = _apply(depth, DepthNoise.none())
    np.testing.assert_array_equal(clean[1:], depth[1:])
    assert not DepthNoise.none().enabled and STEREO_DEFAULT == DepthNoise()


def test_bad_inputs_raise() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="HxW"):
        apply_depth_noise(np.zeros((4, 4, 1), np.float32), None, FOCAL, STEREO_DEFAULT, rng)
    with pytest.raises(ValueError, match="HxW"):
        apply_depth_noise(np.zeros(4, np.float32), None, FOCAL, STEREO_DEFAULT, rng)
    with pytest.raises(ValueError, match="float metres"):
        apply_depth_noise(np.zeros((4, 4), np.uint16), None, FOCAL, STEREO_DEFAULT, rng)
    with pytest.raises(ValueError, match="focal_px"):
        apply_depth_noise(np.zeros((4, 4), np.float32), None, 0.0, STEREO_DEFAULT, rng)
    with pytest.raises(ValueError, match="image"):
        apply_depth_noise(np.zeros((4, 4), np.float32), np.zeros((4, 5, 3), np.uint8), FOCAL,
                          STEREO_DEFAULT, rng)
    with pytest.raises(ValueError, match="image"):
        apply_depth_noise(np.zeros((4, 4), np.float32), np.zeros((4, 4, 3), np.float32), FOCAL,
                          STEREO_DEFAULT, rng)


@pytest.mark.parametrize("field,value", [
    ("sigma_base_m", -0.001), ("sigma_quadratic", float("nan")), ("hole_fraction", 1.5),
    ("hole_fraction", -0.1), ("edge_threshold_m", 0.0), ("edge_hole_width_px", 1.5),
    ("edge_hole_width_px", -1), ("dark_threshold", 300.0), ("specular_threshold", -1.0),
    ("dark_dropout_probability", 2.0), ("specular_dropout_probability", float("inf")),
    ("flying_pixel_probability", 1.01), ("flying_pixel_distance_m", -0.1), ("baseline_m", 0.0),
    ("disparity_subpixel", -8.0), ("depth_resolution_m", "1mm"), ("sigma_base_m", True),
    ("enabled", "yes"),
])
def test_bad_parameters_raise_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        DepthNoise(**{field: value})


def test_parameters_are_frozen_and_documented() -> None:
    with pytest.raises(AttributeError):
        STEREO_DEFAULT.hole_fraction = 0.5                    # type: ignore[misc]
    source = Path(__file__).resolve().parents[2] / "sparp_ros" / "render" / "depth_noise.py"
    text = source.read_text()
    for f in fields(DepthNoise):     # every field has its docstring right below it (the why)
        assert f'{f.name}: ' in text and text.split(f"{f.name}: ", 1)[1].split("\n", 2)[1] \
            .strip().startswith('"""'), f.name


@pytest.fixture(scope="module")
def clean_and_noisy(objects_dir: Path):
    path = objects_dir / OBJECT
    return (render_capture(path, views=3, seed=4),
            render_capture(path, views=3, seed=4, depth_noise=STEREO_DEFAULT))


def test_noisy_capture_differs_in_depth_only(clean_and_noisy) -> None:
    clean, noisy = clean_and_noisy
    assert "depth_noise" not in clean.gt.extra
    assert noisy.gt.extra["depth_noise"] == asdict(STEREO_DEFAULT)
    for Ta, Tb in zip(clean.gt.T_camera_object, noisy.gt.T_camera_object):
        np.testing.assert_array_equal(Ta, Tb)
    diffs = []
    for a, b in zip(clean.frames, noisy.frames):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.mask, b.mask)
        np.testing.assert_array_equal(a.nocs, b.nocs)
        np.testing.assert_array_equal(a.camera.K, b.camera.K)
        np.testing.assert_array_equal(a.T_world_camera, b.T_world_camera)
        assert b.depth.dtype == np.float32 and not np.array_equal(a.depth, b.depth)
        assert (b.depth[~a.mask] == 0).all()                   # no depth appears off the object
        both = a.mask & (b.depth > 0)
        assert 0.6 < both.sum() / a.mask.sum() < 0.99          # holes, but most depth survives
        diffs.append(np.abs(b.depth[both] - a.depth[both]).astype(np.float64))
    median = float(np.median(np.concatenate(diffs)))
    # this object is seen at 0.16–0.23 m: sigma ≈ 0.9 mm, whose |median| is ≈ 0.6 mm, plus the
    # 1 mm rounding
    assert 0.0003 < median < 0.003, median


def test_noisy_capture_is_reproducible_and_saved_with_its_parameters(
        clean_and_noisy, objects_dir: Path, tmp_path: Path) -> None:
    _, noisy = clean_and_noisy
    again = render_capture(objects_dir / OBJECT, tmp_path / "cap", views=3, seed=4,
                           depth_noise=STEREO_DEFAULT)
    for a, b in zip(noisy.frames, again.frames):
        np.testing.assert_array_equal(a.depth, b.depth)
    back = load_capture(tmp_path / "cap")
    assert back.gt.extra["depth_noise"] == asdict(STEREO_DEFAULT)
    for a, b in zip(again.frames, back.frames):                # already whole millimetres
        np.testing.assert_allclose(a.depth, b.depth, atol=1e-6)


def test_cli_render_depth_noise(objects_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cap"
    assert cli_main(["render", "--mesh", str(objects_dir / OBJECT), "--out", str(out),
                     "--views", "1", "--seed", "2", "--depth-noise", "stereo"]) == 0
    gt = json.loads((out / "gt.json").read_text())
    assert gt["depth_noise"] == asdict(STEREO_DEFAULT)
    assert cli_main(["render", "--mesh", str(objects_dir / OBJECT), "--out", str(tmp_path / "c2"),
                     "--views", "1", "--seed", "2"]) == 0
    assert "depth_noise" not in json.loads((tmp_path / "c2" / "gt.json").read_text())
