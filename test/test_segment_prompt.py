"""Prompt segmentation: a clicked point, a pixel or a box per object grown into masks on every
keyframe, with depth (support plane + clusters) and without (GrabCut), against the true masks
of a noisy tabletop render; a prompt on the table is a clear error."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from sparp_ros.evaluation.segmentation_metrics import score_scene, simulated_prompt
from sparp_ros.render.depth_noise import STEREO_DEFAULT
from sparp_ros.render.scene import render_tabletop
from sparp_ros.segment_prompt import (BoxPrompt, PixelPrompt, PointPrompt, PromptError,
                                      PromptMissError, PromptSegmentationParams, segment_prompts)
from sparp_ros.segmentation import SegmentationError

OBJECTS = ("ACE_Coffee_Mug_Kristen_16_oz_cup.glb", "Cole_Hardware_Hammer_Black.glb",
           "Schleich_Hereford_Bull.glb")
SIZE = dict(width=480, height=360)
# Thresholds: measured on this scene (see the numbers beside each test) with a margin.
MIN_IOU_DEPTH = 0.85
MIN_PROMPT_VIEW_IOU_RGB = 0.75


@pytest.fixture(scope="module")
def scene(objects_dir: Path):
    """3 objects, 4 views, stereo depth noise (the scene of test_segment_depth)."""
    return render_tabletop([objects_dir / n for n in OBJECTS], views=4, seed=4,
                           depth_noise=STEREO_DEFAULT, **SIZE)


def _prompts(scene, kind: str) -> list:
    return [simulated_prompt(kind, o.masks[0], scene.capture.frames[0]) for o in scene.objects]


def _iou(a, b) -> float:
    return 0.0 if a is None else float((a & b).sum() / (a | b).sum())


def _scores(scene, found) -> list:
    """Object IoU (mean over views) per true object, requiring prompt k to give object k."""
    score = score_scene({o.name: o.masks for o in scene.objects}, found)
    assert [s.predicted_id for s in score.objects] == [0, 1, 2], score
    return [s.iou for s in score.objects]


def _table_pixel(scene) -> tuple[int, int]:
    """A table pixel of view 0 at least 40 px from every object, nearest the objects."""
    ids, depth = scene.ids[0], scene.capture.frames[0].depth
    clear = cv2.distanceTransform((ids == 0).astype(np.uint8), cv2.DIST_L2, 5)
    ys, xs = np.nonzero((clear >= 40) & (depth > 0))
    oy, ox = np.nonzero(ids > 0)
    j = int(np.argmin(np.hypot(xs - ox.mean(), ys - oy.mean())))
    return int(xs[j]), int(ys[j])


# -- with depth --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def with_depth(scene) -> dict:
    """Prompt kind -> segment_prompts' result on the RGB-D frames (computed once each)."""
    cache: dict = {}

    def get(kind: str):
        if kind not in cache:
            cache[kind] = segment_prompts(scene.capture.frames, _prompts(scene, kind))
        return cache[kind]
    return get


@pytest.mark.parametrize("kind", ["point", "box"])
def test_point_and_box_with_depth(scene, with_depth, kind: str) -> None:
    # Measured: object IoU 0.991 / 0.926 / 0.972 (mug, hammer, bull), in view 0 0.994 / 0.996 /
    # 0.968, for both kinds (and for pixels).
    found = with_depth(kind)
    assert [o.id for o in found] == [0, 1, 2]
    assert min(_scores(scene, found)) >= MIN_IOU_DEPTH
    for o, truth in zip(found, scene.objects):
        assert _iou(o.masks[0], truth.masks[0]) >= 0.9           # the prompt's own view
        assert o.centroid_world is not None and 0.0 < o.centroid_world[2] < 0.3
        assert all(m is None or m.dtype == bool and m.shape == truth.masks[0].shape
                   for m in o.masks)


def test_world_point_and_pixel_pick_the_same_objects(scene, with_depth) -> None:
    frames = scene.capture.frames
    by_point = with_depth("point")
    T = frames[0].T_world_camera
    world = [PointPrompt(tuple(T[:3, :3] @ np.asarray(p.point) + T[:3, 3]), in_world=True)
             for p in _prompts(scene, "point")]
    pixels = _prompts(scene, "pixel")
    # Prompts in another order (and kinds mixed) come back in prompt order.
    mixed = segment_prompts(frames, [world[2], pixels[0], world[1]])
    for got, want in zip(mixed, [by_point[2], by_point[0], by_point[1]]):   # the same objects
        assert [m is None for m in got.masks] == [m is None for m in want.masks]
        assert all(a is None or _iou(a, b) > 0.95 for a, b in zip(got.masks, want.masks))
    assert [o.id for o in mixed] == [0, 1, 2]


def test_a_point_on_the_table_is_refused_with_depth(scene) -> None:
    frames = scene.capture.frames
    u, v = _table_pixel(scene)
    p = frames[0].camera.unproject(np.array([[u, v]], float), np.array([frames[0].depth[v, u]]))[0]
    good = _prompts(scene, "point")[0]
    with pytest.raises(PromptMissError, match=r"prompt 1: point .* is on no object: .* above "
                                              r"the support plane") as err:
        segment_prompts(frames, [good, PointPrompt(tuple(p))])
    assert err.value.prompt == 1 and isinstance(err.value, SegmentationError)
    # A pixel or a box is about its own view: one keyframe is enough (and quicker).
    with pytest.raises(PromptMissError, match="pixel .* on no object"):
        segment_prompts(frames[:1], [PixelPrompt(u, v)])
    with pytest.raises(PromptMissError, match="holds no object"):
        segment_prompts(frames[:1], [BoxPrompt(u - 10, v - 10, 20, 20)])


