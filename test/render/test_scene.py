"""Tabletop scenes: geometry consistent with the poses, the table at z = 0, objects apart, cameras
looking down, and a capture folder that old readers still read as a single-object capture."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from sparp_ros.capture import load_capture
from sparp_ros.capture_objects import load_object_masks, object_mask_ids, objects_from_gt
from sparp_ros.conventions import invert_rigid, transform_points
from sparp_ros.render.depth_noise import STEREO_DEFAULT
from sparp_ros.render.mesh_io import load_mesh
from sparp_ros.render.scene import (ELEVATION_RANGE_DEG, MIN_GAP_M, SceneRenderError,
                                    place_objects, render_tabletop)

OBJECTS = ("ACE_Coffee_Mug_Kristen_16_oz_cup.glb", "Crayola_Crayons_24_count.glb",
           "Schleich_Hereford_Bull.glb")
SIZE = dict(width=480, height=360)


@pytest.fixture(scope="module")
def scene(objects_dir: Path):
    return render_tabletop([objects_dir / n for n in OBJECTS], views=4, seed=3, **SIZE)


def _world_points(frame) -> np.ndarray:
    cam = frame.camera
    pts = cam.unproject(cam.pixel_grid().reshape(-1, 2), frame.depth.reshape(-1))
    return transform_points(frame.T_world_camera, pts).reshape(*frame.depth.shape, 3)


def test_table_is_z0_and_objects_stand_on_it(scene) -> None:
    for f, ids in zip(scene.capture.frames, scene.ids):
        world = _world_points(f)
        table = (ids == 0) & (f.depth > 0)
        assert table.mean() > 0.3                                # mostly table in view
        np.testing.assert_allclose(world[table][:, 2], 0.0, atol=1e-4)
        objects = ids > 0
        assert objects.any() and (f.depth[objects] > 0).all()
        assert world[objects][:, 2].min() > -1e-4


def test_ids_agree_with_masks_and_poses(scene, objects_dir: Path) -> None:
    for o in scene.objects:
        mesh = load_mesh(o.mesh_path)
        lo, hi = mesh.bounds
        assert abs(transform_points(o.T_world_object, mesh.vertices)[:, 2].min()) < 1e-6
        for f, ids, mask in zip(scene.capture.frames, scene.ids, o.masks):
            np.testing.assert_array_equal(mask, ids == o.id)
            if not mask.any():
                continue
            # the visible pixels, mapped into the object's mesh frame, lie in its bounding box
            p = transform_points(invert_rigid(o.T_world_object), _world_points(f)[mask])
            assert (p > lo - 1e-3).all() and (p < hi + 1e-3).all()
        assert sum(m.any() for m in o.masks) >= 2


def test_objects_apart_and_cameras_look_down(scene) -> None:
    centres = []
    for o in scene.objects:
        mesh = load_mesh(o.mesh_path)
        v = transform_points(o.T_world_object, mesh.vertices)[:, :2]
        c = (v.min(axis=0) + v.max(axis=0)) / 2.0
        centres.append((c, np.linalg.norm(v - c, axis=1).max()))
    for i, (ci, ri) in enumerate(centres):
        for cj, rj in centres[i + 1:]:
            assert np.linalg.norm(ci - cj) >= ri + rj + MIN_GAP_M - 1e-9
    for f in scene.capture.frames:
        axis = f.T_world_camera[:3, 2]                          # optical axis in the world
        elevation = np.degrees(np.arcsin(-axis[2]))
        assert ELEVATION_RANGE_DEG[0] - 1 <= elevation <= ELEVATION_RANGE_DEG[1] + 1
        assert f.T_world_camera[2, 3] > 0


def test_primary_object_is_the_single_object_ground_truth(scene) -> None:
    gt = scene.capture.gt
    primary = next(o for o in scene.objects if o.id == scene.primary)
    assert gt.object == primary.name and gt.extra["primary"] == str(primary.id)
    centre = np.array([(SIZE["width"] - 1) / 2, (SIZE["height"] - 1) / 2])
    dist = {o.id: np.linalg.norm(np.argwhere(o.masks[0])[:, ::-1].mean(axis=0) - centre)
            for o in scene.objects if o.masks[0].any()}
    assert scene.primary == min(dist, key=dist.get)
    for f, T, mask in zip(scene.capture.frames, gt.T_camera_object, primary.masks):
        np.testing.assert_allclose(T, invert_rigid(f.T_world_camera) @ primary.T_world_object,
                                   atol=1e-9)
        assert f.mask is None                                   # a scene tests segmentation
        np.testing.assert_array_equal(f.nocs.any(axis=2), mask)  # true NOCS: the primary's
        assert f.nocs.min() >= 0.0 and f.nocs.max() <= 1.0


def test_saved_scene_round_trips_and_stays_a_valid_capture(objects_dir: Path,
                                                           tmp_path: Path) -> None:
    noisy = render_tabletop([objects_dir / n for n in OBJECTS[:2]], tmp_path / "scene", views=2,
                            seed=5, depth_noise=STEREO_DEFAULT, **SIZE)
    clean = render_tabletop([objects_dir / n for n in OBJECTS[:2]], views=2, seed=5, **SIZE)
    for a, b in zip(noisy.capture.frames, clean.capture.frames):   # noise has its own stream
        np.testing.assert_array_equal(a.image, b.image)
        assert np.abs(a.depth - b.depth)[(a.depth > 0) & (b.depth > 0)].mean() > 1e-4
    cap = load_capture(tmp_path / "scene")                       # the single-object reader
    assert len(cap.frames) == 2 and all(f.mask is None and f.depth is not None for f in cap.frames)
    assert cap.gt.object == noisy.capture.gt.object and "depth_noise" in cap.gt.extra
    assert object_mask_ids(tmp_path / "scene") == ["1", "2"]
    masks = load_object_masks(tmp_path / "scene", len(cap.frames))
    truths = {t.id: t for t in objects_from_gt(cap.gt)}
    for o in noisy.objects:
        for saved, mask in zip(masks[str(o.id)], o.masks):
            np.testing.assert_array_equal(saved, mask)
        np.testing.assert_allclose(truths[str(o.id)].T_world_object, o.T_world_object)
        assert truths[str(o.id)].mesh == str(o.mesh_path)
    for f, g in zip(cap.frames, noisy.capture.frames):
        np.testing.assert_allclose(f.T_world_camera, g.T_world_camera)


def test_same_seed_same_scene_and_bad_input(objects_dir: Path) -> None:
    paths = [objects_dir / n for n in OBJECTS[:2]]
    a = render_tabletop(paths, views=1, seed=11, **SIZE)
    b = render_tabletop(paths, views=1, seed=11, **SIZE)
    np.testing.assert_array_equal(a.capture.frames[0].image, b.capture.frames[0].image)
    np.testing.assert_array_equal(a.ids[0], b.ids[0])
    with pytest.raises(ValueError, match="at least one object"):
        render_tabletop([], seed=0)
    with pytest.raises(ValueError, match="views"):
        render_tabletop(paths, views=0)
    big = load_mesh(paths[0])
    big = replace(big, vertices=big.vertices * 20.0, normals=None)   # a 2.5 m mug
    with pytest.raises(SceneRenderError, match="table"):
        place_objects([big, big], np.random.default_rng(0))
