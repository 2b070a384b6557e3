"""Registration of measured surfaces (geometry.registration) on rendered RGB-D views of a shared
object: a perturbed pose is recovered, a pair that does not overlap is not forced."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from sparp_ros.conventions import invert_rigid, rotation_angle_deg
from sparp_ros.geometry.measured import measured_views, registration_views
from sparp_ros.geometry.registration import (HYPOTHESIS_TIE_BREAK, MOVE_MARGIN, NOISE_SIGMAS,
                                             VIOLATION_WEIGHT, PairFit, RegistrationParams,
                                             _cloud, _pair_violation, agreement,
                                             candidate_score, chain_past_images, depth_noise,
                                             image_agreement, pair_fit, register_views,
                                             untrusted_because, violation_rate)


def _views_and_truth(objects_dir, azimuths, elevations, seed=2, noise=None):
    from sparp_ros.render import render_capture
    capture = render_capture(objects_dir / "Schleich_Hereford_Bull.glb", views=len(azimuths),
                             seed=seed, azimuths_deg=azimuths, elevations_deg=elevations,
                             depth_noise=noise)
    frames = capture.frames
    diagonal = capture.gt.extra["canonical"]["diagonal"]
    return registration_views(frames, measured_views(frames)), capture.gt.T_camera_object, diagonal


def _perturbed(T: np.ndarray, degrees: float, metres: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    axis = rng.normal(size=3)
    delta = np.eye(4)
    delta[:3, :3] = Rotation.from_rotvec(np.radians(degrees) * axis / np.linalg.norm(axis)).as_matrix()
    shift = rng.normal(size=3)
    delta[:3, 3] = metres * shift / np.linalg.norm(shift)
    return T @ delta


def _relative_error_deg(T_a, T_b, gt_a, gt_b) -> float:
    est, true = T_a @ invert_rigid(T_b), gt_a @ invert_rigid(gt_b)
    return rotation_angle_deg(est[:3, :3] @ true[:3, :3].T)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_perturbed_relative_pose_is_recovered_within_a_degree(objects_dir, seed):
    views, gt, diagonal = _views_and_truth(objects_dir, [0.0, 45.0], [20.0, 30.0])
    start = [gt[0], _perturbed(gt[1], 10.0, 0.02, seed)]
    assert _relative_error_deg(*start, *gt) > 9.0
    params = RegistrationParams(voxel=0.003, object_size=diagonal)
    result = register_views(views, start, params, reference=0)
    assert result.registered == [True, True]
    assert np.allclose(result.T_camera_object[0], gt[0], atol=1e-9)     # the reference stays put
    assert _relative_error_deg(*result.T_camera_object, *gt) < 1.0
    assert result.pairs[0].trusted and result.pairs[0].violation < 0.05


def test_views_that_do_not_overlap_are_reported_unregistered_not_forced(objects_dir):
    """Front and back of the bull (180° apart, level cameras) share no surface: the pair is not
    trusted, the second view keeps the pose it came with, and the result says why."""
    views, gt, diagonal = _views_and_truth(objects_dir, [90.0, 270.0], [0.0, 0.0])
    start = [gt[0], _perturbed(gt[1], 8.0, 0.01, 3)]
    result = register_views(views, start, RegistrationParams(voxel=0.003, object_size=diagonal))
    assert result.registered == [True, False]
    assert np.array_equal(result.T_camera_object[1], start[1])
    assert not result.pairs[0].trusted and result.pairs[0].message
    assert "overlap" in result.message


def test_a_view_without_depth_is_left_out(objects_dir):
    views, gt, diagonal = _views_and_truth(objects_dir, [0.0, 45.0], [20.0, 30.0])
    result = register_views([views[0], None], [gt[0], gt[1]],
                            RegistrationParams(voxel=0.003, object_size=diagonal))
    assert result.registered == [True, False] and "fewer than two views" in result.message


def test_points_in_space_a_camera_saw_empty_are_violations(objects_dir):
    views, gt, diagonal = _views_and_truth(objects_dir, [0.0, 45.0], [20.0, 30.0])
    T = gt[0] @ invert_rigid(gt[1])
    points = views[1].points @ T[:3, :3].T + T[:3, 3]
    assert violation_rate(points, views[0], 0.02 * diagonal) < 0.05
    pulled = points - np.array([0.0, 0.0, 0.1 * diagonal])    # 10 % of its size towards camera 0
    assert violation_rate(pulled, views[0], 0.02 * diagonal) > 0.5


def test_depth_noise_is_measured_from_the_depth_itself():
    """A tilted plane with Gaussian noise stored in whole millimetres: the estimate is within 15 %
    of the noise put in, at two levels, and 0 for a view too small to tell."""
    rng = np.random.default_rng(0)
    v, u = np.mgrid[0:120, 0:160]
    plane = 0.6 + 0.0004 * u + 0.0002 * v
    valid = np.ones(plane.shape, bool)
    for sigma in (0.0015, 0.004):
        depth = np.round((plane + rng.normal(0.0, sigma, plane.shape)) * 1000.0) / 1000.0
        assert depth_noise(depth, valid) == pytest.approx(sigma, rel=0.15)
    assert depth_noise(plane, np.zeros(plane.shape, bool)) == 0.0


def test_free_space_tolerance_grows_with_the_measured_depth_noise(objects_dir):
    """Two views of the bull with a stereo sensor's noise, placed at the true poses: the points one
    view measured of a surface the other also measured land in front of it by the two views' noise
    together; the tolerance that grows with that noise counts fewer of them as violations, and a
    view moved 10 % of the object's size towards the camera still violates."""
    from dataclasses import replace as dc_replace

    from sparp_ros.render.depth_noise import DepthNoise
    noisy = DepthNoise(sigma_base_m=0.003, sigma_quadratic=0.004)
    views, gt, diagonal = _views_and_truth(objects_dir, [0.0, 45.0], [20.0, 30.0], noise=noisy)
    assert all(v.noise_m > 0.0015 for v in views)               # measured from the depth
    silent = [dc_replace(v, noise_m=0.0) for v in views]
    T = gt[0] @ invert_rigid(gt[1])
    tolerance = 0.005 * diagonal
    with_noise = _pair_violation(views, 0, 1, T, tolerance)
    without = _pair_violation(silent, 0, 1, T, tolerance)
    assert with_noise < 0.5 * without and with_noise < 0.05
    pulled = T.copy()
    pulled[2, 3] -= 0.1 * diagonal
    assert _pair_violation(views, 0, 1, pulled, tolerance) > 0.3
    assert NOISE_SIGMAS > 0


