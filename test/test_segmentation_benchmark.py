"""benchmarks/segmentation_iou.py runs end to end on one scene and writes its summary."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_segmentation_benchmark_on_one_scene(objects_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "seg.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "segmentation_iou.py"), "--scenes", "1",
           "--seed", "4", "--objects-dir", str(objects_dir), "--json", str(out)]
    run = subprocess.run(cmd, cwd=REPO, env=dict(os.environ), capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert "median object IoU" in run.stdout and "identity consistent" in run.stdout
    result = json.loads(out.read_text())
    summary = result["summary"]
    assert summary["scenes"] == 1 and summary["objects"] >= 2
    assert summary["median_object_iou"] >= 0.9
    assert len(result["objects"]) == summary["objects"]
    bad = subprocess.run(cmd[:2] + ["--objects-dir", str(objects_dir), "--scenes", "1", "--param", "no_such=1"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--param" in bad.stderr
