"""`sparp-ros eval` on a capture folder without masks: the object nearest view 0's centre is
segmented (depth here: a tabletop with stereo noise), the run says so per capture, and the poses
and mesh are scored against that object's truth."""
from __future__ import annotations

import json

import pytest

from sparp_ros.evaluation.run import run_eval, segment_if_unmasked

OBJECTS = ("ACE_Coffee_Mug_Kristen_16_oz_cup", "Folic_Acid")


@pytest.fixture(scope="module")
def tabletop(objects_dir, tmp_path_factory):
    from sparp_ros.render.depth_noise import STEREO_DEFAULT
    from sparp_ros.render.scene import render_tabletop

    root = tmp_path_factory.mktemp("table")
    scene = render_tabletop([objects_dir / f"{n}.glb" for n in OBJECTS], root, views=3, seed=3,
                            depth_noise=STEREO_DEFAULT, width=320, height=240)
    return root, scene


def test_a_capture_with_masks_comes_back_as_it_is(objects_dir, tmp_path):
    from sparp_ros.render import render_capture

    capture = render_capture(objects_dir / f"{OBJECTS[0]}.glb", tmp_path, views=2, seed=1)
    same, info = segment_if_unmasked(capture)
    assert same is capture and info is None


def test_eval_segments_an_unmasked_capture_and_scores_that_object(tabletop, tmp_path):
    root, scene = tabletop
    assert not (root / "masks" / "000.png").exists()          # no single-object masks
    metrics = run_eval([root], tmp_path / "report", backends=["model+tf"], baseline=None)
    per = json.loads((tmp_path / "report" / "per_capture.json").read_text())
    assert not per["errors"], per["errors"]
    seg = per["captures"][0]["segmentation"]
    assert seg["method"] == "depth" and seg["objects_found"] == 2 and seg["views"][0] == 0
    m = metrics["model+tf"]
    print(f"\nunmasked tabletop, model+tf: rotation median {m['median_rotation_error_deg']:.2f} "
          f"deg, F@5% {m['fscore']:.3f}, precision@5mm {m['precision@5mm']:.3f}")
    assert m["failures"] == 0 and m["median_rotation_error_deg"] < 2.0   # poses from TF
    assert m["fscore"] > 0.8 and m["precision@5mm"] > 0.9     # the surface is the primary's