def test_the_rgbd_stage_finds_each_views_usable_depth_once(objects_dir, monkeypatch):
    """Registration (points, free space), the measured-view check and fusion all use one usable
    depth per view: usable_depth runs once per view, not once per step."""
    from sparp_ros.geometry import fusion, measured
    from sparp_ros.geometry.measured import measure
    from sparp_ros.render import render_capture
    capture = render_capture(objects_dir / "Schleich_Hereford_Bull.glb", views=3, seed=2)
    calls = []
    original = fusion.usable_depth
    counted = lambda *a, **k: calls.append(1) or original(*a, **k)    # noqa: E731
    monkeypatch.setattr(fusion, "usable_depth", counted)
    monkeypatch.setattr(measured, "usable_depth", counted)
    gt = capture.gt.T_camera_object
    result = measure(capture.frames, [list(gt)], capture.gt.extra["canonical"]["diagonal"], 0,
                     use_tf=False)
    assert len(calls) == 3
    registered = result.record["registration"]["registered"]
    assert result.record["poses"] == "registration" and sum(registered) >= 2
    placed = [k for p in result.record["registration"]["placed"] if p["placed"] for k in p["views"]]
    assert result.record["fusion"]["views"] == sum(registered) + len(placed)
    assert result.record["size"]["definition"] == "resting_box"
    assert result.diagonal == pytest.approx(result.record["size"]["diagonal_m"])


def test_registering_the_same_views_twice_gives_the_same_result(objects_dir):
    """The registration's pairs run on two threads and open3d's reductions are not bit-exact
    (ICP repeated on one input differs by ~1e-16): the same inputs must still give the same
    choices (trusted pairs, registered views) and poses equal far below any tolerance a result is
    judged by, whatever order the threads finish in."""
    from sparp_ros.render.depth_noise import STEREO_DEFAULT
    views, gt, diagonal = _views_and_truth(objects_dir, [0.0, 50.0, 100.0], [20.0, 30.0, 25.0],
                                           noise=STEREO_DEFAULT)
    start = [gt[0], _perturbed(gt[1], 10.0, 0.02, 0), _perturbed(gt[2], 8.0, 0.01, 1)]
    params = RegistrationParams(voxel=0.003, object_size=diagonal)
    first, second = (register_views(views, start, params, reference=0) for _ in range(2))
    assert first.registered == second.registered and any(first.registered[1:])
    assert [p.trusted for p in first.pairs] == [p.trusted for p in second.pairs]
    assert [p.message for p in first.pairs] == [p.message for p in second.pairs]
    for a, b in zip(first.T_camera_object, second.T_camera_object):
        assert np.abs(a - b).max() < 1e-9


