"""``write_outputs``: the files a reconstruction leaves, read back with the tools users have, and
``overview.png`` checked the way a person would: the posed mesh's outline on the object."""
from __future__ import annotations

import dataclasses
import json
import math

import cv2
import numpy as np
import pytest
import trimesh

from sparp_ros import outputs
from sparp_ros.outputs import (MESH_OUTLINE_COLOR, OVERVIEW_CAPTION_H, OVERVIEW_LINE_H,
                               OVERVIEW_MIN_CELL, OVERVIEW_VIEW_WIDTH, overview_image, view_caption,
                               write_outputs)
from sparp_ros.reconstruction import Reconstruction, ViewPose


def test_mesh_glb_and_obj_hold_the_same_coloured_mesh(tmp_path):
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.05)
    rgb = np.random.default_rng(0).integers(0, 256, (len(mesh.vertices), 3), dtype=np.uint8)
    mesh.visual.vertex_colors = np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], 1)
    T = np.eye(4)
    T[2, 3] = 0.5
    recon = Reconstruction([ViewPose(T, True)], scale=0.17, scale_source="depth", confidence=1.0,
                           backend="test", mesh=mesh)
    paths = write_outputs(recon, tmp_path)

    assert paths["mesh"] == tmp_path / "mesh.glb" and paths["mesh_obj"] == tmp_path / "mesh.obj"
    glb = trimesh.load(paths["mesh"], force="mesh")
    obj = trimesh.load(paths["mesh_obj"], force="mesh")
    assert len(glb.vertices) == len(obj.vertices) == len(mesh.vertices)
    assert len(glb.faces) == len(obj.faces) == len(mesh.faces)
    for loaded in (glb, obj):                       # same geometry, metres, and the colours kept
        assert np.allclose(np.sort(loaded.vertices, 0), np.sort(mesh.vertices, 0), atol=1e-6)
        assert loaded.visual.kind == "vertex"
        assert np.array_equal(np.sort(loaded.visual.vertex_colors[:, :3], 0), np.sort(rgb, 0))
    result = json.loads(paths["result"].read_text())
    assert result["mesh"]["file"] == "mesh.glb" and result["mesh"]["obj_file"] == "mesh.obj"


def test_no_mesh_no_mesh_files(tmp_path):
    recon = Reconstruction([ViewPose(None, False)], scale=0.2, scale_source="prior",
                           confidence=0.0, backend="test")
    paths = write_outputs(recon, tmp_path)
    assert "mesh" not in paths and not (tmp_path / "mesh.obj").exists()
    assert json.loads(paths["result"].read_text())["mesh"] is None


# -- overview.png ---------------------------------------------------------------------------------
HEADER_H = 2 * (OVERVIEW_LINE_H + 6)     # title and legend, one line each at this width


@pytest.fixture(scope="module")
def oracle(objects_dir):
    """A rendered capture of the bull and its oracle reconstruction, with the mesh of the
    (ground-truth) NOCS shape: the depth-fused surface would be missing what no view measured,
    which the outline rightly shows but which is not what this file tests."""
    from sparp_ros.pipeline import PipelineConfig, SparpPipeline
    from sparp_ros.render import render_capture
    capture = render_capture(objects_dir / "Schleich_Hereford_Bull.glb", views=3, seed=1)
    recon = SparpPipeline(PipelineConfig(backend="oracle", measured_surface=False))(capture.frames)
    assert all(v.ok for v in recon.views) and recon.mesh is not None
    return capture.frames, recon


def _panel_height(frame) -> int:
    return int(round(frame.camera.height * OVERVIEW_VIEW_WIDTH / frame.camera.width))


def _view_panel(image, frames, i):
    """View ``i``'s frame panel (the frame with its drawings) cut out of the overview."""
    h = _panel_height(frames[0])
    top = HEADER_H + i * (OVERVIEW_CAPTION_H + h) + OVERVIEW_CAPTION_H
    return image[top:top + h, :OVERVIEW_VIEW_WIDTH]


def _caption(image, frames, i):
    h = _panel_height(frames[0])
    top = HEADER_H + i * (OVERVIEW_CAPTION_H + h)
    return image[top:top + OVERVIEW_CAPTION_H]


