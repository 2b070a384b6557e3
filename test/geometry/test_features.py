"""The object's print, matched between two RGB-D views (geometry.features), and the turn it
measures in the registration (registration.register_pair): features lie on the measured
surface, the placement most matches agree on is the true relative pose, a plain object gives no
features, and a round object's turn that its surfaces cannot measure comes from its label.
Ray-cast scenes: an upright cylinder with a printed label (smoothed noise), evenly lit."""
from __future__ import annotations

import json
import logging

import cv2
import numpy as np
import pytest

from camera_poses import camera_on_sphere, rotation_error_deg, turned_about_up
from ray_cylinder import cylinder_side, pixel_rays

from sparp_ros.camera import PinholeCamera
from sparp_ros.capture import Frame
from sparp_ros.conventions import invert_rigid
from sparp_ros.geometry.features import (match_features, match_support, matched_placement,
                                         view_features)
from sparp_ros.geometry.measured import (REGISTRATION_VOXELS, depth_noises, measure,
                                         measured_views, registration_views, usable_depths)
from sparp_ros.geometry.fusion import voxel_size_for
from sparp_ros.geometry.registration import RegistrationParams, _cloud, register_pair

CAMERA = PinholeCamera(640, 480, np.array([[600.0, 0, 320], [0, 600.0, 240], [0, 0, 1]]))
RADIUS, HEIGHT = 0.05, 0.12
DIAGONAL = float(np.sqrt((2 * RADIUS) ** 2 * 2 + HEIGHT ** 2))
AZIMUTHS = (0.0, 45.0)
GATE = 0.006


def _label(seed: int = 3) -> np.ndarray:
    """A print unrolled over the cylinder's side: 256 columns round it, 128 rows up it."""
    noise = np.random.default_rng(seed).uniform(0, 255, (128, 256)).astype(np.float32)
    return cv2.normalize(cv2.GaussianBlur(noise, (0, 0), 2.0), None, 40, 230, cv2.NORM_MINMAX)


def _frame(T_world_camera: np.ndarray, label: np.ndarray | None) -> Frame:
    """A ray-cast RGB-D view of an evenly lit cylinder standing at the origin (nothing behind
    it), printed with ``label`` (None: plain grey)."""
    o, d = pixel_rays(CAMERA.K, CAMERA.width, CAMERA.height, T_world_camera)
    t = cylinder_side(o, d, RADIUS, HEIGHT)
    mask = np.isfinite(t)
    hit = o + np.where(mask, t, 0.0)[..., None] * d
    if label is None:
        grey = np.full(mask.shape, 150.0)
    else:
        u = (np.arctan2(hit[..., 1], hit[..., 0]) % (2 * np.pi)) / (2 * np.pi) * label.shape[1]
        v = np.clip(hit[..., 2] / HEIGHT, 0, 1) * (label.shape[0] - 1)
        grey = cv2.remap(label, u.astype(np.float32), v.astype(np.float32), cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_WRAP)
    grey = np.where(mask, grey, 0.0)
    image = np.repeat(np.clip(grey, 0, 255)[..., None], 3, axis=-1).astype(np.uint8)
    depth = np.where(mask, t, 0.0).astype(np.float32)           # t along a z = 1 ray
    return Frame(image, CAMERA, depth=depth, mask=mask)


def _camera_pose(azimuth_deg: float) -> np.ndarray:
    return camera_on_sphere(azimuth_deg, 20.0, np.array([0.0, 0.0, HEIGHT / 2]), 0.4)


def _views(frames):
    usable = usable_depths(frames)
    return registration_views(frames, measured_views(frames, usable), usable,
                              noises=depth_noises(usable), features=True)




@pytest.fixture(scope="module")
def printed_scene():
    poses = [_camera_pose(a) for a in AZIMUTHS]
    frames = [_frame(T, _label()) for T in poses]
    return frames, _views(frames), [invert_rigid(T) for T in poses]


def test_features_lie_on_the_measured_surface(printed_scene):
    frames, views, gt = printed_scene
    for view, T_camera_object in zip(views, gt):
        features = view.features
        assert features is not None and len(features) >= 50
        assert features.descriptors.shape == (len(features), 128)
        world = features.points @ invert_rigid(T_camera_object)[:3, :3].T + invert_rigid(T_camera_object)[:3, 3]
        assert np.abs(np.linalg.norm(world[:, :2], axis=1) - RADIUS).max() < 0.002


