"""Scene realism: contact shadows darken the table next to the objects only, distractors stay out
of the objects' ids, the plain scene is untouched, and the options are checked."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from sparp_ros.render.scene import render_tabletop
from sparp_ros.render.scene_realism import SceneRealism

OBJECTS = ("ACE_Coffee_Mug_Kristen_16_oz_cup.glb", "Crayola_Crayons_24_count.glb")
DISTRACTORS = ("Schleich_Hereford_Bull.glb", "Folic_Acid.glb")
SIZE = dict(width=240, height=180)
QUIET = replace(SceneRealism.off(), light_types=("overcast",), camera_effects=None)


def test_contact_shadow_darkens_table_beside_objects(objects_dir: Path) -> None:
    paths = [objects_dir / n for n in OBJECTS]
    lit = render_tabletop(paths, views=2, seed=4, realism=QUIET, **SIZE)
    shadowed = render_tabletop(paths, views=2, seed=4, **SIZE,
                               realism=replace(QUIET, contact_shadow_prob=1.0,
                                               contact_shadow_strength=(0.6, 0.6)))
    for a, b, ids in zip(lit.capture.frames, shadowed.capture.frames, lit.ids):
        table = (ids == 0) & (a.depth > 0)
        near = cv2.dilate((ids > 0).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
        far = cv2.dilate((ids > 0).astype(np.uint8), np.ones((61, 61), np.uint8)) == 0
        diff = a.image.astype(float).sum(-1) - b.image.astype(float).sum(-1)
        assert diff[table & near].mean() > 20           # darker next to the objects
        assert abs(diff[table & far].mean()) < 3         # unchanged far away
        np.testing.assert_array_equal(a.image[ids > 0], b.image[ids > 0])


def test_distractors_are_no_objects(objects_dir: Path) -> None:
    realism = replace(QUIET, distractor_count=(2, 2), distractor_gap_m=(0.02, 0.1),
                      elevation_deg=(10.0, 25.0))
    scene = render_tabletop([objects_dir / OBJECTS[0]], views=3, seed=1, realism=realism,
                            distractors=[objects_dir / n for n in DISTRACTORS], **SIZE)
    assert len(scene.objects) == 1
    assert sorted(scene.capture.gt.extra["realism"]["distractors"]) == sorted(
        Path(n).stem for n in DISTRACTORS)
    seen = 0
    for ids, d in zip(scene.ids, scene.distractor_ids):
        assert not ((ids > 0) & (d > 0)).any()
        assert set(np.unique(ids)) <= {0, 1}
        seen += int((d > 0).any())
    assert seen >= 1


def test_full_realism_renders_and_repeats(objects_dir: Path) -> None:
    paths = [objects_dir / n for n in OBJECTS]
    a = render_tabletop(paths, views=1, seed=9, realism=SceneRealism(), **SIZE)
    b = render_tabletop(paths, views=1, seed=9, realism=SceneRealism(), **SIZE)
    np.testing.assert_array_equal(a.capture.frames[0].image, b.capture.frames[0].image)
    assert a.lighting.kind in ("directional", "point", "overcast")
    with pytest.raises(ValueError, match="light_types"):
        SceneRealism(light_types=("laser",))
    with pytest.raises(ValueError, match="distractor_count"):
        SceneRealism(distractor_count=(3, 1))