def test_the_true_poses_agree_better_than_wrong_ones(objects_dir):
    """``agreement`` (overlap minus free-space violations over all pairs) is highest at the true
    poses: a view turned 20° away lowers it, a view without a pose or depth takes no part."""
    views, gt, diagonal = _views_and_truth(objects_dir, [0.0, 45.0, 90.0], [20.0, 30.0, 25.0])
    params = RegistrationParams(voxel=0.003, object_size=diagonal)
    true = agreement(views, gt, params)
    assert true > 0.5
    for k in (1, 2):
        wrong = list(gt)
        wrong[k] = _perturbed(gt[k], 20.0, 0.0, k)
        assert agreement(views, wrong, params) < true - 0.3
    assert agreement(views, [gt[0], gt[1], None], params) == pytest.approx(
        agreement(views[:2], gt[:2], params))
    assert agreement([views[0], None, None], gt, params) == 0.0


def test_one_score_formula_for_every_candidate():
    """``candidate_score``: overlap minus weighted violations, a move margin, a tie break per
    hypothesis rank and the weighted colour difference, each term on its own."""
    assert candidate_score(0.8, 0.0) == pytest.approx(0.8)
    assert candidate_score(0.8, 0.1) == pytest.approx(0.8 - VIOLATION_WEIGHT * 0.1)
    assert candidate_score(0.8, 0.0, moved=True) == pytest.approx(0.8 - MOVE_MARGIN)
    assert candidate_score(0.8, 0.0, rank=2) == pytest.approx(0.8 - 2 * HYPOTHESIS_TIE_BREAK)
    assert candidate_score(0.8, 0.0, colour=0.1, colour_weight=5.0) == pytest.approx(0.3)
    assert candidate_score(0.8, 0.0, colour=0.1) == pytest.approx(0.8)    # colour unweighed


def test_pair_fit_at_the_truth_and_why_a_pair_is_untrusted(objects_dir):
    """At the true relative pose two overlapping views agree (overlap, small RMSE, few
    violations) and are trusted; 20° off the overlap falls and the violations rise;
    ``untrusted_because`` names the first failed test."""
    views, gt, diagonal = _views_and_truth(objects_dir, [0.0, 45.0], [20.0, 30.0])
    params = RegistrationParams(voxel=0.003, object_size=diagonal)
    clouds = {k: _cloud(v.points, params.voxel) for k, v in enumerate(views)}
    truth = pair_fit(views, clouds, 0, 1, gt[0] @ invert_rigid(gt[1]), params)
    assert truth.fitness > 0.5 and truth.violation < 0.05
    assert truth.rmse < params.max_rmse * diagonal
    assert untrusted_because(truth, 0.0, params) == ""
    turned = pair_fit(views, clouds, 0, 1, gt[0] @ invert_rigid(_perturbed(gt[1], 20.0, 0.0, 1)), params)
    assert turned.fitness < truth.fitness and turned.violation > truth.violation
    assert "overlap" in untrusted_because(PairFit(0.1, 0.0, 0.0), 0.0, params)
    assert "free space" in untrusted_because(PairFit(0.9, 0.0, 0.5), 0.0, params)
    assert "rmse" in untrusted_because(PairFit(0.9, 1.0, 0.0), 0.0, params)
    assert "moved" in untrusted_because(PairFit(0.9, 0.0, 0.0), 90.0, params)
    assert "images agree" in untrusted_because(PairFit(0.9, 0.0, 0.0), 0.0, params, image=0.2)
    assert untrusted_because(PairFit(0.9, 0.0, 0.0), 0.0, params, image=None) == ""


def test_image_agreement_is_high_at_the_true_pose_and_falls_when_turned(objects_dir):
    """The grey values of one view's surface against the other view's image: near 1 at the true
    relative pose, lower a quarter turn about up away, 0 where nothing lands on the other view's
    surface, None where a view has no grey image."""
    from sparp_ros.conventions import rot_z
    views, gt, diagonal = _views_and_truth(objects_dir, [0.0, 40.0], [20.0, 30.0])
    tolerance = 0.02 * diagonal
    truth = gt[0] @ invert_rigid(gt[1])
    at_truth = image_agreement(views, 0, 1, truth, tolerance)
    assert at_truth > 0.9
    turn = np.eye(4)
    turn[:3, :3] = rot_z(np.radians(90.0))
    assert image_agreement(views, 0, 1, gt[0] @ turn @ invert_rigid(gt[1]), tolerance) < at_truth - 0.1
    far = truth.copy()
    far[:3, 3] += [5.0, 0.0, 0.0]
    assert image_agreement(views, 0, 1, far, tolerance) == 0.0
    views[1].grey = None
    assert image_agreement(views, 0, 1, truth, tolerance) is None


