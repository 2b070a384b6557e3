"""segment_select.masks_if_needed: depth when every frame has depth, else the learned network; a
given mask wins; forced methods and bad names."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from sparp_ros.render.depth_noise import STEREO_DEFAULT
from sparp_ros.render.scene import render_tabletop
from sparp_ros.segment_depth import NoDepthError
from sparp_ros.segment_select import choose_method, masks_if_needed

OBJECT = "ACE_Coffee_Mug_Kristen_16_oz_cup.glb"


@pytest.fixture(scope="module")
def frames(objects_dir: Path):
    scene = render_tabletop([objects_dir / OBJECT], views=2, seed=5, width=480, height=360,
                            depth_noise=STEREO_DEFAULT)
    return scene.capture.frames, scene.objects[0].masks


def _iou(a, b) -> float:
    return np.count_nonzero(a & b) / np.count_nonzero(a | b)


def test_depth_when_every_frame_has_depth(frames) -> None:
    fs, truth = frames
    assert choose_method(fs) == "depth"
    masked, info = masks_if_needed(fs)
    assert info["method"] == "depth" and info["source"] == "depth"
    assert info["views"] == [0, 1] and info["objects_found"] >= 1
    assert _iou(masked[0].mask, truth[0]) > 0.8


def test_learned_when_a_frame_lacks_depth(frames) -> None:
    fs, truth = frames
    no_depth = [fs[0], replace(fs[1], depth=None)]
    assert choose_method(no_depth) == "learned"
    masked, info = masks_if_needed(no_depth)
    assert info["method"] == "learned" and info["object"] == 0
    assert info["pixels"] == [int(f.mask.sum()) for f in masked]
    assert _iou(masked[0].mask, truth[0]) > 0.7
    forced, info = masks_if_needed(fs, method="learned")
    assert info["method"] == "learned"


def test_given_masks_and_forced_depth(frames) -> None:
    fs, truth = frames
    given = [replace(f, mask=m) for f, m in zip(fs, truth)]
    out, info = masks_if_needed(given)
    assert info is None and out[0].mask is given[0].mask
    with pytest.raises(NoDepthError):
        masks_if_needed([replace(f, depth=None) for f in fs], method="depth")
    with pytest.raises(ValueError, match="method"):
        masks_if_needed(fs, method="grabcut")


def test_segment_objects_learned_with_and_without_the_colour_cut(frames) -> None:
    """The node's ``learned_colour_refinement``: both ways the mug is found; the cut changes the
    mask (it follows the image's colours, not only the network's 160 px view)."""
    from sparp_ros.segment_select import segment_objects
    fs, truth = frames
    rgb_only = [replace(f, depth=None) for f in fs]
    refined = segment_objects(rgb_only, "learned")
    plain = segment_objects(rgb_only, "learned", colour_refinement=False)
    for found in (refined, plain):
        assert found and max(_iou(o.masks[0], truth[0]) for o in found if o.masks[0] is not None) > 0.6
    best = [max((o for o in found if o.masks[0] is not None), key=lambda o: _iou(o.masks[0], truth[0]))
            for found in (refined, plain)]
    assert not np.array_equal(best[0].masks[0], best[1].masks[0])
    with pytest.raises(ValueError, match="segmentation method"):
        segment_objects(rgb_only, "colour")
