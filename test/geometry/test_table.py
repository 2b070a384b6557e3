"""The table around the object (geometry.table) and what it decides in the registration: two
views of a round object on a printed table agree at the true pose and not when turned, the table
search finds the turn, and a turn the object's own surfaces cannot measure (a surface of
revolution of one colour) comes from the table. Ray-cast scenes: a grey cylinder on a table whose
print is a fixed function of the world's x and y."""
from __future__ import annotations

import numpy as np
import pytest

from camera_poses import camera_on_sphere
from ray_cylinder import cylinder_side, pixel_rays

from sparp_ros.camera import PinholeCamera
from sparp_ros.capture import Frame
from sparp_ros.conventions import invert_rigid, rot_z, rotation_angle_deg
from sparp_ros.geometry.measured import (depth_noises, measured_views, registration_views,
                                         support_planes, usable_depths)
from sparp_ros.geometry.registration import RegistrationParams, register_views
from sparp_ros.geometry.table import table_agreement, table_search, table_view

CAMERA = PinholeCamera(320, 240, np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]]))
RADIUS, HEIGHT = 0.04, 0.12
DIAGONAL = float(np.sqrt((2 * RADIUS) ** 2 * 2 + HEIGHT ** 2))


def _camera_pose(azimuth_deg: float, elevation_deg: float, distance: float = 0.5) -> np.ndarray:
    """T_world_camera (OpenCV axes) on a sphere about the cylinder's middle, looking at it."""
    return camera_on_sphere(azimuth_deg, elevation_deg, np.array([0.0, 0.0, HEIGHT / 2]), distance)


def _print(x: np.ndarray, y: np.ndarray, printed: bool) -> np.ndarray:
    """The table's colour at world (x, y): waves of several directions and lengths (no period
    within the table), or one flat colour."""
    if not printed:
        return np.broadcast_to(np.array([150.0, 120.0, 90.0]), x.shape + (3,))
    rng = np.random.default_rng(7)
    channels = []
    for _ in range(3):
        value = np.full(x.shape, 128.0)
        for _ in range(6):
            k = rng.uniform(15, 60) * np.array([np.cos(a := rng.uniform(0, np.pi)), np.sin(a)])
            value += 25 * np.sin(2 * np.pi * (k[0] * x + k[1] * y) + rng.uniform(0, 2 * np.pi))
        channels.append(value)
    return np.stack(channels, -1)


def _frame(T_world_camera: np.ndarray, printed: bool = True) -> Frame:
    """A ray-cast RGB-D view of the cylinder (one grey, standing at the origin) on the table."""
    o, d = pixel_rays(CAMERA.K, CAMERA.width, CAMERA.height, T_world_camera)
    t_side = cylinder_side(o, d, RADIUS, HEIGHT)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_top = (HEIGHT - o[2]) / d[..., 2]
        top_xy = o[:2] + t_top[..., None] * d[..., :2]
        t_top = np.where((t_top > 0) & (np.hypot(top_xy[..., 0], top_xy[..., 1]) <= RADIUS),
                         t_top, np.inf)
        t_table = np.where(d[..., 2] < 0, -o[2] / d[..., 2], np.inf)
    t_object = np.minimum(t_side, t_top)
    mask = np.isfinite(t_object) & (t_object < t_table)
    t = np.where(mask, t_object, t_table)
    hit = o + np.where(np.isfinite(t), t, 0.0)[..., None] * d
    image = np.where(mask[..., None], 140.0, _print(hit[..., 0], hit[..., 1], printed))
    image = np.where(np.isfinite(t)[..., None], image, 0.0)
    depth = np.where(np.isfinite(t), t, 0.0).astype(np.float32)      # t along a z = 1 ray
    return Frame(np.clip(image, 0, 255).astype(np.uint8), CAMERA, depth=depth, mask=mask)


def _scene(azimuths, printed: bool = True, elevation: float = 35.0):
    poses = [_camera_pose(a, elevation) for a in azimuths]
    frames = [_frame(T, printed) for T in poses]
    usable = usable_depths(frames)
    noises = depth_noises(usable)
    planes = support_planes(frames, usable, noises)
    views = registration_views(frames, measured_views(frames, usable), usable, planes, noises,
                               DIAGONAL)
    gt = [invert_rigid(T) for T in poses]          # T_camera_object: the object frame is the world's
    return frames, planes, views, gt