def test_a_pair_whose_images_disagree_is_not_trusted(objects_dir):
    """The same two overlapping views register from a perturbed start; with one view's image
    replaced by another texture (what a wrong placement puts on top of each other) the pair is
    reported untrusted for its images, and with the test off it is trusted again."""
    views, gt, diagonal = _views_and_truth(objects_dir, [0.0, 45.0], [20.0, 30.0])
    start = [gt[0], _perturbed(gt[1], 5.0, 0.005, 0)]
    params = RegistrationParams(voxel=0.003, object_size=diagonal)
    result = register_views(views, start, params)
    assert result.pairs[0].trusted and result.pairs[0].image > 0.9
    rng = np.random.default_rng(0)
    views[1].grey = rng.uniform(0, 255, views[1].grey.shape).astype(np.float32)
    result = register_views(views, start, params)
    assert not result.pairs[0].trusted and "images agree" in result.pairs[0].message
    assert result.registered == [True, False]
    assert result.pairs[0].shape_trusted                # the surfaces alone would trust it
    # neither a trusted pair nor the placement fixed view 1: the pair its surfaces trusted does
    poses, chained = chain_past_images(result.T_camera_object, result.registered, result.pairs)
    assert chained == [1]
    assert _relative_error_deg(*poses, *gt) < 1.0
    off = RegistrationParams(voxel=0.003, object_size=diagonal, min_image_agreement=0.0)
    result = register_views(views, start, off)
    assert result.pairs[0].trusted and result.pairs[0].image is None


def test_a_view_far_off_in_heading_is_found_by_the_search_all_round(objects_dir):
    """The model's pose of view 1 turned 120° about up: the pair search from it (±20°) cannot
    register the view; the search all round registers it to the fixed view within 2°, records
    the pair, and leaves fixed views and views without depth alone."""
    from sparp_ros.geometry.registration import search_all_round
    views, gt, diagonal = _views_and_truth(objects_dir, [0.0, 45.0], [20.0, 30.0])
    params = RegistrationParams(voxel=0.003, object_size=diagonal)
    turn = np.eye(4)
    turn[:3, :3] = Rotation.from_euler("z", 120, degrees=True).as_matrix()
    start = [gt[0], gt[1] @ turn]
    assert register_views(views, start, params).registered == [True, False]
    poses, pairs = search_all_round(views, start, [True, False], params)
    assert [(p.i, p.j) for p in pairs] == [(0, 1)] and pairs[0].shape_trusted
    assert np.allclose(poses[0], gt[0])
    assert _relative_error_deg(*poses, *gt) < 2.0
    assert search_all_round(views, start, [True, True], params)[1] == []
    assert search_all_round([views[0], None], start, [True, False], params)[1] == []


@pytest.mark.parametrize("axis", ["zx", "zy"])
def test_the_search_all_round_takes_a_view_whose_model_pose_is_tilted_far_off(objects_dir, axis):
    """The model's pose of view 1 turned 120° and tilted 50°: no turn about up reaches the
    truth, ICP must fix the tilt, a move farther than the pair search allows
    (``max_correction_deg`` 45°: with it, nothing was found); the search all round has no
    preferred pose and takes it."""
    from sparp_ros.geometry.registration import search_all_round
    views, gt, diagonal = _views_and_truth(objects_dir, [0.0, 30.0], [20.0, 20.0])
    params = RegistrationParams(voxel=0.003, object_size=diagonal)
    off = np.eye(4)
    off[:3, :3] = Rotation.from_euler(axis, [120, 50], degrees=True).as_matrix()
    start = [gt[0], gt[1] @ off]
    poses, pairs = search_all_round(views, start, [True, False], params)
    assert [(p.i, p.j) for p in pairs] == [(0, 1)] and pairs[0].trusted
    assert _relative_error_deg(*poses, *gt) < 2.0


def test_a_view_only_the_search_all_round_finds_is_fused_and_says_so(objects_dir):
    """In the RGB-D stage, a view the model turned 120° off is reached neither by the pairs nor
    by the placement; the search all round registers it, its depth is fused, and its pose
    source is ``searched`` (right less often than ``registered``), not ``registered``."""
    from sparp_ros.geometry.measured import measure
    from sparp_ros.render import render_capture
    capture = render_capture(objects_dir / "Schleich_Hereford_Bull.glb", views=2, seed=2,
                             azimuths_deg=[0.0, 45.0], elevations_deg=[20.0, 30.0])
    gt = capture.gt.T_camera_object
    turn = np.eye(4)
    turn[:3, :3] = Rotation.from_euler("z", 120, degrees=True).as_matrix()
    diagonal = capture.gt.extra["canonical"]["diagonal"]
    result = measure(capture.frames, [[gt[0], gt[1] @ turn]], diagonal, 0, use_tf=False)
    record = result.record["registration"]
    assert result.pose_sources == ["registered", "searched"]
    assert [p["views"] for p in record["searched_all_round"]] == [[0, 1]]
    assert result.record["fusion"]["views"] == 2
    assert _relative_error_deg(*result.T_camera_object, *gt) < 2.0
    off = measure(capture.frames, [[gt[0], gt[1] @ turn]], diagonal, 0, use_tf=False,
                  search_unplaced=False)
    assert off.pose_sources == ["registered", "model"] and off.record["fusion"]["views"] == 1