def _outline_distance(panel, frame) -> tuple[float, int]:
    """Mean distance (px) from the mesh-outline pixels to the mask's outline, and their count."""
    h, w = panel.shape[:2]
    mask = cv2.resize(frame.mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    outline = np.full((h, w), 255, np.uint8)
    cv2.drawContours(outline, contours, -1, 0, 1)
    dist = cv2.distanceTransform(outline, cv2.DIST_L2, 5)
    mesh_px = np.all(panel == MESH_OUTLINE_COLOR, axis=-1)
    return float(dist[mesh_px].mean()) if mesh_px.any() else math.inf, int(mesh_px.sum())


def test_overview_with_frames_has_one_row_per_view_at_the_view_width(oracle, tmp_path):
    frames, recon = oracle
    image = overview_image(recon, frames)
    h = _panel_height(frames[0])                          # 480 x 360 for the 640 x 480 renders
    assert image.dtype == np.uint8
    assert image.shape == (HEADER_H + len(frames) * (OVERVIEW_CAPTION_H + h), OVERVIEW_VIEW_WIDTH + h, 3)
    # beside each frame its NOCS map, nearest-neighbour upscaled to the row's height
    nocs = image[HEADER_H + OVERVIEW_CAPTION_H:HEADER_H + OVERVIEW_CAPTION_H + h, OVERVIEW_VIEW_WIDTH:]
    assert nocs.shape == (h, h, 3) and (nocs.sum(-1) > 0).mean() > 0.1
    # write_outputs with the frames writes that picture
    paths = write_outputs(recon, tmp_path, frames=frames)
    written = cv2.cvtColor(cv2.imread(str(paths["overview"])), cv2.COLOR_BGR2RGB)
    assert written.shape == image.shape


def test_the_posed_mesh_outline_lies_on_the_mask_outline(oracle):
    frames, recon = oracle
    image = overview_image(recon, frames)
    for i, frame in enumerate(frames):
        mean_px, count = _outline_distance(_view_panel(image, frames, i), frame)
        assert count > 200, f"view {i}: the mesh outline is missing"
        assert mean_px < 2.5, f"view {i}: mesh outline {mean_px:.2f} px from the mask outline"
    # ... and the check sees a wrong pose: the object turned by 10 degrees about its z axis
    c, s = math.cos(math.radians(10)), math.sin(math.radians(10))
    R = np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    views = list(recon.views)
    views[0] = dataclasses.replace(views[0], T_camera_object=views[0].T_camera_object @ R)
    wrong = overview_image(dataclasses.replace(recon, views=views), frames)
    wrong_px = _outline_distance(_view_panel(wrong, frames, 0), frames[0])[0]
    assert wrong_px > 4.0, wrong_px         # 9 px here


def test_a_failed_view_is_captioned_failed_and_not_drawn(oracle):
    frames, recon = oracle
    views = list(recon.views)
    views[1] = ViewPose(None, False, message="PnP: too few inliers")
    failed = dataclasses.replace(recon, views=views)
    assert view_caption(failed, 1) == "view 1: failed - PnP: too few inliers"
    assert view_caption(failed, 0).startswith("view 0 (reference): ok, inliers ")
    image = overview_image(failed, frames)
    assert not np.all(_view_panel(image, frames, 1) == MESH_OUTLINE_COLOR, axis=-1).any()
    for i in (0, 2):
        assert np.all(_view_panel(image, frames, i) == MESH_OUTLINE_COLOR, axis=-1).sum() > 200

    def reddish(img):
        return int(((img[..., 0] > 180) & (img[..., 1] < 130) & (img[..., 2] < 130)).sum())
    assert reddish(_caption(image, frames, 1)) > 50        # the failed caption is red ...
    assert reddish(_caption(image, frames, 0)) == 0        # ... an ok one is not


def test_without_frames_the_crop_grid_is_upscaled_to_readable_cells(oracle, tmp_path):
    frames, recon = oracle
    cell = recon.crops[0].shape[0]
    f = math.ceil(OVERVIEW_MIN_CELL / cell)
    image = overview_image(recon)
    assert image.shape[1] == len(recon.views) * cell * f >= len(recon.views) * OVERVIEW_MIN_CELL
    assert image.shape[0] > 4 * cell * f
    assert np.all(image == MESH_OUTLINE_COLOR, axis=-1).sum() > 200   # outlines drawn there too
    # frames that do not match the views fall back to the grid rather than fail
    assert overview_image(recon, frames[:1]).shape == image.shape
    paths = write_outputs(recon, tmp_path)
    assert cv2.imread(str(paths["overview"])).shape == image.shape


def test_the_title_names_backend_scale_source_and_the_measured_share():
    mesh = trimesh.creation.icosphere(subdivisions=1, radius=0.05)     # 42 vertices
    measured = np.zeros(len(mesh.vertices), bool)
    measured[:21] = True
    recon = Reconstruction([ViewPose(np.eye(4), True, inlier_ratio=0.9)], scale=0.1634,
                           scale_source="depth", confidence=0.9, backend="model", mesh=mesh,
                           mesh_measured=measured)
    assert outputs.overview_title(recon) == [
        "backend model", "scale 0.163 m (depth)", "confidence 0.90", "1/1 views posed",
        "mesh 42 vertices, 50% measured"]
    recon = dataclasses.replace(recon, mesh_measured=None)
    assert outputs.overview_title(recon)[-1] == "mesh 42 vertices, all inferred"


def test_a_reconstruction_widened_by_views_left_out_keeps_every_keyframes_place():
    """``with_views_left_out``: the kept views' results at their keyframes, blanks and a reason
    at the others; indices that do not cover the keyframes once are refused."""
    from sparp_ros.reconstruction import with_views_left_out
    T = np.eye(4)
    recon = Reconstruction(views=[ViewPose(T, True), ViewPose(2 * T, True)], scale=0.2,
                           scale_source="depth", confidence=1.0, backend="oracle",
                           nocs=[np.ones((8, 8, 3), np.float32)] * 2,
                           nocs_masks=[np.ones((8, 8), bool)] * 2,
                           crops=[np.full((8, 8, 3), 7, np.uint8)] * 2,
                           extra={"cell_cameras": [[[1.0]], [[2.0]]]})
    wide = with_views_left_out(recon, [0, 2], {1: "hidden"}, {1: [[9.0]]})
    assert [v.ok for v in wide.views] == [True, False, True]
    assert wide.views[2].T_camera_object[0, 0] == 2.0 and wide.views[1].message == "left out: hidden"
    assert not wide.nocs_masks[1].any() and wide.nocs_masks[2].all()
    assert wide.crops[1].shape == (8, 8, 3) and not wide.crops[1].any()
    assert wide.extra["cell_cameras"] == [[[1.0]], [[9.0]], [[2.0]]]
    assert wide.extra["view_indices"] == [0, 2] and wide.extra["left_out"] == {"1": "hidden"}
    with pytest.raises(ValueError, match="cover"):
        with_views_left_out(recon, [0, 1], {1: "hidden"}, {1: [[9.0]]})
