"""`sparp-ros reconstruct` on a capture without masks: it segments the object nearest the first
image's centre, from depth when the capture has depth (segment_depth.py), else with the learned
foreground network (segment_learned.py; segment_select.py picks)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sparp_ros import cli
from sparp_ros.camera import PinholeCamera
from sparp_ros.capture import Capture, Frame, save_capture
from sparp_ros.conventions import transform_points
from sparp_ros.render.depth_noise import STEREO_DEFAULT
from sparp_ros.render.scene import render_tabletop

OBJECTS = ("ACE_Coffee_Mug_Kristen_16_oz_cup.glb", "Cole_Hardware_Hammer_Black.glb")
SIZE = dict(width=480, height=360)


def test_cli_reconstructs_the_centre_object_of_a_capture_without_masks(objects_dir: Path,
                                                                       tmp_path: Path,
                                                                       caplog) -> None:
    scene = render_tabletop([objects_dir / n for n in OBJECTS], tmp_path / "cap", views=3,
                            seed=21, depth_noise=STEREO_DEFAULT, **SIZE)
    caplog.set_level("INFO")
    rc = cli.main(["reconstruct", str(tmp_path / "cap"), "--out", str(tmp_path / "out"),
                   "--backend", "oracle", "--no-mesh"])
    assert rc == 0
    assert "no masks in the capture" in caplog.text and "reconstructing object" in caplog.text
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["segmentation"]["source"] == "depth"
    assert result["segmentation"]["views"] == list(range(len(result["views"])))
    gt = scene.capture.gt                                     # the primary object's truth
    canonical = gt.canonical_frame()
    centre = transform_points(gt.T_camera_object[0], canonical.center[None])[0]
    t = np.asarray(result["views"][0]["T_camera_object"])[:3, 3]
    assert np.linalg.norm(t - centre) < 0.03
    assert abs(result["scale"] / canonical.diagonal - 1.0) < 0.15


def test_cli_without_depth_segments_with_the_learned_network(objects_dir: Path, tmp_path: Path,
                                                            caplog) -> None:
    render_tabletop([objects_dir / OBJECTS[0]], tmp_path / "cap", views=2, seed=2, **SIZE)
    cams = json.loads((tmp_path / "cap" / "cameras.json").read_text())
    for f in cams["frames"]:
        f.pop("depth")
    (tmp_path / "cap" / "cameras.json").write_text(json.dumps(cams))
    caplog.set_level("INFO")
    rc = cli.main(["reconstruct", str(tmp_path / "cap"), "--out", str(tmp_path / "out"),
                   "--backend", "oracle", "--no-mesh"])
    assert rc == 0
    assert "by the learned segmenter" in caplog.text
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["segmentation"]["method"] == "learned"
    assert result["segmentation"]["views"][0] == 0


def test_cli_reports_a_capture_with_depth_but_no_table(tmp_path: Path, capsys) -> None:
    camera = PinholeCamera(width=160, height=120, K=np.array([[140.0, 0, 79.5], [0, 140.0, 59.5],
                                                              [0, 0, 1]]))
    rng = np.random.default_rng(0)
    frame = Frame(image=rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), camera=camera,
                  depth=rng.uniform(0.4, 2.0, (120, 160)).astype(np.float32))
    save_capture(Capture(frames=[frame]), tmp_path / "cap")
    rc = cli.main(["reconstruct", str(tmp_path / "cap"), "--out", str(tmp_path / "out"),
                   "--backend", "oracle", "--no-mesh"])
    assert rc == 2
    assert "frame 0: no support plane found" in capsys.readouterr().err