def test_only_pairs_refused_for_their_images_chain_views_the_rest_left_unfixed():
    """``chain_past_images`` grows from the fixed views through pairs whose surfaces passed
    (``shape_trusted``) and which the images refused; a pair the surfaces refused, or a view
    already fixed, is left alone."""
    from sparp_ros.geometry.registration import PairResult
    turn = np.eye(4)
    turn[:3, :3] = Rotation.from_euler("z", 30, degrees=True).as_matrix()
    poses = [np.eye(4), np.eye(4), np.eye(4), np.eye(4)]
    refused = dict(fitness=0.8, rmse=0.001, violation=0.02, trusted=False)
    pairs = [PairResult(0, 1, turn, message="images agree 0.2 < 0.5", shape_trusted=True, **refused),
             PairResult(1, 2, turn, message="images agree 0.3 < 0.5", shape_trusted=True, **refused),
             PairResult(0, 3, turn, message="overlap 0.10 < 0.30", shape_trusted=False, **refused)]
    out, chained = chain_past_images(poses, [True, False, False, False], pairs)
    assert chained == [1, 2]
    assert np.allclose(out[1], invert_rigid(turn))               # T_c1_o = T_c1_c0 T_c0_o
    assert np.allclose(out[2], invert_rigid(turn) @ invert_rigid(turn))
    assert np.allclose(out[3], np.eye(4))                        # untouched
    out, chained = chain_past_images(poses, [True, True, True, False], pairs)
    assert chained == [] and all(np.allclose(T, np.eye(4)) for T in out)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="voxel"):
        RegistrationParams(voxel=0.0, object_size=0.2)
    with pytest.raises(ValueError, match="min_fitness"):
        RegistrationParams(voxel=0.002, object_size=0.2, min_fitness=1.5)
    with pytest.raises(ValueError, match="colour_weight"):
        RegistrationParams(voxel=0.002, object_size=0.2, colour_weight=-1.0)
    with pytest.raises(ValueError, match="min_image_agreement"):
        RegistrationParams(voxel=0.002, object_size=0.2, min_image_agreement=1.5)


def test_chromaticity_drops_brightness_and_dark_colours():
    from sparp_ros.geometry.registration import chromaticity
    c = chromaticity(np.array([[200, 100, 100], [100, 50, 50], [128, 128, 128], [10, 5, 5]]))
    np.testing.assert_allclose(c[0], [0.5, 0.25, 0.25])
    np.testing.assert_allclose(c[1], c[0])                 # half as bright, the same colour
    np.testing.assert_allclose(c[2], [1 / 3] * 3)
    assert np.isnan(c[3]).all()                             # too dark to say


def test_colour_difference_tells_a_turned_print_from_the_true_placement():
    """A flat, half red, half blue patch seen by two views: turned 180° about its normal it fits
    as well in shape, and its colours disagree."""
    from sparp_ros.geometry.registration import _cloud, chromaticity, colour_difference
    g = np.linspace(-0.05, 0.05, 60)
    x, y = np.meshgrid(g, g)
    points = np.column_stack([x.ravel(), y.ravel(), np.full(x.size, 0.5)])
    rgb = np.where((x.ravel() < 0)[:, None], [[200, 40, 40]], [[40, 40, 200]])
    cloud = _cloud(points, 0.004, chromaticity(rgb))
    clouds = {0: cloud, 1: cloud}
    turned = np.eye(4)
    turned[:3, :3] = Rotation.from_euler("z", 180, degrees=True).as_matrix()
    turned[:3, 3] = [0.0, 0.0, 0.0]                          # about the camera axis through the patch
    same = colour_difference(clouds, 0, 1, np.eye(4), 0.004)
    flipped = colour_difference(clouds, 0, 1, turned, 0.004)
    assert same < 0.01
    assert flipped > 0.5
    no_colour = {0: _cloud(points, 0.004), 1: _cloud(points, 0.004)}
    assert colour_difference(no_colour, 0, 1, turned, 0.004) == 0.0