# -- without depth -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rgb_frames(scene):
    return [replace(f, depth=None) for f in scene.capture.frames]


@pytest.mark.parametrize("kind", ["point", "box"])
def test_point_and_box_without_depth_with_poses(scene, rgb_frames, kind: str) -> None:
    # Measured: prompt-view IoU 0.964 / 0.829 / 1.000 (point), 1.000 / 1.000 / 0.999 (box);
    # object IoU over the 4 views 0.929 / 0.553 / 0.999 (point), 0.955 / 0.564 / 0.999 (box):
    # the hammer's handle is lost in the views its box is carried to.
    found = segment_prompts(rgb_frames, _prompts(scene, kind))
    ious = _scores(scene, found)
    assert sorted(ious)[1] >= 0.85 and min(ious) >= 0.45, ious
    for o, truth in zip(found, scene.objects):
        assert _iou(o.masks[0], truth.masks[0]) >= MIN_PROMPT_VIEW_IOU_RGB
        assert o.centroid_world is None


def test_use_depth_false_grows_by_colour_on_rgbd_frames(scene) -> None:
    params = PromptSegmentationParams(use_depth=False)
    found = segment_prompts(scene.capture.frames, _prompts(scene, "box")[:1], params)
    assert found[0].centroid_world is None                   # not from depth clusters
    assert _iou(found[0].masks[0], scene.objects[0].masks[0]) >= 0.9


def test_box_without_depth_or_poses(scene, rgb_frames) -> None:
    # Carried to the other views by colour alone. Measured: prompt-view IoU 1.000 / 1.000 /
    # 0.999; object IoU 0.870 / 0.553 / 0.483 (the bull is found in 1 of the 3 other views, the
    # hammer's handle is lost where it is seen along its length).
    frames = [replace(f, T_world_camera=None) for f in rgb_frames]
    found = segment_prompts(frames, _prompts(scene, "box"))
    ious = _scores(scene, found)
    assert np.median(ious) >= 0.45 and max(ious) >= 0.75, ious
    for o, truth in zip(found, scene.objects):
        assert _iou(o.masks[0], truth.masks[0]) >= 0.9


def test_a_point_on_the_table_is_refused_without_depth(scene, rgb_frames) -> None:
    u, v = _table_pixel(scene)
    with pytest.raises(PromptMissError, match="prompt 0: pixel .* no object"):
        segment_prompts(rgb_frames, [PixelPrompt(u, v)])


# -- errors --------------------------------------------------------------------------------------
def test_prompts_outside_the_image_are_misses(scene, rgb_frames) -> None:
    frames = scene.capture.frames
    for fr in (frames, rgb_frames):
        with pytest.raises(PromptMissError, match="outside view 0"):
            segment_prompts(fr, [PixelPrompt(600.0, 10.0)])
        with pytest.raises(PromptMissError, match="outside view 0"):
            segment_prompts(fr, [BoxPrompt(500, 400, 30, 30)])
    with pytest.raises(PromptMissError, match="behind camera 0"):
        segment_prompts(rgb_frames, [PointPrompt((0.0, 0.0, -1.0))])


def test_prompts_that_cannot_apply(scene) -> None:
    frames = [replace(f, T_world_camera=None) for f in scene.capture.frames]
    with pytest.raises(PromptError, match="prompt 0: a point in the world frame needs every "
                                          "keyframe's camera pose") as err:
        segment_prompts(frames, [PointPrompt((0, 0, 0), in_world=True)])
    assert not isinstance(err.value, PromptMissError)
    with pytest.raises(PromptError, match="prompt 1: view 7 out of range"):
        segment_prompts(frames, [PixelPrompt(1, 1), PixelPrompt(1, 1, view=7)])
    with pytest.raises(PromptError, match="empty"):
        segment_prompts(frames, [BoxPrompt(0, 0, 0, 10)])
    with pytest.raises(PromptError, match="no prompt"):
        segment_prompts(frames, [(1, 2)])
    with pytest.raises(ValueError, match="prompts is empty"):
        segment_prompts(frames, [])
    with pytest.raises(ValueError, match="frames is empty"):
        segment_prompts([], [PixelPrompt(1, 1)])
    with pytest.raises(ValueError, match="3 finite"):
        PointPrompt((0.0, np.nan, 1.0))
    with pytest.raises(ValueError, match="min_box_iou"):
        PromptSegmentationParams(min_box_iou=0.0)
    with pytest.raises(ValueError, match="point_box_fractions"):
        PromptSegmentationParams(point_box_fractions=(0.2, 1.5))


def test_box_from_a_region_of_interest() -> None:
    roi = SimpleNamespace(x_offset=10, y_offset=20, width=30, height=40, do_rectify=False)
    assert BoxPrompt.from_roi(roi, view=2) == BoxPrompt(10, 20, 30, 40, 2)
