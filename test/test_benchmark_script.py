"""The benchmark script behind `make bench`. Smoke test (slow: run by benchmarks/run.sh, not by
`make test`): on one object it renders the captures, runs every kind of method in its own process,
sweeps two perturbations and writes a report with its plots — into a temporary folder, never over
benchmarks/RESULTS.md. Fast: the report says which run each method's results come from."""
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
           "--views", "1", "2", "--methods", "oracle", "model", "pycolmap",
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
    assert oracle1["fscore"] > 0.5 and oracle1["scale_error"] < 0.05
    oracle2 = json.loads((out / "eval" / "v2" / "oracle" / "metrics.json").read_text())["oracle"]
    assert oracle2["median_rotation_error_deg"] < 1.0
    for method in ("oracle", "model", "pycolmap"):
        res = json.loads((out / "eval" / "v2" / method / "resources.json").read_text())
        assert res["peak_rss_mib"] >= res["rss_before_mib"] > 0
    # the n-view capture is the first n views of the object's largest capture
    c1 = json.loads(next((out / "captures" / "v1").glob("*/cameras.json")).read_text())["frames"]
    c2 = json.loads(next((out / "captures" / "v2").glob("*/cameras.json")).read_text())["frames"]
    assert len(c1) == 1 and len(c2) == 2 and c1[0]["T_world_camera"] == c2[0]["T_world_camera"]
    sweep = json.loads((out / "sweep" / "conditions.json").read_text())
    assert [c[0] for c in sweep["conditions"]] == ["clean", "focal", "focal", "occluder", "occluder"]
    assert abs(sweep["stats"]["occluder_0.25"]["mean_hidden_fraction"] - 0.25) < 0.02
    focal = json.loads((out / "sweep" / "eval" / "oracle" / "focal_1.05" / "metrics.json")
                       .read_text())["oracle"]
    clean = json.loads((out / "sweep" / "eval" / "oracle" / "clean" / "metrics.json")
                       .read_text())["oracle"]
    assert focal["scale_error"] > clean["scale_error"]           # a wrong focal shows in the scale


def test_the_report_names_the_run_each_method_comes_from():
    """An eval step rerun for some methods keeps the other methods' earlier results: the report
    groups the methods by the command that produced them, in report order."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("benchmark_script", REPO / "benchmarks" / "benchmark.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    full, later = "benchmark.py all", "benchmark.py eval --methods model model+images"
    data = {"eval": {n: {"pycolmap": {"per_capture": {"command": full}},
                         "model+images": {"per_capture": {"command": later}},
                         "oracle": {"per_capture": {"command": full}},
                         "model": {"per_capture": {"command": later}}} for n in (2, 4)}}
    assert bench.method_commands(data) == {full: ["oracle", "pycolmap"], later: ["model", "model+images"]}