def test_an_unregistered_view_is_placed_against_the_registered_ones(objects_dir):
    """A view the pair registration left out (here: declared so) starts 10° off; placed against
    the two registered views' union it comes back to within 2° and may be fused."""
    from sparp_ros.geometry.registration import place_unregistered
    views, gt, diagonal = _views_and_truth(objects_dir, [0.0, 45.0, 90.0], [20.0, 30.0, 25.0])
    start = [gt[0], gt[1], _perturbed(gt[2], 10.0, 0.01, 4)]
    assert _relative_error_deg(start[0], start[2], gt[0], gt[2]) > 9.0
    params = RegistrationParams(voxel=0.003, object_size=diagonal)
    poses, placements = place_unregistered(views, start, [True, True, False], params)
    assert [p.views for p in placements] == [[2]] and placements[0].placed
    assert placements[0].violation <= params.max_violation and placements[0].fitness > 0.3
    assert _relative_error_deg(poses[0], poses[2], gt[0], gt[2]) < 2.0
    assert np.array_equal(poses[0], start[0]) and np.array_equal(poses[1], start[1])
    assert placements[0].to_dict()["placed"] is True


def test_a_view_that_would_cut_through_seen_free_space_is_not_placed(objects_dir):
    """A view turned 90° about the up axis (beyond the placement's reach of 45°) puts its surface
    where the registered view saw empty space: it keeps its pose, is not placed, and says why."""
    from sparp_ros.geometry.registration import place_unregistered
    views, gt, diagonal = _views_and_truth(objects_dir, [0.0, 45.0], [20.0, 30.0])
    turn = np.eye(4)
    turn[:3, :3] = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    start = [gt[0], gt[1] @ turn]
    params = RegistrationParams(voxel=0.003, object_size=diagonal)
    poses, placements = place_unregistered(views, start, [True, False], params)
    assert len(placements) == 1 and not placements[0].placed
    assert placements[0].violation > params.max_violation and "free space" in placements[0].message
    assert np.array_equal(poses[1], start[1])


def test_placement_has_nothing_to_do_when_every_view_is_registered_or_lacks_depth(objects_dir):
    from sparp_ros.geometry.registration import place_unregistered
    views, gt, diagonal = _views_and_truth(objects_dir, [0.0, 45.0], [20.0, 30.0])
    params = RegistrationParams(voxel=0.003, object_size=diagonal)
    assert place_unregistered(views, gt, [True, True], params)[1] == []
    assert place_unregistered([views[0], None], gt, [True, False], params)[1] == []
    assert place_unregistered(views, [gt[0], None], [True, False], params)[1] == []


def test_a_group_that_does_not_fit_as_a_whole_is_placed_view_by_view(objects_dir):
    """Two unregistered views joined by a trusted but wrong pair (view 2 turned 60° from view 1)
    move as one group; the group cuts through the registered view's free space, so each view is
    tried on its own from its own pose, and both are placed where they belong."""
    from sparp_ros.geometry.registration import PairResult, place_unregistered
    views, gt, diagonal = _views_and_truth(objects_dir, [0.0, 45.0, 90.0], [20.0, 30.0, 25.0])
    turn = np.eye(4)
    turn[:3, :3] = Rotation.from_euler("z", 60, degrees=True).as_matrix()
    wrong = PairResult(1, 2, gt[1] @ invert_rigid(gt[2] @ turn), fitness=0.9, rmse=0.001,
                       violation=0.0, trusted=True)
    params = RegistrationParams(voxel=0.003, object_size=diagonal)
    poses, placements = place_unregistered(views, gt, [True, False, False], params, [wrong])
    assert [p.views for p in placements] == [[1], [2]]
    assert all(p.placed for p in placements)
    for k in (1, 2):
        assert _relative_error_deg(poses[0], poses[k], gt[0], gt[k]) < 2.0


def test_a_wrong_pair_does_not_chain_a_view_through_seen_free_space(objects_dir):
    """The chain of trusted pairs admits a view only where its surface keeps out of the space
    every view already chained saw empty: a trusted pair that puts view 2 turned 90° (a print or
    a table repeated on the object) leaves it out, while a right pair, even one ranked after
    the wrong one, brings it in."""
    from sparp_ros.geometry.registration import PairResult, _chain, _keeps_free_space
    views, gt, diagonal = _views_and_truth(objects_dir, [0.0, 45.0, 90.0], [20.0, 30.0, 25.0])
    turn = np.eye(4)
    turn[:3, :3] = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    params = RegistrationParams(voxel=0.003, object_size=diagonal)
    admits = _keeps_free_space(views, params)

    def pair(i, j, T_cj_o, fitness):
        return PairResult(i, j, gt[i] @ invert_rigid(T_cj_o), fitness=fitness, rmse=0.001,
                          violation=0.0, trusted=True)
    right01, wrong12, right02 = pair(0, 1, gt[1], 0.8), pair(1, 2, gt[2] @ turn, 0.9), pair(0, 2, gt[2], 0.5)
    assert sorted(_chain(0, gt[0], [right01, wrong12])) == [0, 1, 2]         # no test: forced in
    assert sorted(_chain(0, gt[0], [right01, wrong12], admits)) == [0, 1]
    chained = _chain(0, gt[0], [right01, wrong12, right02], admits)
    assert sorted(chained) == [0, 1, 2]
    assert _relative_error_deg(chained[0], chained[2], gt[0], gt[2]) < 0.01