def _turned(T_ci_cj: np.ndarray, T_ci_o: np.ndarray, degrees: float) -> np.ndarray:
    turn = np.eye(4)
    turn[:3, :3] = rot_z(np.radians(degrees))
    return T_ci_o @ turn @ invert_rigid(T_ci_o) @ T_ci_cj


def _error_deg(T, U) -> float:
    return rotation_angle_deg(T[:3, :3] @ U[:3, :3].T)


@pytest.fixture(scope="module")
def printed_scene():
    return _scene([0.0, 70.0])


def test_every_view_sees_its_table_and_the_object_is_left_out(printed_scene):
    frames, planes, views, _ = printed_scene
    assert all(p is not None for p in planes)
    for frame, view in zip(frames, views):
        table = view.table
        assert table is not None and table.valid.mean() > 0.3
        # the cells under the object are not table: the object's footprint is about 3 cells wide
        middle = table.cells // 2
        assert not table.valid[middle - 1:middle + 2, middle - 1:middle + 2].any()
        assert table.half_extent_m == pytest.approx(2.0 * DIAGONAL)


def test_tables_agree_at_the_true_pose_and_not_when_turned(printed_scene):
    _, _, views, gt = printed_scene
    true = gt[0] @ invert_rigid(gt[1])
    at_truth = table_agreement(views[0].table, views[1].table, true)
    assert at_truth > 0.8
    for degrees in (15.0, 90.0, 180.0):
        turned = table_agreement(views[0].table, views[1].table, _turned(true, gt[0], degrees))
        assert turned is not None and turned < 0.4, degrees


def test_tables_that_do_not_overlap_say_nothing(printed_scene):
    _, _, views, gt = printed_scene
    away = gt[0] @ invert_rigid(gt[1])
    away = away.copy()
    away[:3, 3] += 5.0 * views[0].table.T_camera_table[:3, 0]      # 5 m along the table
    assert table_agreement(views[0].table, views[1].table, away) is None
    assert table_agreement(None, views[1].table, gt[0] @ invert_rigid(gt[1])) is None


def test_the_table_search_finds_the_turn_and_the_shift(printed_scene):
    _, _, views, gt = printed_scene
    true = gt[0] @ invert_rigid(gt[1])
    peaks = table_search(views[0].table, views[1].table, DIAGONAL)
    assert 1 <= len(peaks) <= 3
    score, T = peaks[0]
    assert score > 0.8
    assert _error_deg(T, true) < 2.0
    assert np.linalg.norm(T[:3, 3] - true[:3, 3]) < 0.01
    assert [s for s, _ in peaks] == sorted((s for s, _ in peaks), reverse=True)


def test_a_round_objects_turn_comes_from_the_table(printed_scene):
    """The cylinder is the same from every side: the views' surfaces fit at any turn, so a start
    90° off stays 90° off on them alone. The table measures the turn."""
    _, _, views, gt = printed_scene
    true = gt[0] @ invert_rigid(gt[1])
    start = [gt[0], invert_rigid(_turned(true, gt[0], 90.0)) @ gt[0]]
    assert _error_deg(start[0] @ invert_rigid(start[1]), true) == pytest.approx(90.0, abs=1e-6)
    with_table = register_views(views, start, RegistrationParams(voxel=0.003, object_size=DIAGONAL))
    T = with_table.T_camera_object
    assert with_table.registered == [True, True]
    assert _error_deg(T[0] @ invert_rigid(T[1]), true) < 2.0
    pair = with_table.pairs[0]
    assert pair.table_confirmed and pair.trusted and pair.table > 0.8
    assert pair.to_dict()["table_agreement"] == pair.table
    surfaces_alone = register_views(views, start, RegistrationParams(
        voxel=0.003, object_size=DIAGONAL, min_table_agreement=0.0))
    U = surfaces_alone.T_camera_object
    assert _error_deg(U[0] @ invert_rigid(U[1]), true) > 45.0
    assert surfaces_alone.pairs[0].table is None and not surfaces_alone.pairs[0].table_confirmed


