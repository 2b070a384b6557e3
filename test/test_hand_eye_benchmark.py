"""benchmarks/hand_eye.py runs end to end on one rendered capture and writes its numbers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_hand_eye_benchmark_on_one_capture(objects_dir: Path, tmp_path: Path) -> None:
    from sparp_ros.render import render_capture
    render_capture(objects_dir / "Schleich_Hereford_Bull.glb", tmp_path / "captures" / "bull",
                   views=4, seed=9, width=320, height=240)
    out = tmp_path / "hand_eye.json"
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "hand_eye.py"),
                          str(tmp_path / "captures"), "--angle-deg", "3", "--shift-mm", "10",
                          "--json", str(out)],
                         cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "correction applied on" in run.stdout
    result = json.loads(out.read_text())
    (row,) = result["captures"]
    # exact TF: zero up to rounding; an angle from arccos of the trace resolves about 1e-6°
    # (one unit of rounding in the trace is 8.5e-7°), so the bound is 1e-4°
    assert row["exact"]["rotation_deg"] < 1e-4 and row["as_told"]["rotation_deg"] > 1.0
    assert row["corrected"]["applied"], row["corrected"]["message"]
    assert row["corrected"]["rotation_deg"] < row["as_told"]["rotation_deg"]
    assert set(result["summary"]) == {"exact", "as_told", "corrected"}