@pytest.mark.parametrize("by", ["print", "images", None])
def test_a_view_follows_its_partner_through_a_pair_the_print_confirmed(objects_dir, by):
    """Views 1 and 2, joined by a trusted pair, are unregistered; view 1's model pose is turned
    90°, so the group does not fit and each member is placed on its own: view 2 is placed, view
    1 (beyond the placement's reach) is not. Where the print (or the table, or images that agree
    as well as ``STRONG_IMAGE_AGREEMENT`` asks) confirmed their pair, view 1 follows view 2
    through it and keeps the registered view's free space; a pair only trusted leaves it where
    it was."""
    from sparp_ros.geometry.registration import PairResult, place_unregistered
    views, gt, diagonal = _views_and_truth(objects_dir, [0.0, 45.0, 90.0], [20.0, 30.0, 25.0])
    turn = np.eye(4)
    turn[:3, :3] = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    confirmed = by is not None
    pair = PairResult(1, 2, gt[1] @ invert_rigid(gt[2]), fitness=0.9, rmse=0.001, violation=0.0,
                      trusted=True, match_confirmed=by == "print",
                      matches=40 if by == "print" else None,
                      image=0.97 if by == "images" else 0.8)
    start = [gt[0], gt[1] @ turn, gt[2]]
    params = RegistrationParams(voxel=0.003, object_size=diagonal)
    poses, placements = place_unregistered(views, start, [True, False, False], params, [pair])
    assert [(p.views, p.placed) for p in placements[:2]] == [([1], False), ([2], True)]
    if confirmed:
        follow = placements[-1]
        assert follow.views == [1] and follow.placed and "follows view 2" in follow.message
        assert f"the {by} confirmed" in follow.message
        assert follow.violation <= params.max_violation
        assert _relative_error_deg(poses[0], poses[1], gt[0], gt[1]) < 2.0
    else:
        assert np.array_equal(poses[1], start[1])


def test_a_pair_far_from_its_start_is_trusted_where_its_images_confirm_it(objects_dir):
    """ICP from a start 49° off (tilted 35° and turned 35°) reaches the true relative pose: the
    move limit (``max_correction_deg``, 45°) alone would refuse the pair, but its images agree
    at least ``STRONG_IMAGE_AGREEMENT`` and its surfaces keep each other's free space, so it is
    trusted; without images to compare, the move limit refuses it."""
    from sparp_ros.geometry.registration import STRONG_IMAGE_AGREEMENT, register_pair
    views, gt, diagonal = _views_and_truth(objects_dir, [0.0, 45.0], [20.0, 30.0])
    params = RegistrationParams(voxel=0.003, object_size=diagonal, azimuth_starts_deg=(0.0,))
    off = np.eye(4)
    off[:3, :3] = Rotation.from_euler("xz", [35, 35], degrees=True).as_matrix()
    assert rotation_angle_deg(off[:3, :3]) > params.max_correction_deg
    start = gt[0] @ invert_rigid(gt[1] @ off)
    clouds = [_cloud(v.points, params.voxel, v.chromaticity) for v in views]
    pair = register_pair(views, clouds, 0, 1, [start], gt[0], params)
    assert pair.trusted and pair.image >= STRONG_IMAGE_AGREEMENT
    assert _relative_error_deg(gt[0], invert_rigid(pair.T_ci_cj) @ gt[0], *gt) < 1.0
    for view in views:
        view.grey = None
    pair = register_pair(views, clouds, 0, 1, [start], gt[0], params)
    assert not pair.trusted and pair.message.startswith("moved")