def test_a_table_without_print_confirms_nothing():
    """One flat colour says nothing about the turn: no candidate is confirmed, and the pair is
    judged by the surfaces as it would be without a table."""
    _, planes, views, gt = _scene([0.0, 70.0], printed=False)
    assert all(p is not None for p in planes)
    true = gt[0] @ invert_rigid(gt[1])
    assert not table_agreement(views[0].table, views[1].table, true)      # 0.0 or None
    start = [gt[0], invert_rigid(_turned(true, gt[0], 90.0)) @ gt[0]]
    result = register_views(views, start, RegistrationParams(voxel=0.003, object_size=DIAGONAL))
    assert not result.pairs[0].table_confirmed


def test_no_table_without_a_support_plane_or_an_object_size(printed_scene):
    frames, planes, _, _ = printed_scene
    usable = usable_depths(frames)
    noises = depth_noises(usable)
    measured = measured_views(frames, usable)
    assert all(v.table is None for v in registration_views(frames, measured, usable, planes, noises))
    assert all(v.table is None for v in registration_views(frames, measured, usable,
                                                           [None] * len(frames), noises, DIAGONAL))


def test_bad_inputs_are_refused(printed_scene):
    frames, planes, _, _ = printed_scene
    f = frames[0]
    with pytest.raises(ValueError, match="object_size"):
        table_view(f.image, f.depth, f.mask, f.camera, planes[0], np.zeros(3), 0.0)
    with pytest.raises(ValueError, match="differ"):
        table_view(f.image, f.depth[:-1], f.mask, f.camera, planes[0], np.zeros(3), DIAGONAL)
    with pytest.raises(ValueError, match="min_table_agreement"):
        RegistrationParams(voxel=0.003, object_size=DIAGONAL, min_table_agreement=1.5)


def test_a_slide_keeps_the_turn_and_finds_the_position(printed_scene):
    """The table's placement is a cell or so off in position; sliding the surface without turning
    it puts it back on the other view's (ICP would turn a round object freely)."""
    from sparp_ros.geometry.registration import _cloud, _slide
    _, _, views, gt = printed_scene
    true = gt[0] @ invert_rigid(gt[1])
    off = true.copy()
    off[:3, 3] += np.array([0.012, -0.008, 0.006])
    params = RegistrationParams(voxel=0.003, object_size=DIAGONAL)
    clouds = [_cloud(v.points, params.voxel) for v in views]
    slid = _slide(clouds[1], clouds[0], off, params)
    assert np.array_equal(slid[:3, :3], off[:3, :3])
    assert np.linalg.norm(slid[:3, 3] - true[:3, 3]) < 0.003


def test_the_rgbd_stage_takes_the_turn_from_the_table_and_records_it(printed_scene, caplog):
    """``measured.measure`` (RGB-D, no TF) on the two views, the model's heading for the second
    90° off: the registered poses agree with the truth, the record lists the views with a table
    and the pair's table agreement, and a log line says it."""
    import logging

    from sparp_ros.geometry.measured import measure
    frames, _, _, gt = printed_scene
    true = gt[0] @ invert_rigid(gt[1])
    model = [gt[0], invert_rigid(_turned(true, gt[0], 90.0)) @ gt[0]]
    with caplog.at_level(logging.INFO, logger="sparp_ros.measured"):
        result = measure(frames, [model], DIAGONAL, 0, use_tf=False)
    T = result.T_camera_object
    assert _error_deg(T[0] @ invert_rigid(T[1]), true) < 2.0
    assert result.pose_sources == ["registered", "registered"]
    registration = result.record["registration"]
    assert registration["table_views"] == [0, 1]
    assert registration["pairs"][0]["table_confirmed"] and registration["pairs"][0]["table_agreement"] > 0.8
    assert "see the table around the object" in caplog.text
    off = measure(frames, [model], DIAGONAL, 0, use_tf=False, min_table_agreement=0.0)
    assert off.record["registration"]["table_views"] == []