def test_the_placement_most_matches_agree_on_is_the_true_one(printed_scene):
    _, views, gt = printed_scene
    a, b = views[0].features, views[1].features
    matches = match_features(a, b)
    assert len(matches) >= 30
    true = gt[0] @ invert_rigid(gt[1])
    found = matched_placement(a, b, matches, GATE, 15)
    assert found is not None
    T, support = found
    assert rotation_error_deg(T, true) < 1.5 and np.linalg.norm(T[:3, 3] - true[:3, 3]) < 0.003
    assert support == match_support(a, b, matches, T, GATE) >= 0.8 * len(matches)
    # a wrong turn of the round object: its surfaces fit, its print does not
    assert match_support(a, b, matches, true @ turned_about_up(np.eye(4), 60.0), GATE) <= 2
    assert matched_placement(a, b, matches, GATE, len(matches) + 1) is None


def test_a_plain_object_or_no_depth_gives_no_features(printed_scene):
    frames, _, _ = printed_scene
    plain = _frame(_camera_pose(0.0), None)
    assert view_features(plain.image, plain.depth, plain.mask, CAMERA) is None
    f = frames[0]
    assert view_features(f.image, np.zeros_like(f.depth), f.mask, CAMERA) is None
    assert view_features(f.image, f.depth, np.zeros_like(f.mask), CAMERA) is None
    assert len(match_features(view_features(f.image, f.depth, f.mask, CAMERA),
                              view_features(f.image, f.depth, f.mask, CAMERA))) > 50   # itself


def test_a_labelled_round_objects_turn_comes_from_its_print(printed_scene):
    """The cylinder's surfaces fit at any turn: from a start 90° off they stay off. Its label
    measures the turn back, and the pair says the print confirmed it."""
    _, views, gt = printed_scene
    params = RegistrationParams(voxel=REGISTRATION_VOXELS * voxel_size_for(DIAGONAL),
                                object_size=DIAGONAL, min_image_agreement=0.0)
    clouds = {k: _cloud(v.points, params.voxel) for k, v in enumerate(views)}
    true = gt[0] @ invert_rigid(gt[1])
    start = gt[0] @ invert_rigid(turned_about_up(gt[1], 90.0))
    plain = register_pair(views, clouds, 0, 1, [start], gt[0],
                          RegistrationParams(**{**params.__dict__, "min_matches": 0}))
    assert rotation_error_deg(plain.T_ci_cj, true) > 45.0 and plain.matches is None
    pair = register_pair(views, clouds, 0, 1, [start], gt[0], params)
    assert rotation_error_deg(pair.T_ci_cj, true) < 2.0
    assert pair.match_confirmed and pair.trusted and pair.matches >= params.min_matches
    assert pair.to_dict()["match_confirmed"] is True


def test_the_rgbd_stage_registers_by_the_print_and_records_it(printed_scene, caplog):
    frames, _, gt = printed_scene
    true = gt[0] @ invert_rigid(gt[1])
    model = [gt[0], turned_about_up(gt[1], 90.0)]
    with caplog.at_level(logging.INFO, logger="sparp_ros.measured"):
        result = measure(frames, [model], DIAGONAL, 0, use_tf=False, light_turns=False)
    T = result.T_camera_object
    assert rotation_error_deg(T[0] @ invert_rigid(T[1]), true) < 2.0
    assert result.pose_sources == ["registered", "registered"]
    registration = json.loads(json.dumps(result.record["registration"]))   # result.json takes it
    assert registration["print_confirmed"] == [[0, 1]]
    assert registration["pairs"][0]["matches"] >= 15
    assert "the object's print confirmed pairs [[0, 1]]" in caplog.text
    off = measure(frames, [model], DIAGONAL, 0, use_tf=False, light_turns=False, min_matches=0)
    U = off.T_camera_object
    assert rotation_error_deg(U[0] @ invert_rigid(U[1]), true) > 45.0
    assert off.record["registration"]["print_confirmed"] == []
