"""``run_eval`` end to end on synthetic captures with stand-in backends: output files, the exact
``metrics.json`` keys, failures counted and never aborting the run."""
from __future__ import annotations

import json
import sys
import types

import cv2
import numpy as np
import pytest
import trimesh

from sparp_ros.camera import PinholeCamera
from sparp_ros.capture import Capture, Frame, GroundTruth, save_capture
from sparp_ros.evaluation import run_eval
from sparp_ros.reconstruction import Reconstruction, ViewPose

METRIC_KEYS = {"median_rotation_error_deg", "acc15", "acc30", "translation_error_m", "chamfer",
               "fscore", "fscore@0.01", "fscore@0.02", "scale_error", "captures", "failures",
               "time_s", "precision@0.01", "recall@0.01",
               "fscore@5mm", "precision@5mm", "recall@5mm",
               "fscore@10mm", "precision@10mm", "recall@10mm",
               "precision@5mm_measured", "precision@5mm_inferred", "precision@0.01_measured",
               "precision@0.01_inferred", "measured_fraction", "fscore_published",
               "confirmed_pair_fraction", "acc15_confirmed"}


def _look_from(azimuth_deg: float, distance: float = 0.6) -> np.ndarray:
    """T_camera_mesh of a camera on a horizontal circle looking at the origin (OpenCV axes)."""
    a = np.radians(azimuth_deg)
    eye = distance * np.array([np.cos(a), np.sin(a), 0.0])
    z = -eye / np.linalg.norm(eye)
    x = np.cross(z, [0, 0, 1.0])
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, y, z])
    T[:3, 3] = -T[:3, :3] @ eye
    return T


def _write_capture(root, n_views: int, seed: int, mesh_path) -> None:
    rng = np.random.default_rng(seed)
    cam = PinholeCamera(64, 48, np.array([[60.0, 0, 31.5], [0, 60, 23.5], [0, 0, 1]]))
    frames = [Frame(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), cam,
                    depth=np.full((48, 64), 0.6, np.float32), mask=np.ones((48, 64), bool))
              for _ in range(n_views)]
    gt = GroundTruth([_look_from(30.0 * k) for k in range(n_views)], metric=True,
                     mesh=str(mesh_path), object=f"box{seed}")
    save_capture(Capture(frames, gt), root)


@pytest.fixture
def fake_pipeline(monkeypatch):
    """A ``sparp_ros.pipeline`` whose "exact" backend returns the truth in another object frame
    (with a 0.5° error on view 1) and whose "broken" backend raises."""
    T_mesh_object = np.eye(4)
    T_mesh_object[:3, 3] = [0.01, 0.02, 0.03]
    box = trimesh.creation.box(extents=[0.1, 0.1, 0.1])

    calls = []

    def reconstruct_capture(capture, backend="oracle", device="cpu", **config):
        calls.append((backend, config))
        if backend == "broken":
            raise RuntimeError("cannot handle this capture")
        views = []
        for i, T in enumerate(capture.gt.T_camera_object):
            T_c_o = T @ T_mesh_object
            if i == 1:
                a = np.radians(0.5)
                R = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
                T_c_o = T_c_o.copy()
                T_c_o[:3, :3] = R @ T_c_o[:3, :3]
            views.append(ViewPose(T_c_o, True, pose_source="model" if i == 1 else "registered"))
        mesh = box.copy()
        mesh.apply_transform(np.linalg.inv(T_mesh_object))
        return Reconstruction(views, 0.17, "depth", 1.0, backend, mesh=mesh,
                              timings={"nocs": 0.01, "pnp": 0.002})

    module = types.ModuleType("sparp_ros.pipeline")
    module.reconstruct_capture = reconstruct_capture
    module.calls = calls
    monkeypatch.setitem(sys.modules, "sparp_ros.pipeline", module)
    import sparp_ros
    monkeypatch.setattr(sparp_ros, "pipeline", module, raising=False)
    return module


def broken_or_baseline_say_nothing(metrics) -> bool:
    """A failed method and the SfM baseline carry no pose sources: no confirmed-pair figures."""
    return all(metrics[m]["confirmed_pair_fraction"] is None and metrics[m]["acc15_confirmed"] is None
               for m in ("broken", "pycolmap"))