def test_a_view_placed_joins_the_anchors_of_the_views_placed_after_it(objects_dir):
    """Views 1 and 2 are unregistered, with no trusted pair between them; view 2 overlaps the
    registered view 0 too little to be placed against it (0.02 at the truth), but view 1 well
    (0.3). View 1, placed first, joins the anchors, and view 2 is placed against both: from 15°
    off to within 6°."""
    from sparp_ros.geometry.registration import pair_fit, place_unregistered
    views, gt, diagonal = _views_and_truth(objects_dir, [0.0, 70.0, 140.0], [20.0, 30.0, 25.0])
    params = RegistrationParams(voxel=0.003, object_size=diagonal)
    clouds = [_cloud(v.points, params.voxel) for v in views]
    assert pair_fit(views, clouds, 0, 2, gt[0] @ invert_rigid(gt[2]), params).fitness < 0.05
    assert pair_fit(views, clouds, 1, 2, gt[1] @ invert_rigid(gt[2]), params).fitness > params.min_fitness
    off = np.eye(4)
    off[:3, :3] = Rotation.from_euler("z", 15, degrees=True).as_matrix()
    start = [gt[0], gt[1] @ off, gt[2] @ off.T]
    poses, placements = place_unregistered(views, start, [True, False, False], params, [])
    assert [(p.views, p.placed) for p in placements] == [([1], True), ([2], True)]
    assert placements[1].fitness >= params.min_fitness
    assert _relative_error_deg(poses[0], poses[1], gt[0], gt[1]) < 2.0
    assert _relative_error_deg(poses[0], poses[2], gt[0], gt[2]) < 6.0


def test_a_view_with_little_overlap_keeps_the_models_turn_and_takes_its_position_from_the_surfaces(
        objects_dir):
    """View 1 overlaps the registered view 0 only 0.14 at the truth: too little for ICP to measure
    its turn. Its model pose has the right turn but lies 2 cm off, where 68 % of its points fall
    in the space view 0 saw empty, and the model's pose as it is cannot be placed. Moved onto
    view 0's surface without turning, it is placed, its turn untouched and its position within
    1 cm of the truth."""
    from sparp_ros.geometry.registration import LOW_OVERLAP_VIOLATION, pair_fit, place_unregistered
    views, gt, diagonal = _views_and_truth(objects_dir, [0.0, 120.0], [20.0, 30.0])
    params = RegistrationParams(voxel=0.003, object_size=diagonal)
    clouds = [_cloud(v.points, params.voxel) for v in views]
    assert pair_fit(views, clouds, 0, 1, gt[0] @ invert_rigid(gt[1]), params).fitness < params.min_fitness
    start = [gt[0], gt[1].copy()]
    start[1][1, 3] += 0.02
    poses, placements = place_unregistered(views, start, [True, False], params)
    assert len(placements) == 1 and placements[0].placed, placements[0].message
    assert placements[0].violation <= LOW_OVERLAP_VIOLATION * params.max_violation
    assert placements[0].correction_deg < 1e-6                     # the model's turn kept
    assert _relative_error_deg(poses[0], poses[1], gt[0], gt[1]) < 1e-6
    relative, true = poses[0] @ invert_rigid(poses[1]), gt[0] @ invert_rigid(gt[1])
    assert np.linalg.norm(relative[:3, 3] - true[:3, 3]) < 0.01


def test_a_pair_whose_model_start_keeps_its_surfaces_apart_is_registered_from_their_centres(
        objects_dir):
    """Two overlapping views of the bull (overlap 0.87), the model's start 6° off in turn and a
    quarter of the object's size (4 cm) off in position: further apart than ICP's coarse gate,
    so no start of the model's finds the overlap and the pair is untrusted. Recentred (the
    start's turn, the clouds' centres together), the pair is trusted, its turn within 2° and
    its position within 1 cm of the truth."""
    from sparp_ros.geometry.registration import register_pair
    views, gt, diagonal = _views_and_truth(objects_dir, [0.0, 45.0], [20.0, 30.0])
    params = RegistrationParams(voxel=0.003, object_size=diagonal)
    clouds = {k: _cloud(v.points, params.voxel, v.chromaticity) for k, v in enumerate(views)}
    true = gt[0] @ invert_rigid(gt[1])
    start = invert_rigid(_perturbed(invert_rigid(true), 6.0, 0.0, 4))
    start[:3, 3] += 0.25 * diagonal * np.array([0.6, 0.0, 0.8])
    assert params.coarse_distance < 0.25
    apart = register_pair(views, clouds, 0, 1, [start], gt[0], params, recentre=0)
    assert not apart.trusted and apart.fitness < params.min_fitness
    pair = register_pair(views, clouds, 0, 1, [start], gt[0], params)
    assert pair.trusted, pair.message
    assert rotation_angle_deg(pair.T_ci_cj[:3, :3] @ true[:3, :3].T) < 2.0
    assert np.linalg.norm(pair.T_ci_cj[:3, 3] - true[:3, 3]) < 0.01
