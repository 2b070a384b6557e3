"""Absolute-threshold F-scores (5 / 10 mm) with precision and recall, and the measured / inferred
split of the precision, on trimesh primitives whose answers follow from their geometry (no ROS)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from sparp_ros.camera import PinholeCamera
from sparp_ros.capture import Capture, Frame, GroundTruth
from sparp_ros.evaluation.metrics import (ABSOLUTE_FSCORE_THRESHOLDS_M, absolute_fscore_key,
                                          measured_faces, measured_split_keys, mesh_metrics,
                                          mesh_summary_keys)
from sparp_ros.evaluation.report import write_report
from sparp_ros.evaluation.run import _summarize
from sparp_ros.reconstruction import Reconstruction, ViewPose

ABSOLUTE_KEYS = ["fscore@5mm", "precision@5mm", "recall@5mm",
                 "fscore@10mm", "precision@10mm", "recall@10mm"]
SPLIT_KEYS = ["precision@5mm_measured", "precision@5mm_inferred", "precision@0.01_measured",
              "precision@0.01_inferred", "measured_fraction"]


def _capture(tmp_path: Path, true_mesh: trimesh.Trimesh) -> Capture:
    """One metric view of ``true_mesh`` from 70 cm, with the mesh file the metrics load."""
    true_mesh.export(tmp_path / "truth.ply")
    T_c_mesh = np.eye(4)
    T_c_mesh[:3, 3] = [0.01, -0.02, 0.7]
    cam = PinholeCamera(8, 8, np.array([[10.0, 0, 4], [0, 10, 4], [0, 0, 1]]))
    return Capture([Frame(np.zeros((8, 8, 3), np.uint8), cam)],
                   GroundTruth([T_c_mesh], metric=True, mesh=str(tmp_path / "truth.ply")),
                   tmp_path)


def _recon(capture: Capture, mesh: trimesh.Trimesh,
           measured: np.ndarray | None = None) -> Reconstruction:
    """Our mesh posed exactly (object frame = mesh frame), with an optional per-vertex flag."""
    recon = Reconstruction([ViewPose(capture.gt.T_camera_object[0].copy(), True)], 0.2, "depth",
                           1.0, "test", mesh=mesh)
    recon.mesh_measured = measured        # the field reconstruction.py is gaining; set either way
    return recon


def _translated(mesh: trimesh.Trimesh, offset: list[float]) -> trimesh.Trimesh:
    moved = mesh.copy()
    moved.apply_translation(offset)
    return moved


def test_key_names():
    assert ABSOLUTE_FSCORE_THRESHOLDS_M == (0.005, 0.010)
    assert [absolute_fscore_key(t, k) for t in ABSOLUTE_FSCORE_THRESHOLDS_M
            for k in ("fscore", "precision", "recall")] == ABSOLUTE_KEYS
    assert measured_split_keys() == SPLIT_KEYS
    summary = mesh_summary_keys()
    assert summary[:4] == ["chamfer", "fscore", "fscore@0.01", "fscore@0.02"]   # unchanged
    assert set(ABSOLUTE_KEYS + SPLIT_KEYS + ["precision@0.01", "recall@0.01"]) <= set(summary)


def test_a_mesh_against_itself_scores_one_everywhere(tmp_path):
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.1)
    cap = _capture(tmp_path, sphere)
    m = mesh_metrics(_recon(cap, sphere.copy(), np.ones(len(sphere.vertices), bool)), cap)
    # independent samplings 1.6 mm apart on average: every one within 1 % (3.5 mm) of the other
    for key in [*ABSOLUTE_KEYS, "fscore@0.01", "precision@0.01", "recall@0.01",
                "precision@5mm_measured", "precision@0.01_measured", "measured_fraction"]:
        assert m[key] == 1.0, key
    assert m["precision@5mm_inferred"] is None and m["precision@0.01_inferred"] is None


def test_a_7mm_shift_fails_5mm_and_passes_10mm(tmp_path):
    """A 10 x 10 x 2 cm plate shifted 7 mm along its normal: its top face (0.01 m² of 0.028) is
    7 mm off; its bottom face, now inside the true plate, is 7 mm from the true bottom but within
    5 mm of the true sides on a 5 mm rim (1 - 0.9² = 19 % of it); the sides are on the true sides
    where they overlap them and at most 7 mm off where they overhang, 9/10 of them within 5 mm.
    So precision = recall (the reverse shift, by symmetry) = (0.9 * 0.008 + 0.19 * 0.01) / 0.028
    = 0.325 at 5 mm, and everything is within 10 mm."""
    plate = trimesh.creation.box(extents=[0.1, 0.1, 0.02])
    cap = _capture(tmp_path, plate)
    m = mesh_metrics(_recon(cap, _translated(plate, [0, 0, 0.007])), cap)
    expected = (0.9 * 0.008 + 0.19 * 0.01) / 0.028
    assert m["precision@5mm"] == pytest.approx(expected, abs=0.01)
    assert m["recall@5mm"] == pytest.approx(expected, abs=0.01)
    assert m["fscore@5mm"] == pytest.approx(expected, abs=0.01) and m["fscore@5mm"] < 0.5
    assert m["fscore@10mm"] > 0.99 and m["precision@10mm"] > 0.99 and m["recall@10mm"] > 0.99
    # 1 % of the 14.3 cm diagonal is 1.43 mm: the overlapping 13/20 of the sides and 1.43 mm
    # strips of the overhang and of the bottom's rim pass, (0.0052 + 0.0006 + 0.0006) / 0.028
    assert m["fscore@0.01"] == pytest.approx(0.226, abs=0.02)
    assert m["precision@5mm_measured"] is None and m["measured_fraction"] is None  # no flags


def test_half_of_the_surface_is_precise_but_half_complete(tmp_path):
    """The truth is two 5 cm cubes 5 cm apart; our estimate is one of them, exactly: all of our
    surface is right (precision 1), half of the true surface is missing (recall 0.5)."""
    cube = trimesh.creation.box(extents=[0.05, 0.05, 0.05])
    truth = trimesh.util.concatenate([cube, _translated(cube, [0.1, 0, 0])])
    cap = _capture(tmp_path, truth)
    m = mesh_metrics(_recon(cap, cube.copy()), cap)
    assert m["precision@5mm"] == 1.0
    assert m["recall@5mm"] == pytest.approx(0.5, abs=0.01)       # binomial sd 0.002 at 50000
    assert m["fscore@5mm"] == pytest.approx(2 / 3, abs=0.01)
    assert m["precision@10mm"] == 1.0 and m["recall@10mm"] == pytest.approx(0.5, abs=0.01)


def test_measured_and_inferred_precision_apart(tmp_path):
    """A 10 cm cube whose top face was inferred 20 mm too high and whose other five faces were
    measured exactly: the measured samples are all right, the inferred ones all wrong, and 5/6 of
    the area (so of the samples) is measured."""
    cube = trimesh.creation.box(extents=[0.1, 0.1, 0.1])
    top = np.flatnonzero(cube.face_normals[:, 2] > 0.9)
    sides = np.setdiff1d(np.arange(len(cube.faces)), top)
    measured_part = cube.submesh([sides], append=True)
    inferred_part = _translated(cube.submesh([top], append=True), [0, 0, 0.02])
    ours = trimesh.util.concatenate([measured_part, inferred_part])
    flags = np.r_[np.ones(len(measured_part.vertices), bool),
                  np.zeros(len(inferred_part.vertices), bool)]
    assert len(flags) == len(ours.vertices)
    cap = _capture(tmp_path, cube)
    m = mesh_metrics(_recon(cap, ours, flags), cap)
    assert m["precision@5mm_measured"] == 1.0
    assert m["precision@5mm_inferred"] == 0.0
    assert m["precision@0.01_measured"] > 0.99                  # 1.7 mm vs ~1.1 mm spacing
    assert m["precision@0.01_inferred"] == 0.0
    assert m["measured_fraction"] == pytest.approx(5 / 6, abs=0.01)
    # the unsplit precision is the area-weighted mix of the two
    assert m["precision@5mm"] == pytest.approx(m["measured_fraction"], abs=1e-9)
    # a flag out of step with the mesh would split by the wrong vertices: refused
    with pytest.raises(ValueError, match="mesh_measured has 11 entries for 12 mesh vertices"):
        mesh_metrics(_recon(cap, ours, flags[:-1]), cap)


def test_a_face_is_measured_when_two_of_its_three_vertices_are():
    faces = np.array([[0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5]])
    flags = np.array([True, True, False, False, True, True])
    assert measured_faces(faces, flags).tolist() == [True, False, False, True]


def test_without_flags_the_split_keys_are_none(tmp_path):
    """No ``mesh_measured`` (None, or a reconstruction without the attribute): the split keys are
    present with None, so every record has the same keys and "no data" never reads as a score."""
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.1)
    cap = _capture(tmp_path, sphere)
    m = mesh_metrics(_recon(cap, sphere.copy(), None), cap)
    assert all(m[k] is None for k in SPLIT_KEYS)

    class Bare:                       # a reconstruction type that predates the flag
        views = [ViewPose(cap.gt.T_camera_object[0].copy(), True)]
        reference_view = 0
        mesh = sphere.copy()

    bare = mesh_metrics(Bare(), cap)
    assert all(bare[k] is None for k in SPLIT_KEYS)
    assert bare["fscore@5mm"] == m["fscore@5mm"] == 1.0


def _record(mesh: dict | None) -> dict:
    return {"rotation_errors_deg": [1.0], "translation_errors_m": None, "mesh": mesh,
            "scale": None, "failed": False, "time_s": 1.0}


def test_summary_averages_the_new_keys_over_captures_that_have_them():
    a = {"chamfer": 0.01, "fscore": 1.0, "fscore@5mm": 0.8, "precision@5mm": 0.9,
         "recall@5mm": 0.7, "fscore@10mm": 1.0, "precision@0.01": 0.5, "recall@0.01": 0.4,
         "precision@5mm_measured": 0.95, "precision@5mm_inferred": None, "measured_fraction": 1.0}
    b = {"chamfer": 0.03, "fscore": 0.5, "fscore@5mm": 0.4, "precision@5mm": 0.5,
         "recall@5mm": 0.3, "fscore@10mm": 0.6, "precision@0.01": 0.1, "recall@0.01": 0.2,
         "precision@5mm_measured": 0.75, "precision@5mm_inferred": 0.25,
         "measured_fraction": 0.5}
    c = {**b, **{k: None for k in SPLIT_KEYS}}            # a capture without flags
    s = _summarize([_record(a), _record(b), _record(c), _record(None)])
    assert s["chamfer"] == pytest.approx((0.01 + 0.03 + 0.03) / 3)      # meaning unchanged
    assert s["fscore@5mm"] == pytest.approx((0.8 + 0.4 + 0.4) / 3)
    assert s["recall@5mm"] == pytest.approx((0.7 + 0.3 + 0.3) / 3)
    assert s["precision@0.01"] == pytest.approx(0.7 / 3)
    assert s["precision@5mm_measured"] == pytest.approx(0.85)         # a and b only
    assert s["precision@5mm_inferred"] == pytest.approx(0.25)         # b only: a had none
    assert s["measured_fraction"] == pytest.approx(0.75)
    assert s["precision@0.01_measured"] is None and s["recall@10mm"] is None   # nobody has it
    assert s["captures"] == 4
    none = _summarize([_record(None)])
    assert all(none[k] is None for k in mesh_summary_keys())


def test_report_shows_absolute_fscores_and_the_split_when_present(tmp_path):
    base = {"median_rotation_error_deg": 2.0, "acc15": 1.0, "acc30": 1.0,
            "translation_error_m": 0.003, "scale_error": 0.01, "chamfer": 0.01, "fscore": 0.99,
            "fscore@0.01": 0.5, "fscore@0.02": 0.8, "fscore@5mm": 0.912, "precision@5mm": 0.95,
            "recall@5mm": 0.877, "fscore@10mm": 0.98, "captures": 2, "failures": 0, "time_s": 1.0}
    per_capture = {"captures": [], "errors": []}
    report = write_report({"model": base}, per_capture, tmp_path, "test").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| model |"))
    header = next(line for line in report.splitlines() if line.startswith("| method |"))
    assert "| F@5mm (P/R) | F@10mm |" in header and "meas." not in header
    assert "| 0.912 (0.95/0.88) | 0.980 |" in row
    assert header.count("|") == row.count("|")

    split = {**base, "precision@5mm_measured": 0.99, "precision@5mm_inferred": 0.62,
             "precision@0.01_measured": 0.7, "precision@0.01_inferred": None,
             "measured_fraction": 0.71}
    report = write_report({"model": split, "other": base}, per_capture, tmp_path,
                          "test").read_text()
    lines = report.splitlines()
    header = next(line for line in lines if line.startswith("| method |"))
    row = next(line for line in lines if line.startswith("| model |"))
    other = next(line for line in lines if line.startswith("| other |"))
    assert "| P@5mm meas. / inf. | P@1 % meas. / inf. | measured |" in header
    assert "| 0.990 / 0.620 | 0.700 / – | 71% |" in row
    assert "| – / – | – / – | – |" in other
    separator = lines[lines.index(header) + 1]
    assert header.count("|") == row.count("|") == other.count("|") == separator.count("|")
