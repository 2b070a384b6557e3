"""Depth segmentation: true masks recovered on noisy tabletop renders, one id per object across
the views (with and without camera poses), clear errors, empty results."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from sparp_ros.camera import PinholeCamera
from sparp_ros.capture import Frame
from sparp_ros.conventions import invert_rigid, transform_points
from sparp_ros.evaluation.segmentation_metrics import score_scene, summarize
from sparp_ros.render.capture_renderer import look_at
from sparp_ros.render.depth_noise import STEREO_DEFAULT
from sparp_ros.render.scene import render_tabletop
from sparp_ros.segment_depth import (DepthSegmentationError, DepthSegmentationParams,
                                     NoDepthError, NoPlaneError, centre_object,
                                     frames_masked_from_depth, segment_depth, segment_frame)
from sparp_ros.segmentation import SegmentationError

OBJECTS = ("ACE_Coffee_Mug_Kristen_16_oz_cup.glb", "Cole_Hardware_Hammer_Black.glb",
           "Schleich_Hereford_Bull.glb")
SIZE = dict(width=480, height=360)
CAMERA = PinholeCamera(width=160, height=120, K=np.array([[140.0, 0, 79.5], [0, 140.0, 59.5],
                                                          [0, 0, 1]]))


@pytest.fixture(scope="module")
def scene(objects_dir: Path):
    """3 objects, 4 views, stereo depth noise."""
    return render_tabletop([objects_dir / n for n in OBJECTS], views=4, seed=4,
                           depth_noise=STEREO_DEFAULT, **SIZE)


@pytest.fixture(scope="module")
def found(scene):
    return segment_depth(scene.capture.frames)


def _truth(scene) -> dict:
    return {o.name: o.masks for o in scene.objects}


def test_masks_match_the_truth_with_one_id_per_object(scene, found) -> None:
    score = score_scene(_truth(scene), found)
    summary = summarize([score])
    assert summary["median_view_iou"] >= 0.9, summary
    assert summary["median_object_iou"] >= 0.9, summary
    assert summary["identity_consistency"] == 1.0, [o.view_ious for o in score.objects]
    assert len(found) == len(scene.objects) and score.extra_predictions == 0
    assert [o.id for o in found] == list(range(len(found)))
    for o in found:                                  # each mask is one object's, never two
        for i, m in enumerate(o.masks):
            assert m is None or (m.dtype == bool and m.shape == scene.ids[i].shape)


def test_world_centroids_lie_on_the_objects(scene, found) -> None:
    score = score_scene(_truth(scene), found)
    by_id = {o.id: o for o in found}
    for truth, s in zip(scene.objects, score.objects):
        ours = by_id[s.predicted_id]
        visible = np.concatenate([
            transform_points(f.T_world_camera, f.camera.unproject(
                np.argwhere(m & (f.depth > 0))[:, ::-1], f.depth[m & (f.depth > 0)]))
            for f, m in zip(scene.capture.frames, truth.masks) if m.any()])
        assert np.linalg.norm(ours.centroid_world[:2] - visible[:, :2].mean(axis=0)) < 0.03
        assert 0.0 < ours.centroid_world[2] < visible[:, 2].max()


def test_identity_without_camera_poses(scene) -> None:
    frames = [replace(f, T_world_camera=None) for f in scene.capture.frames]
    found = segment_depth(frames)
    score = score_scene(_truth(scene), found)
    summary = summarize([score])
    assert summary["median_view_iou"] >= 0.9, summary
    # Appearance keeps the mug's and the bull's ids. The hammer is the known weak case: view 0
    # sees its handle apart from its head (hidden at the joint), and without poses nothing joins
    # the two parts, so view 2 (which sees mostly the handle) takes the handle's id.
    consistent = {o.truth_id: o.consistent for o in score.objects}
    assert consistent["ACE_Coffee_Mug_Kristen_16_oz_cup"], score
    assert consistent["Schleich_Hereford_Bull"], score
    assert all(o.centroid_world is None for o in found)
    assert all(c is None or c[2] > 0 for o in found for c in o.centroids_camera)


def test_workspace_box_and_minimum_size(scene) -> None:
    frame = scene.capture.frames[0]
    mug = scene.objects[0]
    lo, hi = _world_box(mug)
    only_mug = segment_frame(frame, DepthSegmentationParams(workspace_min=tuple(lo - 0.02),
                                                            workspace_max=tuple(hi + 0.02)))
    assert len(only_mug.objects) == 1
    m = only_mug.objects[0].mask
    assert (m & mug.masks[0]).sum() / (m | mug.masks[0]).sum() > 0.9
    none = segment_frame(frame, DepthSegmentationParams(min_object_pixels=10 ** 6))
    assert none.objects == []


def _world_box(obj) -> tuple[np.ndarray, np.ndarray]:
    from sparp_ros.render.mesh_io import load_mesh
    v = transform_points(obj.T_world_object, load_mesh(obj.mesh_path).vertices)
    return v.min(axis=0), v.max(axis=0)


def test_centre_object_is_nearest_the_first_image_centre(scene, found) -> None:
    frames = scene.capture.frames
    chosen = centre_object(found, frames, 0)
    truth = next(o for o in scene.objects if o.id == scene.primary)   # nearest the centre
    assert (chosen.masks[0] & truth.masks[0]).sum() / (chosen.masks[0] | truth.masks[0]).sum() > 0.9
    masked, kept, again, objects = frames_masked_from_depth(frames)
    assert again.id == chosen.id and len(objects) == len(found)
    assert kept == again.frames_seen and kept[0] == 0
    assert all(f.mask is not None and f.mask.any() for f in masked)


# -- synthetic frames: clear errors and empty results ------------------------------------------
def _table_frame(posed: bool = True, noise: float = 0.001, seed: int = 0) -> Frame:
    """A bare table (z = 0) seen from 0.8 m at 45°: depth by ray casting, no object."""
    T_world_camera = invert_rigid(look_at(np.array([0.0, -0.56, 0.56]), np.zeros(3)))
    rays = CAMERA.normalized_rays(CAMERA.pixel_grid().reshape(-1, 2))
    d = rays @ T_world_camera[:3, :3].T
    t = np.where(d[:, 2] < -1e-6, -T_world_camera[2, 3] / np.minimum(d[:, 2], -1e-6), 0.0)
    depth = t.reshape(CAMERA.height, CAMERA.width)
    rng = np.random.default_rng(seed)
    depth = np.where(depth > 0, depth + rng.normal(0.0, noise, depth.shape), 0.0)
    image = rng.integers(0, 255, (CAMERA.height, CAMERA.width, 3), dtype=np.uint8)
    return Frame(image=image, camera=CAMERA, depth=depth.astype(np.float32),
                 T_world_camera=T_world_camera if posed else None)


def test_no_object_on_the_plane_is_an_empty_list() -> None:
    for posed in (True, False):
        frames = [_table_frame(posed, seed=s) for s in range(2)]
        assert segment_depth(frames) == []
        seg = segment_frame(frames[0])
        assert seg.plane.inlier_fraction > 0.9
        if posed:
            np.testing.assert_allclose(seg.plane.normal, [0, 0, 1], atol=0.01)


def test_frame_without_depth_is_named() -> None:
    frames = [_table_frame(), replace(_table_frame(seed=1), depth=None)]
    with pytest.raises(NoDepthError, match="frame 1: no depth") as err:
        segment_depth(frames)
    assert isinstance(err.value, SegmentationError) and isinstance(err.value, ValueError)
    assert err.value.frame == 1
    empty = replace(_table_frame(), depth=np.zeros((CAMERA.height, CAMERA.width), np.float32))
    with pytest.raises(NoDepthError, match="frame 0: 0 valid depth pixels"):
        segment_depth([empty])


def test_no_plane_is_a_clear_error() -> None:
    rng = np.random.default_rng(0)
    scattered = replace(_table_frame(), depth=rng.uniform(0.4, 2.0, (CAMERA.height, CAMERA.width))
                        .astype(np.float32))
    with pytest.raises(NoPlaneError, match="frame 0: no support plane found") as err:
        segment_depth([scattered])
    assert isinstance(err.value, DepthSegmentationError)
    # A wall straight ahead: a plane, but not a support plane once gravity is known.
    wall = replace(_table_frame(), depth=np.full((CAMERA.height, CAMERA.width), 0.9, np.float32),
                   T_world_camera=invert_rigid(look_at(np.array([0.0, -0.9, 0.5]),
                                                      np.array([0.0, 0.0, 0.5]))))
    with pytest.raises(NoPlaneError, match="tilted 90°"):
        segment_frame(wall, index=0)
    assert segment_frame(replace(wall, T_world_camera=None)).objects == []   # camera frame: ok


def test_params_are_checked() -> None:
    with pytest.raises(ValueError, match="min_height_m"):
        DepthSegmentationParams(min_height_m=0.0)
    with pytest.raises(ValueError, match="together"):
        DepthSegmentationParams(workspace_min=(0, 0, 0))
    with pytest.raises(ValueError, match="below"):
        DepthSegmentationParams(workspace_min=(0, 0, 0), workspace_max=(1, -1, 1))
    with pytest.raises(ValueError, match="at least one frame"):
        segment_depth([])
