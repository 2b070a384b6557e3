"""Metrics on synthetic poses and point sets with known answers (STYLE 11: round trips)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import trimesh

from sparp_ros.capture import Capture, Frame, GroundTruth
from sparp_ros.camera import PinholeCamera
from sparp_ros.conventions import invert_rigid
from sparp_ros.evaluation.metrics import (chamfer_fscore, fscores, mesh_metrics,
                                          relative_rotation_errors,
                                          relative_translation_angle_errors,
                                          relative_translation_errors, scale_error,
                                          summarize_rotation)
from sparp_ros.reconstruction import Reconstruction, ViewPose


def _rot(axis: np.ndarray, deg: float) -> np.ndarray:
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    a = np.radians(deg)
    return np.eye(3) + np.sin(a) * K + (1 - np.cos(a)) * K @ K


def _random_pose(rng: np.random.Generator) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = _rot(rng.normal(size=3), rng.uniform(0, 180))
    T[:3, 3] = rng.normal(size=3) * 0.2 + [0, 0, 0.8]
    return T


@pytest.fixture
def gt_poses() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [_random_pose(rng) for _ in range(5)]


def test_identical_poses_give_zero_errors(gt_poses):
    assert np.allclose(relative_rotation_errors(gt_poses, gt_poses), 0, atol=1e-5)
    assert np.allclose(relative_translation_errors(gt_poses, gt_poses), 0, atol=1e-9)
    assert len(relative_rotation_errors(gt_poses, gt_poses)) == 10  # 5 views -> 10 pairs


def test_known_perturbation_gives_known_error(gt_poses):
    est = [T.copy() for T in gt_poses]
    est[2][:3, :3] = _rot([0.3, -1, 0.2], 7.0) @ est[2][:3, :3]   # turn camera 2 by 7°
    errors = relative_rotation_errors(est, gt_poses)
    pairs = [(i, j) for i in range(5) for j in range(i + 1, 5)]
    for (i, j), e in zip(pairs, errors):
        assert e == pytest.approx(7.0 if 2 in (i, j) else 0.0, abs=1e-4)
    assert summarize_rotation(errors)["median_rotation_error_deg"] == pytest.approx(0.0, abs=1e-4)


def test_object_frame_change_leaves_errors_unchanged(gt_poses):
    rng = np.random.default_rng(1)
    noisy = []
    for T in gt_poses:
        N = np.eye(4)
        N[:3, :3] = _rot(rng.normal(size=3), rng.uniform(1, 20))
        N[:3, 3] = rng.normal(size=3) * 0.01
        noisy.append(N @ T)
    T_o_o2 = _random_pose(rng)                      # any other object frame, e.g. SfM's world
    moved = [T @ T_o_o2 for T in noisy]
    for fn in (relative_rotation_errors, relative_translation_errors,
               relative_translation_angle_errors):
        assert np.allclose(fn(moved, gt_poses), fn(noisy, gt_poses), atol=1e-6)
    # ... and the ground truth in the mesh frame vs an estimate in our object frame: zero error
    assert np.allclose(relative_rotation_errors([T @ T_o_o2 for T in gt_poses], gt_poses), 0,
                       atol=1e-5)


def test_missing_estimate_scores_180_and_inf(gt_poses):
    est = list(gt_poses)
    est[1] = None
    rot = relative_rotation_errors(est, gt_poses)
    trans = relative_translation_errors(est, gt_poses)
    pairs = [(i, j) for i in range(5) for j in range(i + 1, 5)]
    for (i, j), r, t in zip(pairs, rot, trans):
        if 1 in (i, j):
            assert r == 180.0 and math.isinf(t)
        else:
            assert r == pytest.approx(0.0, abs=1e-5) and t == pytest.approx(0.0, abs=1e-9)


def test_translation_error_in_metres_and_relative_to_baseline():
    T0, T1 = np.eye(4), np.eye(4)
    T1[:3, 3] = [-0.5, 0.0, 0.0]                    # camera 1 half a metre to the right
    est1 = T1.copy()
    est1[:3, 3] += [0.0, 0.03, 0.04]                # 5 cm off
    assert relative_translation_errors([T0, est1], [T0, T1]) == pytest.approx([0.05])
    assert relative_translation_errors([T0, est1], [T0, T1], relative=True) == pytest.approx([0.1])
    # direction error is scale-free: a uniformly scaled reconstruction has none
    scaled = [T0, T1.copy()]
    scaled[1][:3, 3] *= 3.0
    assert relative_translation_angle_errors(scaled, [T0, T1]) == pytest.approx([0.0], abs=1e-6)


def test_summarize_rotation():
    s = summarize_rotation([1.0, 10.0, 20.0, 40.0, 180.0])
    assert s == {"median_rotation_error_deg": 20.0, "acc15": 0.4, "acc30": 0.6}
    assert summarize_rotation([])["median_rotation_error_deg"] is None


def test_mismatched_lists_are_rejected(gt_poses):
    with pytest.raises(ValueError, match="T_est has 4 poses"):
        relative_rotation_errors(gt_poses[:4], gt_poses)


def test_chamfer_fscore_known_sets():
    grid = np.stack(np.meshgrid(*[np.arange(5.0)] * 3), -1).reshape(-1, 3)   # spacing 1
    shifted = grid + [0.1, 0.0, 0.0]
    chamfer, f, p, r = chamfer_fscore(shifted, grid, threshold=0.05)
    assert chamfer == pytest.approx(0.1) and f == 0.0 and p == 0.0 and r == 0.0
    chamfer, f, p, r = chamfer_fscore(shifted, grid, threshold=0.2)
    assert chamfer == pytest.approx(0.1) and f == p == r == 1.0
    # an estimate covering half of the truth: precise, half complete
    half = grid[grid[:, 0] < 2.5]
    chamfer, f, p, r = chamfer_fscore(half, grid, threshold=0.5)
    assert p == 1.0 and r == pytest.approx(len(half) / len(grid))
    assert f == pytest.approx(2 * p * r / (p + r))
    assert chamfer == pytest.approx(0.5 * np.mean(np.maximum(grid[:, 0] - 2.0, 0.0)))


def _capture_with_mesh(tmp_path, metric=True) -> tuple[Capture, trimesh.Trimesh, np.ndarray]:
    box = trimesh.creation.box(extents=[0.2, 0.1, 0.3])
    box.apply_translation([0.05, -0.02, 0.15])      # resting on z=0, off-centre: a mesh frame
    path = tmp_path / "box.ply"
    box.export(path)
    T_c_mesh = np.eye(4)
    T_c_mesh[:3, :3] = [[0, -1, 0], [0, 0, -1], [1, 0, 0]]
    T_c_mesh[:3, 3] = [0.0, 0.1, 0.8]
    cam = PinholeCamera(8, 8, np.array([[10.0, 0, 4], [0, 10, 4], [0, 0, 1]]))
    frame = Frame(np.zeros((8, 8, 3), np.uint8), cam)
    cap = Capture([frame], GroundTruth([T_c_mesh], metric=metric, mesh=str(path)), tmp_path)
    return cap, box, T_c_mesh


def test_mesh_metrics_of_the_true_mesh_in_another_object_frame(tmp_path):
    cap, box, T_c_mesh = _capture_with_mesh(tmp_path)
    T_mesh_object = np.eye(4)
    T_mesh_object[:3, :3] = _rot([0, 0, 1], 40.0)
    T_mesh_object[:3, 3] = [0.05, -0.02, 0.15]
    ours = box.copy()
    ours.apply_transform(invert_rigid(T_mesh_object))   # our mesh lives in our object frame
    recon = Reconstruction([ViewPose(T_c_mesh @ T_mesh_object, True)], scale=0.37,
                           scale_source="depth", confidence=1.0, backend="test", mesh=ours)
    m = mesh_metrics(recon, cap)
    assert m["fscore"] > 0.99 and m["chamfer"] < 0.01
    assert m["diagonal_m"] == pytest.approx(np.linalg.norm([0.2, 0.1, 0.3]))
    # a 2 cm pose error shows up in the chamfer distance (~ 2 cm / 0.37 m diagonal)
    T_off = T_c_mesh @ T_mesh_object
    T_off[:3, 3] += [0.02, 0, 0]
    recon.views[0] = ViewPose(T_off, True)
    m2 = mesh_metrics(recon, cap)
    assert 0.03 < m2["chamfer"] < 0.07 and m2["fscore"] < m["fscore"]


def test_the_published_fscore_places_the_mesh_with_the_published_views_pose(tmp_path):
    cap, box, T_c0_mesh = _capture_with_mesh(tmp_path)
    # a second camera, turned 60° about the box's z and moved: its true pose of the box
    T_c1_mesh = T_c0_mesh.copy()
    T_c1_mesh[:3, :3] = T_c0_mesh[:3, :3] @ _rot([0, 0, 1], 60.0)
    T_c1_mesh[:3, 3] += [0.1, 0.0, 0.2]
    cap.frames.append(cap.frames[0])
    cap.gt.T_camera_object.append(T_c1_mesh)
    T_wrong = T_c1_mesh.copy()                          # the model's pose of view 1: 90° off
    T_wrong[:3, :3] = T_c1_mesh[:3, :3] @ _rot([0, 0, 1], 90.0)
    recon = Reconstruction([ViewPose(T_c0_mesh, True, pose_source="registered"),
                            ViewPose(T_wrong, True, pose_source="model")],
                           scale=0.37, scale_source="depth", confidence=1.0, backend="test", mesh=box)
    m = mesh_metrics(recon, cap)
    # view 1's pose is the model's: the result is published in view 0, which places the mesh right
    assert m["published_view"] == 0 and m["fscore_published"] == m["fscore"] > 0.99
    recon.views[1].pose_source = "placed"               # claimed confirmed: published with it
    m = mesh_metrics(recon, cap)
    assert m["published_view"] == 1 and m["fscore"] > 0.99 and m["fscore_published"] < 0.5
    recon.views[1] = ViewPose(T_c1_mesh, True, pose_source="placed")
    assert mesh_metrics(recon, cap)["fscore_published"] > 0.99


def test_mesh_metrics_skip_when_not_applicable(tmp_path):
    cap, box, T_c_mesh = _capture_with_mesh(tmp_path, metric=False)
    recon = Reconstruction([ViewPose(T_c_mesh, True)], 1.0, "prior", 1.0, "test", mesh=box)
    assert mesh_metrics(recon, cap) is None                 # non-metric ground truth
    cap.gt.metric = True
    recon.mesh = None
    assert mesh_metrics(recon, cap) is None                 # no estimated mesh
    recon.mesh = box
    cap.gt.mesh = None
    assert mesh_metrics(recon, cap) is None                 # no true mesh


def test_fscores_at_several_thresholds():
    grid = np.stack(np.meshgrid(*[np.arange(5.0)] * 3), -1).reshape(-1, 3)
    assert fscores(grid, grid, [0.01, 0.02]) == [1.0, 1.0]
    assert fscores(grid + [0.015, 0, 0], grid, [0.01, 0.02, 0.05]) == [0.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="positive"):
        fscores(grid, grid, [0.0])


def _sphere_capture(tmp_path) -> tuple[Capture, float]:
    """A sphere of radius 0.1 m seen by one camera, and its bounding-box diagonal."""
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=0.1)
    sphere.export(tmp_path / "sphere.ply")
    T_c_mesh = np.eye(4)
    T_c_mesh[:3, 3] = [0.02, -0.01, 0.7]
    cam = PinholeCamera(8, 8, np.array([[10.0, 0, 4], [0, 10, 4], [0, 0, 1]]))
    cap = Capture([Frame(np.zeros((8, 8, 3), np.uint8), cam)],
                  GroundTruth([T_c_mesh], metric=True, mesh=str(tmp_path / "sphere.ply")), tmp_path)
    return cap, float(np.linalg.norm(np.ptp(sphere.vertices, axis=0)))


def test_fine_fscores_of_a_perfect_and_an_offset_mesh(tmp_path):
    cap, diagonal = _sphere_capture(tmp_path)
    T = cap.gt.T_camera_object[0]
    perfect = trimesh.creation.icosphere(subdivisions=5, radius=0.1)
    m = mesh_metrics(Reconstruction([ViewPose(T, True)], 0.35, "depth", 1.0, "test",
                                    mesh=perfect), cap)
    # independent surface samples of the same mesh: only the sampling spacing separates them
    assert m["fscore@0.01"] > 0.99 and m["fscore@0.02"] > 0.999 and m["fscore"] == 1.0
    # every point 1.5 % of the diagonal off the truth (a concentric sphere): out at 1 %, in at 2 %
    offset = trimesh.creation.icosphere(subdivisions=5, radius=0.1 + 0.015 * diagonal)
    m = mesh_metrics(Reconstruction([ViewPose(T, True)], 0.35, "depth", 1.0, "test",
                                    mesh=offset), cap)
    assert m["fscore@0.01"] < 0.01 and m["fscore@0.02"] > 0.99 and m["fscore"] == 1.0
    assert m["chamfer"] == pytest.approx(0.015, rel=0.1)


def test_scale_error_from_the_true_diagonal_or_the_baselines(gt_poses):
    recon = Reconstruction([ViewPose(T.copy(), True) for T in gt_poses], scale=0.33,
                           scale_source="depth", confidence=1.0, backend="test")
    cap = Capture([], GroundTruth(gt_poses, metric=True, extra={"canonical": {"diagonal": 0.3}}))
    s = scale_error(recon, cap)
    assert s["method"] == "diagonal" and s["scale_error"] == pytest.approx(0.1)
    # without a stated diagonal: baselines |t_ci_cj|; a 3 % larger world (any object frame) is 3 %
    cap.gt.extra = {}
    T_o_o2 = np.eye(4)
    T_o_o2[:3, :3] = _rot([1, 2, 3], 50.0)
    T_o_o2[:3, 3] = [0.1, 0.0, -0.2]
    for v, T in zip(recon.views, gt_poses):
        v.T_camera_object = T @ T_o_o2
        v.T_camera_object[:3, 3] *= 1.03
    s = scale_error(recon, cap)
    assert s["method"] == "baselines" and s["pairs"] == 10
    assert s["scale_error"] == pytest.approx(0.03)
    recon.views[2] = ViewPose(None, False)                      # a missing view drops its pairs
    assert scale_error(recon, cap)["pairs"] == 6
    cap.gt.metric = False
    assert scale_error(recon, cap) is None


def test_a_measured_size_is_compared_with_the_true_resting_box(tmp_path):
    """A size measured as a resting box's diagonal is compared with the true mesh's resting box,
    not with the box along the mesh file's axes: a box stored turned 30° about up has a larger
    file box (its ``canonical`` diagonal) than its own resting box, which no measurement can know.
    The file's diagonal stays in the record; without the statement the file's diagonal is used."""
    box = trimesh.creation.box(extents=[0.3, 0.1, 0.2])
    box.apply_transform(trimesh.transformations.rotation_matrix(np.radians(30.0), [0, 0, 1]))
    box.apply_translation([0.0, 0.0, 0.1])
    path = tmp_path / "turned_box.ply"
    box.export(path)
    file_diagonal = float(np.linalg.norm(box.bounds[1] - box.bounds[0]))
    resting = float(np.linalg.norm([0.3, 0.1, 0.2]))
    assert file_diagonal > 1.1 * resting
    T = np.eye(4)
    T[:3, 3] = [0.0, 0.0, 1.0]
    cap = Capture([], GroundTruth([T, T], metric=True, mesh=str(path),
                                  extra={"canonical": {"diagonal": file_diagonal}}), tmp_path)
    recon = Reconstruction([ViewPose(T.copy(), True), ViewPose(T.copy(), True)],
                           scale=1.02 * resting, scale_source="depth", confidence=1.0,
                           backend="test", extra={"measured": {"size": {"definition": "resting_box"}}})
    s = scale_error(recon, cap)
    assert s["method"] == "resting_box" and s["scale_error"] == pytest.approx(0.02, abs=1e-6)
    assert s["true_scale_m"] == pytest.approx(resting) and s["true_diagonal_m"] == file_diagonal
    recon.extra = {}
    s = scale_error(recon, cap)
    assert s["method"] == "diagonal"
    assert s["scale_error"] == pytest.approx(abs(1.02 * resting / file_diagonal - 1))
