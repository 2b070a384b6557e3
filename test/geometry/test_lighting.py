"""The light on the object (geometry.lighting) and the turn it measures in the registration
(registration.turn_to_light): the light's direction comes back from a shaded surface's depth and
grey values, a print or a flat grey gives none, and a round object's turn that its surfaces
cannot measure comes from a light fixed in the world, but not from a light that moves with the
camera. Ray-cast scenes: a matte cylinder with a domed top, lit by one distant light and ambient light."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from camera_poses import camera_on_sphere, rotation_error_deg, turned_about_up
from ray_cylinder import cylinder_side, pixel_rays

from sparp_ros.camera import PinholeCamera
from sparp_ros.capture import Frame
from sparp_ros.conventions import invert_rigid, unit_direction
from sparp_ros.geometry.lighting import angle_deg, estimate_light, fit_light, turn_about_up
from sparp_ros.geometry.measured import (depth_noises, measure, measured_views,
                                         registration_views, usable_depths)
from sparp_ros.geometry.registration import RegistrationParams, object_light, turn_to_light

CAMERA = PinholeCamera(320, 240, np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]]))
RADIUS, HEIGHT = 0.05, 0.08                   # the cylinder's; a half sphere of RADIUS on top
DIAGONAL = float(np.sqrt((2 * RADIUS) ** 2 * 2 + (HEIGHT + RADIUS) ** 2))
LIGHT_WORLD = unit_direction(np.radians(30.0), np.radians(35.0))
AMBIENT, ALBEDO = 0.3, 200.0


def _camera_pose(azimuth_deg: float, elevation_deg: float = 30.0) -> np.ndarray:
    return camera_on_sphere(azimuth_deg, elevation_deg, np.array([0.0, 0.0, HEIGHT / 2]), 0.45)


def _frame(T_world_camera: np.ndarray, light_world: np.ndarray | None = LIGHT_WORLD,
           printed: bool = False) -> Frame:
    """A ray-cast RGB-D view of a matte domed cylinder standing at the origin (nothing behind it):
    grey ``ALBEDO`` × (``AMBIENT`` + (1 - ``AMBIENT``) × max(0, n · light)); ``light_world``
    None: the light comes from the camera's upper left (it moves with the camera); ``printed``:
    stripes of print over the albedo."""
    o, d = pixel_rays(CAMERA.K, CAMERA.width, CAMERA.height, T_world_camera)
    t_side = cylinder_side(o, d, RADIUS, HEIGHT)
    with np.errstate(divide="ignore", invalid="ignore"):
        # the dome: a half sphere on the cylinder (its normals cover the upper half of the sphere)
        oc = o - np.array([0.0, 0.0, HEIGHT])
        b2 = d @ oc
        dd = np.einsum("hwc,hwc->hw", d, d)
        disc2 = b2 * b2 - dd * (oc @ oc - RADIUS ** 2)
        t_dome = (-b2 - np.sqrt(np.maximum(disc2, 0))) / dd
        t_dome = np.where((disc2 > 0) & (t_dome > 0) & (o[2] + t_dome * d[..., 2] >= HEIGHT),
                          t_dome, np.inf)
    t = np.minimum(t_side, t_dome)
    mask = np.isfinite(t)
    hit = o + np.where(mask, t, 0.0)[..., None] * d
    normal = np.where((t_dome <= t_side)[..., None], (hit - np.array([0.0, 0.0, HEIGHT])) / RADIUS,
                      np.concatenate([hit[..., :2] / RADIUS, np.zeros(hit.shape[:2] + (1,))], -1))
    light = (T_world_camera[:3, :3] @ np.array([-0.4, -0.6, -0.7]) if light_world is None
             else light_world)
    light = light / np.linalg.norm(light)
    shade = AMBIENT + (1 - AMBIENT) * np.maximum(normal @ light, 0.0)
    albedo = ALBEDO * (0.5 + 0.5 * (np.sin(40 * np.arctan2(hit[..., 1], hit[..., 0]) + 30 * hit[..., 2])
                                    > 0)) if printed else ALBEDO
    grey = np.where(mask, albedo * shade, 0.0)
    image = np.repeat(np.clip(grey, 0, 255)[..., None], 3, axis=-1).astype(np.uint8)
    depth = np.where(mask, t, 0.0).astype(np.float32)           # t along a z = 1 ray
    return Frame(image, CAMERA, depth=depth, mask=mask)


def _views(frames):
    usable = usable_depths(frames)
    return registration_views(frames, measured_views(frames, usable), usable,
                              noises=depth_noises(usable), lights=True)




AZIMUTHS = (0.0, 70.0)


@pytest.fixture(scope="module")
def lit_scene():
    poses = [_camera_pose(a) for a in AZIMUTHS]
    frames = [_frame(T) for T in poses]
    return frames, _views(frames), [invert_rigid(T) for T in poses]


def test_the_fit_finds_a_known_light():
    """Grey values made by the model itself: the direction, ambient and gain come back."""
    rng = np.random.default_rng(3)
    normals = rng.normal(size=(3000, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    normals[normals[:, 2] > 0] *= -1                           # facing the camera
    light = np.array([0.3, -0.5, -0.8]) / np.linalg.norm([0.3, -0.5, -0.8])
    grey = 0.2 + 0.6 * np.maximum(normals @ light, 0.0) + rng.normal(0, 0.01, len(normals))
    direction, ambient, gain, fit, spread = fit_light(grey, normals)
    assert angle_deg(direction, light) < 1.0
    assert ambient == pytest.approx(0.2, abs=0.01) and gain == pytest.approx(0.6, abs=0.02)
    assert fit > 0.99 and spread < 10.0


def test_each_view_measures_the_light_in_its_camera_frame(lit_scene):
    frames, views, gt = lit_scene
    for view, T in zip(views, gt):
        light = view.light
        assert light is not None and light.fit > 0.9
        truth = T[:3, :3] @ LIGHT_WORLD                       # the world light in this camera
        assert angle_deg(light.direction, truth) < 5.0
        assert light.to_dict()["direction"] == [float(x) for x in light.direction]


def test_print_or_no_shading_measures_no_light():
    T = _camera_pose(0.0)
    printed = _frame(T, printed=True)
    assert estimate_light(printed.image, printed.depth, printed.mask, printed.camera) is None
    flat = _frame(T)
    flat.image[flat.mask] = 140                                 # one grey: no shading at all
    assert estimate_light(flat.image, flat.depth, flat.mask, flat.camera) is None
    empty = np.zeros_like(flat.mask)
    assert estimate_light(flat.image, flat.depth, empty, flat.camera) is None


def test_bad_inputs_are_refused(lit_scene):
    frames, _, _ = lit_scene
    f = frames[0]
    with pytest.raises(ValueError, match="grid"):
        estimate_light(f.image, f.depth[:-1], f.mask, f.camera)


def test_the_turn_about_up_between_two_directions():
    a = unit_direction(np.radians(100.0), np.radians(20.0))
    b = unit_direction(np.radians(-150.0), np.radians(40.0))
    assert turn_about_up(a, b) == pytest.approx(-110.0)
    assert turn_about_up(b, a) == pytest.approx(110.0)


def test_a_round_objects_turn_comes_from_the_light(lit_scene):
    """The cylinder is the same from every side, so its surfaces fit at any turn: view 1 turned
    90° stays 90° off for them. The light, fixed in the world, measures the turn back."""
    _, views, gt = lit_scene
    params = RegistrationParams(voxel=0.003, object_size=DIAGONAL)
    start = [gt[0], turned_about_up(gt[1], 90.0)]
    true = gt[0] @ invert_rigid(gt[1])
    assert rotation_error_deg(start[0] @ invert_rigid(start[1]), true) == pytest.approx(90.0, abs=1e-6)
    assert angle_deg(object_light(views[1], start[1]), object_light(views[0], start[0])) > 30.0
    poses, turns = turn_to_light(views, start, [True, True], params, reference=0)
    assert [t.view for t in turns] == [1] and turns[0].turned and turns[0].anchor == 0
    assert turns[0].turn_deg == pytest.approx(90.0, abs=6.0)           # undoes the 90°
    assert rotation_error_deg(poses[0] @ invert_rigid(poses[1]), true) < 5.0
    assert np.linalg.norm((poses[0] @ invert_rigid(poses[1]))[:3, 3] - true[:3, 3]) < 0.005
    assert turns[0].to_dict()["turned"] is True
    # views whose lights agree are left alone
    again, none = turn_to_light(views, poses, [True, True], params, reference=0)
    assert none == [] and np.allclose(again[1], poses[1])


def test_a_turn_needs_the_views_to_overlap(lit_scene):
    """With less overlap than a pair needs (``min_fitness``), only the light would say where the
    view goes, and a light cannot tell the view's tilt from its turn: the view is not turned."""
    _, views, gt = lit_scene
    start = [gt[0], turned_about_up(gt[1], 90.0)]
    strict = RegistrationParams(voxel=0.003, object_size=DIAGONAL, min_fitness=0.95)
    poses, turns = turn_to_light(views, start, [True, True], strict, reference=0)
    assert len(turns) == 1 and not turns[0].turned and "overlap of 0.95" in turns[0].message
    assert np.allclose(poses[1], start[1])