def test_run_eval_writes_every_output_and_counts_failures(tmp_path, fake_pipeline, capsys):
    mesh_path = tmp_path / "box.ply"
    trimesh.creation.box(extents=[0.1, 0.1, 0.1]).export(mesh_path)
    caps = []
    for k, n in enumerate([3, 4]):
        _write_capture(tmp_path / f"cap{k}", n, k, mesh_path)
        caps.append(tmp_path / f"cap{k}")
    (tmp_path / "not_a_capture").mkdir()
    out = tmp_path / "out"
    metrics = run_eval(caps + [tmp_path / "not_a_capture"], out, backends=["exact", "broken"],
                       baseline="pycolmap", command="sparp-ros eval test")

    assert set(metrics) == {"exact", "broken", "pycolmap"}
    for m in metrics.values():
        assert set(m) == METRIC_KEYS
    assert json.loads((out / "metrics.json").read_text()) == metrics
    exact, broken, colmap = metrics["exact"], metrics["broken"], metrics["pycolmap"]
    # 3 + 6 pairs; view 1 is off by 0.5° in 2 + 3 of them, the other 4 are exact
    assert exact["captures"] == 2 and exact["failures"] == 0
    assert exact["median_rotation_error_deg"] == pytest.approx(0.5, abs=1e-4)
    assert exact["acc15"] == 1.0 and exact["fscore"] > 0.99 and exact["chamfer"] < 0.01
    # view 1's pose is the model's: of the 3 + 6 pairs, 1 + 3 are confirmed on both sides
    assert exact["confirmed_pair_fraction"] == pytest.approx(4 / 9) and exact["acc15_confirmed"] == 1.0
    assert broken_or_baseline_say_nothing(metrics)
    assert exact["translation_error_m"] is not None and exact["translation_error_m"] < 0.01
    assert exact["fscore@0.01"] > 0.99 and exact["fscore@0.02"] > 0.99
    assert exact["fscore@5mm"] > 0.99 and exact["fscore@10mm"] == 1.0
    assert exact["measured_fraction"] is None          # the stand-in meshes carry no flags
    # no true diagonal in these gt.json: the scale is checked on the baselines, exact but for
    # view 1's 0.5° turn about the object, which moves its camera by < 0.1 % of the baseline
    assert exact["scale_error"] < 1e-3
    assert broken["failures"] == 2 and broken["median_rotation_error_deg"] == 180.0
    assert broken["acc30"] == 0.0 and broken["chamfer"] is None and broken["fscore@0.01"] is None
    assert broken["translation_error_m"] is None       # every pair infinitely wrong
    assert broken["scale_error"] is None                # every capture failed: infinite
    # noise images: SfM cannot register anything, reported as failures with no translation
    assert colmap["failures"] == 2 and colmap["translation_error_m"] is None
    assert colmap["scale_error"] is None                # SfM has no metric scale

    per = json.loads((out / "per_capture.json").read_text())
    assert len(per["captures"]) == 2 and per["errors"][0]["capture"].endswith("not_a_capture")
    rec = per["captures"][0]["methods"]["exact"]
    assert rec["rotation_errors_deg"][0] == pytest.approx(0.5, abs=1e-4)   # pair (0, 1)
    assert rec["timings"] == {"nocs": 0.01, "pnp": 0.002}
    assert "cannot handle" in per["captures"][0]["methods"]["broken"]["message"]
    report = (out / "report.md").read_text()
    assert "sparp-ros eval test" in report and "| exact |" in report and "| pycolmap |" in report
    assert "| scale err. |" in report and "| F@1 % |" in report
    assert "| F@5mm (P/R) | F@10mm |" in report
    exact_row = next(line for line in report.splitlines() if line.startswith("| exact |"))
    assert f"| {100 * exact['scale_error']:.2f}% |" in exact_row
    # the confirmed-pose table: the methods with pose sources only (not the SfM baseline)
    trusted = report.split("## Confirmed poses and the published mesh", 1)[1].split("\n## ", 1)[0]
    assert f"| exact | 44% | 1.00 | {exact['fscore_published']:.3f} |" in trusted
    assert "| pycolmap |" not in trusted and "| broken |" not in trusted
    assert (out / "rotation_errors.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "[1/3] cap0" in printed and "[3/3] not_a_capture" in printed


def test_run_eval_rejects_unknown_baseline(tmp_path):
    with pytest.raises(ValueError, match="baseline must be one of"):
        run_eval([], tmp_path, backends=[], baseline="orb-slam")


def test_camera_poses_align_views_only_for_tf_methods(tmp_path, fake_pipeline):
    """Relative rotations measure the images: a plain method must not get the capture's camera
    poses for alignment; ``<backend>+tf`` (robot with TF) must; ``<backend>+images`` must not use
    the depth for alignment either."""
    mesh_path = tmp_path / "box.ply"
    trimesh.creation.box(extents=[0.1, 0.1, 0.1]).export(mesh_path)
    _write_capture(tmp_path / "cap", 3, 0, mesh_path)
    metrics = run_eval([tmp_path / "cap"], tmp_path / "out", backends=["exact", "exact+tf", "exact+images"],
                       baseline=None, command="test")
    assert set(metrics) == {"exact", "exact+tf", "exact+images"}
    assert fake_pipeline.calls == [("exact", {"align_with_camera_motion": False}),
                                   ("exact", {"align_with_camera_motion": True}),
                                   ("exact", {"align_with_camera_motion": False, "align_with_depth": False,
                                              "depth_networks": False, "measured_surface": False})]


def test_an_unknown_method_suffix_is_named():
    from sparp_ros.evaluation.run import method_options
    assert method_options("model+images") == ("model", {"align_with_camera_motion": False,
                                                        "align_with_depth": False,
                                                        "depth_networks": False,
                                                        "measured_surface": False})
    with pytest.raises(ValueError, match=r"model\+depth.*\+tf, \+images"):
        method_options("model+depth")


def test_run_eval_with_the_real_oracle_pipeline(objects_dir, tmp_path):
    """The real pipeline's object frame vs the renderer's mesh frame: ground-truth NOCS must score
    near zero on every metric, which checks the frame bookkeeping of the whole evaluation."""
    from sparp_ros.render import render_capture
    cap_dir = tmp_path / "mario"
    render_capture(objects_dir / "Nintendo_Mario_Action_Figure.glb", cap_dir, views=3, seed=3)
    metrics = run_eval([cap_dir], tmp_path / "out", backends=["oracle"], baseline=None,
                       command="test")
    oracle = metrics["oracle"]
    assert set(metrics) == {"oracle"} and oracle["failures"] == 0
    assert oracle["median_rotation_error_deg"] < 0.5
    assert oracle["translation_error_m"] < 0.005
    assert oracle["chamfer"] < 0.03 and oracle["fscore"] > 0.9
    assert oracle["scale_error"] < 0.02                 # depth (Umeyama) vs the true diagonal
    assert oracle["fscore@0.01"] <= oracle["fscore@0.02"] <= oracle["fscore"]
    # the overview picture (frames with mask, posed outline and axes; NOCS beside), linked
    picture = tmp_path / "out" / "overviews" / "mario_oracle.png"
    image = cv2.imread(str(picture))
    assert image is not None and image.shape[0] > 3 * 200 and image.shape[1] > 400
    assert "[overview](overviews/mario_oracle.png)" in (tmp_path / "out" / "report.md").read_text()
    run_eval([cap_dir], tmp_path / "quiet", backends=["oracle"], baseline=None, overviews=False)
    assert not (tmp_path / "quiet" / "overviews").exists()


def test_model_options_reach_only_the_model_backend(tmp_path, fake_pipeline):
    """``sparp-ros eval --weights RUN/final --model-domain nocs_ref``: the options go to the model
    backend (trained weights can be evaluated like the shipped ones), not to the others."""
    from sparp_ros.cli import main
    mesh_path = tmp_path / "box.ply"
    trimesh.creation.box(extents=[0.1, 0.1, 0.1]).export(mesh_path)
    _write_capture(tmp_path / "cap", 3, 0, mesh_path)
    assert main(["eval", str(tmp_path / "cap"), "--out", str(tmp_path / "out"), "--backend", "model",
                 "--backend", "oracle", "--baseline", "none", "--weights", "/w", "--model-domain",
                 "nocs_ref", "--inference-steps", "2"]) == 0
    assert fake_pipeline.calls == [
        ("model", {"align_with_camera_motion": False, "weights": "/w", "model_domain": "nocs_ref",
                   "inference_steps": 2}),
        ("oracle", {"align_with_camera_motion": False})]


def test_the_measurement_limit_is_the_captures_depth_at_the_true_poses(objects_dir, tmp_path):
    """``--backend limit``: exact poses, a measured-only surface on the true one; its row is
    what the sensor allows, so every method's mesh is compared with it."""
    from sparp_ros.render import render_capture
    cap_dir = tmp_path / "bull"
    render_capture(objects_dir / "Schleich_Hereford_Bull.glb", cap_dir, views=4, seed=5)
    metrics = run_eval([cap_dir], tmp_path / "out", backends=["limit"], baseline=None, command="test")
    limit = metrics["limit"]
    assert limit["failures"] == 0 and limit["median_rotation_error_deg"] < 1e-3
    assert limit["fscore"] > 0.95 and limit["precision@5mm"] > 0.98
    assert limit["measured_fraction"] == 1.0 and limit["precision@5mm_inferred"] is None
