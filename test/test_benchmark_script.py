"""The benchmark script behind `make bench`. Smoke test (slow: run by benchmarks/run.sh, not by
`make test`): on one object it renders the captures (stereo depth noise on, the default), runs every
kind of method in its own process (the measurement limit included), sweeps two perturbations and
writes a report with its plots — into a temporary folder, never over benchmarks/RESULTS.md. Fast:
the report says which run each method's results come from, and whether their captures' depth
differs; clean and noisy captures have their own cache folders."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_benchmark_script_on_one_object(objects_dir, tmp_path):
    out, results = tmp_path / "out", tmp_path / "report" / "RESULTS.md"
    cmd = [sys.executable, str(REPO / "benchmarks" / "benchmark.py"), "all", "--objects", "1",
           "--views", "1", "2", "--methods", "limit", "oracle", "model", "pycolmap",
           "--sweep-objects", "1", "--sweep-kinds", "focal", "occluder",
           "--sweep-backends", "oracle", "--out", str(out), "--results", str(results)]
    env = dict(os.environ, SPARP_SHARED=str(objects_dir.parents[1]))
    subprocess.run(cmd, check=True, cwd=REPO, env=env, timeout=880)

    text = results.read_text()
    for png in ("errors_vs_views.png", "stage_times.png", "sweep.png"):
        assert (results.parent / png).stat().st_size > 10_000
        assert f"]({png})" in text
    assert "### 1 view" in text and "### 2 views" in text and "## Robustness sweep" in text
    one_view = text.split("### 1 view")[1].split("###")[0]
    assert "| pycolmap | n/a |" in one_view                      # SfM cannot run on one view
    assert not (out / "eval" / "v1" / "pycolmap").exists()
    oracle1 = json.loads((out / "eval" / "v1" / "oracle" / "metrics.json").read_text())["oracle"]
    assert oracle1["median_rotation_error_deg"] is None          # no pairs with one view
    assert oracle1["fscore"] > 0.5 and oracle1["scale_error"] < 0.10
    # the scale is the fused surface's size: one view measures part of the object, so even the true
    # poses (the measurement limit) miss its size by ~6 %; the oracle's is as good as that
    limit1 = json.loads((out / "eval" / "v1" / "limit" / "metrics.json").read_text())["limit"]
    assert abs(oracle1["scale_error"] - limit1["scale_error"]) < 0.02
    oracle2 = json.loads((out / "eval" / "v2" / "oracle" / "metrics.json").read_text())["oracle"]
    assert oracle2["median_rotation_error_deg"] < 1.0
    # the measurement limit: true poses, its fused mesh measured throughout
    limit2 = json.loads((out / "eval" / "v2" / "limit" / "metrics.json").read_text())["limit"]
    assert limit2["median_rotation_error_deg"] < 0.01 and limit2["failures"] == 0
    assert limit2["fscore@5mm"] > 0.3 and limit2["measured_fraction"] > 0.9
    two_views = text.split("### 2 views")[1].split("###")[0]
    assert "| F@5mm (P / R) | F@10mm | measured |" in two_views and "| limit | 0.00 |" in two_views
    for method in ("limit", "oracle", "model", "pycolmap"):
        res = json.loads((out / "eval" / "v2" / method / "resources.json").read_text())
        assert res["peak_rss_mib"] >= res["rss_before_mib"] > 0
        assert res["depth_noise"] == "stereo" and res["depth_noise_params"]["enabled"]
    # the depth noise is on by default, recorded, stated, and its captures cached apart
    assert json.loads((out / "run.json").read_text())["depth_noise"] == "stereo"
    assert "**Depth: stereo sensor noise on**" in text
    assert not (out / "captures").exists()
    # the n-view capture is the first n views of the object's largest capture
    caps = out / "captures_stereo"
    c1 = json.loads(next((caps / "v1").glob("*/cameras.json")).read_text())["frames"]
    c2 = json.loads(next((caps / "v2").glob("*/cameras.json")).read_text())["frames"]
    assert len(c1) == 1 and len(c2) == 2 and c1[0]["T_world_camera"] == c2[0]["T_world_camera"]
    assert json.loads(next((caps / "v1").glob("*/gt.json")).read_text())["depth_noise"]
    sweep = json.loads((out / "sweep" / "conditions.json").read_text())
    assert [c[0] for c in sweep["conditions"]] == ["clean", "focal", "focal", "occluder", "occluder"]
    assert abs(sweep["stats"]["occluder_0.25"]["mean_hidden_fraction"] - 0.25) < 0.02
    focal = json.loads((out / "sweep" / "eval" / "oracle" / "focal_1.05" / "metrics.json")
                       .read_text())["oracle"]
    clean = json.loads((out / "sweep" / "eval" / "oracle" / "clean" / "metrics.json")
                       .read_text())["oracle"]
    assert focal["scale_error"] > clean["scale_error"]           # a wrong focal shows in the scale


def _bench():
    import importlib.util
    spec = importlib.util.spec_from_file_location("benchmark_script", REPO / "benchmarks" / "benchmark.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_the_report_names_the_run_each_method_comes_from():
    """An eval step rerun for some methods keeps the other methods' earlier results: the report
    groups the methods by the command that produced them, in report order."""
    bench = _bench()
    full, later = "benchmark.py all", "benchmark.py eval --methods model model+images"
    data = {"eval": {n: {"pycolmap": {"per_capture": {"command": full}},
                         "model+images": {"per_capture": {"command": later}},
                         "oracle": {"per_capture": {"command": full}},
                         "model": {"per_capture": {"command": later}}} for n in (2, 4)}}
    assert bench.method_commands(data) == {full: ["oracle", "pycolmap"], later: ["model", "model+images"]}


def test_clean_and_noisy_captures_never_mix(tmp_path):
    """Each depth kind has its own capture cache; results on different kinds are told apart (the
    report warns), and results from before the noise model count as exact depth."""
    bench = _bench()
    mesh = Path("mug.glb")
    noisy, clean = (bench.capture_dir(tmp_path, 2, mesh, 0, kind) for kind in ("stereo", "none"))
    assert noisy != clean and noisy.parents[1] != clean.parents[1]
    assert bench.capture_dir(tmp_path, 2, mesh, 0) == noisy                  # stereo by default
    assert bench.noise_params("none") is None and bench.noise_params("stereo")["enabled"]
    data = {"eval": {2: {"model": {"resources": {"depth_noise": "stereo"}},
                         "limit": {"resources": {"depth_noise": "stereo"}},
                         "oracle": {"resources": {}}}}}
    assert bench.depth_kinds(data) == {"stereo": ["limit", "model"], "none": ["oracle"]}
    with pytest.raises(ValueError):
        bench.capture_root(tmp_path, "kinect")