def test_a_light_on_the_camera_measures_no_turn():
    """A light that moves with the camera (a ring light on the wrist) lights every view alike:
    in the object frame the views' lights disagree at the true poses, and following them would
    turn a right view wrong. Every view seeing the light from the same side of its camera says
    so, and nothing is turned."""
    poses = [_camera_pose(a) for a in AZIMUTHS]
    frames = [_frame(T, light_world=None) for T in poses]
    views = _views(frames)
    assert all(v.light is not None for v in views)
    gt = [invert_rigid(T) for T in poses]
    assert angle_deg(object_light(views[1], gt[1]), object_light(views[0], gt[0])) > 30.0
    out, turns = turn_to_light(views, gt, [True, True],
                               RegistrationParams(voxel=0.003, object_size=DIAGONAL))
    assert turns == [] and np.allclose(out[1], gt[1])


def test_the_rgbd_stage_turns_the_view_to_the_light_and_records_it(lit_scene, caplog):
    frames, _, gt = lit_scene
    true = gt[0] @ invert_rigid(gt[1])
    model = [gt[0], turned_about_up(gt[1], 90.0)]
    with caplog.at_level(logging.INFO, logger="sparp_ros.measured"):
        result = measure(frames, [model], DIAGONAL, 0, use_tf=False)
    T = result.T_camera_object
    assert rotation_error_deg(T[0] @ invert_rigid(T[1]), true) < 5.0
    assert result.pose_sources[1] == "lit"
    light = result.record["registration"]["light"]
    assert sorted(light["views"]) == ["0", "1"] and light["turns"][0]["turned"]
    assert json.loads(json.dumps(light))["turns"][0]["turned"] is True     # result.json takes it
    assert "see the light from another side" in caplog.text
    off = measure(frames, [model], DIAGONAL, 0, use_tf=False, light_turns=False)
    U = off.T_camera_object
    assert rotation_error_deg(U[0] @ invert_rigid(U[1]), true) > 45.0
    assert "light" not in off.record["registration"]
