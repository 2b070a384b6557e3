"""Per-view rotation error of the model's own-frame NOCS (vs oracle_per_view PnP) on eval25 captures."""
import sys, json, time
from pathlib import Path
import numpy as np
REPO = __import__("pathlib").Path(__file__).resolve().parents[2]; sys.path.insert(0, str(REPO))
from sparp_ros.capture import load_capture
from sparp_ros.pipeline import SparpPipeline, PipelineConfig
import os
# WEIGHTS=folder DOMAIN=nocs_ref evaluate another model than the shipped one
MODEL = {"weights": os.environ.get("WEIGHTS"), "model_domain": os.environ.get("DOMAIN", "nocs_self")}
from sparp_ros.conventions import rotation_angle_deg
steps = [int(s) for s in sys.argv[1].split(",")]
K = int(sys.argv[2]) if len(sys.argv) > 2 else 1
gtp = SparpPipeline(PipelineConfig(align_with_camera_motion=False, backend="oracle_per_view"))
caps = [load_capture(c) for c in sorted((REPO / "benchmarks/out/eval25/captures").iterdir())]
gt = []
for cap in caps:
    cells = [gtp.prepare_view(i, f) for i, f in enumerate(cap.frames)]
    _, pnp, _ = gtp.select_poses(cells, gtp.predict_nocs([v.cell for v in cells]))
    gt.append(pnp)
for s in steps:
    pipe = SparpPipeline(PipelineConfig(align_with_camera_motion=False, backend="model", inference_steps=s, num_hypotheses=K, **MODEL))
    errs = []; t0 = time.time()
    for cap, g in zip(caps, gt):
        cells = [pipe.prepare_view(i, f) for i, f in enumerate(cap.frames)]
        _, pnp, _ = pipe.select_poses(cells, pipe.predict_nocs([v.cell for v in cells]))
        for r, rg in zip(pnp, g):
            errs.append(rotation_angle_deg(r.T_camera_unit[:3, :3].T @ rg.T_camera_unit[:3, :3]) if r.ok and rg.ok else 180.0)
    e = np.array(errs)
    print(f"steps {s} K {K}: per-view median {np.median(e):.1f} acc15 {np.mean(e<15):.2f} acc30 {np.mean(e<30):.2f}  ({time.time()-t0:.0f}s)", flush=True)
