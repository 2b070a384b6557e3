"""TSDF fusion of measured depth, the model's completion and the resting box (geometry.fusion) on
rendered captures of the shared objects: real open3d, real meshes."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh

from sparp_ros.conventions import transform_points
from sparp_ros.geometry.fusion import (DepthView, FusionError, clean_depth, complete_surface,
                                       fuse_views, resting_box, usable_depth, voxel_size_for)


@pytest.fixture(scope="module")
def capture(objects_dir):
    from sparp_ros.render import render_capture
    return render_capture(objects_dir / "Schleich_Hereford_Bull.glb", views=4, seed=3)


def _views(capture, poses=None):
    poses = capture.gt.T_camera_object if poses is None else poses
    return [DepthView(f.image, f.depth, f.mask, f.camera, T) for f, T in zip(capture.frames, poses)]


def test_exact_depth_with_exact_poses_reproduces_the_true_surface_within_two_voxels(capture):
    from scipy.spatial import cKDTree
    true = trimesh.load(capture.mesh_path(), force="mesh")
    voxel = voxel_size_for(capture.gt.extra["canonical"]["diagonal"])
    surface = fuse_views(_views(capture), voxel)
    assert surface.measured.all() and len(surface.faces) > 1000
    samples, _ = trimesh.sample.sample_surface(true, 200000, seed=0)
    distance = cKDTree(samples).query(surface.vertices)[0]
    assert np.mean(distance < 2 * voxel) > 0.99, np.quantile(distance, [0.5, 0.99])
    # colours come from the full-resolution images: not the grey of an uncoloured mesh
    assert surface.colors.std() > 5


def test_the_voxel_follows_the_object_size_within_bounds():
    assert voxel_size_for(0.2) == pytest.approx(0.001)
    assert voxel_size_for(0.01) == pytest.approx(0.0008)     # finer than a stereo camera resolves
    assert voxel_size_for(10.0) == pytest.approx(0.01)
    with pytest.raises(FusionError):
        voxel_size_for(float("nan"))


def test_usable_depth_drops_the_rim_and_depth_jumps():
    depth = np.full((40, 40), 0.5, np.float32)
    depth[:, 20:] = 0.8                                   # a 30 cm step in the middle
    mask = np.zeros((40, 40), bool)
    mask[5:35, 5:35] = True
    usable = usable_depth(depth, mask, erode_px=2)
    assert not usable[5:7].any() and usable[10, 10] and usable[10, 25]
    assert not usable[10, 19] and not usable[10, 20]      # both sides of the jump
    depth[12, 12] = np.nan
    assert not usable_depth(depth, mask)[12, 12]


def test_clean_depth_averages_noise_keeps_steps_and_drops_what_is_not_usable():
    """A tilted plane at 0.5 m with 2 mm noise and a 10 cm step: the smoothed depth is several
    times closer to the plane, the step stays a step (no pixel is pulled towards the other side),
    and every pixel usable_depth rejects (rim, jump, NaN, outside the mask) is 0."""
    rng = np.random.default_rng(0)
    v, u = np.mgrid[0:80, 0:80]
    plane = (0.5 + 0.001 * u).astype(np.float32)                  # 1 mm per pixel: tilted
    truth = np.where(u < 40, plane, plane + 0.1).astype(np.float32)
    depth = (truth + rng.normal(0, 0.002, truth.shape)).astype(np.float32)
    depth[30, 30] = np.nan
    mask = np.zeros((80, 80), bool)
    mask[5:75, 5:75] = True
    clean = clean_depth(depth, mask)
    usable = usable_depth(depth, mask)
    assert np.array_equal(clean > 0, usable)
    assert clean.dtype == np.float32 and np.isfinite(clean).all()
    inner = usable.copy()
    inner[:, 34:46] = False                                       # away from the step
    raw_error = np.abs(depth - truth)[inner].std()
    assert np.abs(clean - truth)[inner].std() < raw_error / 2.5
    assert np.abs(clean - truth)[usable].max() < 0.02              # nothing crossed the 10 cm step
    assert np.array_equal(clean_depth(depth, mask, smoothing=0.0) > 0, usable)
    assert np.allclose(clean_depth(depth, mask, smoothing=0.0)[usable], depth[usable])


def test_a_cleaned_view_is_fused_as_given(capture):
    """fuse_views cleans raw depth itself; a view marked ``cleaned`` (the RGB-D stage cleans each
    view once) is used as it is, with the same surface as a result."""
    voxel = voxel_size_for(capture.gt.extra["canonical"]["diagonal"])
    raw = fuse_views(_views(capture)[:2], voxel)
    cleaned = fuse_views([DepthView(f.image, clean_depth(f.depth, f.mask), f.mask, f.camera, T,
                                    cleaned=True)
                          for f, T in zip(capture.frames[:2], capture.gt.T_camera_object[:2])], voxel)
    def ordered(V):                                   # open3d's block order is not fixed
        return V[np.lexsort(V.T)]
    assert len(raw.vertices) == len(cleaned.vertices)
    assert np.allclose(ordered(raw.vertices), ordered(cleaned.vertices), atol=1e-9)
    zeros = [DepthView(f.image, np.zeros_like(f.depth), f.mask, f.camera, T, cleaned=True)
             for f, T in zip(capture.frames, capture.gt.T_camera_object)]
    with pytest.raises(FusionError, match="no view has depth"):
        fuse_views(zeros, voxel)                                   # used as given: nothing to fuse


def test_no_depth_on_the_object_is_a_clear_error(capture):
    views = [DepthView(f.image, np.zeros_like(f.depth), f.mask, f.camera, T)
             for f, T in zip(capture.frames, capture.gt.T_camera_object)]
    with pytest.raises(FusionError, match="no view has depth"):
        fuse_views(views, 0.002)


def test_completion_keeps_only_what_no_camera_saw_and_flags_it(capture):
    """The true mesh stands in for the model's prediction: what the views measured is dropped
    from it as covered, a copy pushed 10 cm in front of the cameras is carved away as seen empty
    space, and what survives is flagged inferred."""
    views = _views(capture)
    diagonal = capture.gt.extra["canonical"]["diagonal"]
    measured = fuse_views(views, voxel_size_for(diagonal))
    true = trimesh.load(capture.mesh_path(), force="mesh")
    colors = np.full((len(true.vertices), 3), 200, np.uint8)
    done = complete_surface(measured, true.vertices, true.faces, colors, views,
                            covered_distance=0.04 * diagonal, free_space_tolerance=0.02 * diagonal)
    inferred = ~done.measured
    assert len(done.measured) == len(done.vertices) and done.measured[:len(measured.vertices)].all()
    assert 0 < inferred.sum() < 0.5 * len(true.vertices)       # the unseen underside, not the rest
    # every inferred vertex is far from the measured surface and is the true surface's
    from scipy.spatial import cKDTree
    assert cKDTree(measured.vertices).query(done.vertices[inferred])[0].min() > 0.04 * diagonal
    # a copy moved a fifth of its size towards camera 0 lies where the cameras saw empty space
    camera0 = np.linalg.inv(capture.gt.T_camera_object[0])[:3, 3]
    towards = camera0 - true.vertices.mean(0)
    moved = true.vertices + 0.2 * diagonal * towards / np.linalg.norm(towards)
    done = complete_surface(measured, moved, true.faces, colors, views, 0.04 * diagonal, 0.02 * diagonal)
    assert (~done.measured).sum() < 0.1 * len(moved)


def test_the_resting_box_does_not_change_when_the_object_turns_about_up():
    box = trimesh.creation.box(extents=[0.3, 0.1, 0.2])
    points = box.sample(5000, seed=1) if hasattr(box, "sample") else box.vertices
    for angle in (0.0, 0.4, 1.1):
        c, s = np.cos(angle), np.sin(angle)
        T = np.eye(4)
        T[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
        T[:3, 3] = [0.05, -0.02, 0.1]
        centre, extent = resting_box(transform_points(T, points))
        assert np.allclose(sorted(extent), [0.1, 0.2, 0.3], atol=2e-3)
        assert np.allclose(centre, T[:3, 3], atol=2e-3)


def test_a_surface_needing_more_blocks_than_the_first_capacity_is_fused_whole(capture, monkeypatch):
    """The grid starts small (``INITIAL_BLOCKS``: allocating a large one costs more than the
    fusion) and grows: a grid that starts with room for ten blocks gives the same surface."""
    import sparp_ros.geometry.fusion as fusion
    voxel = voxel_size_for(capture.gt.extra["canonical"]["diagonal"])
    full = fuse_views(_views(capture), voxel)
    monkeypatch.setattr(fusion, "INITIAL_BLOCKS", 10)
    grown = fuse_views(_views(capture), voxel)

    def ordered(V):                                   # open3d's block order is not fixed
        return V[np.lexsort(V.T)]
    assert len(grown.vertices) == len(full.vertices) > 1000
    assert np.allclose(ordered(grown.vertices), ordered(full.vertices), atol=1e-9)
