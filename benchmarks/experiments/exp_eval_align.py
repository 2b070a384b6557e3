import sys, json, time
from pathlib import Path
REPO = __import__("pathlib").Path(__file__).resolve().parents[2]; sys.path.insert(0, str(REPO))
from sparp_ros.capture import load_capture
from sparp_ros.pipeline import SparpPipeline, PipelineConfig
import os
# WEIGHTS=folder DOMAIN=nocs_ref evaluate another model than the shipped one
# VIEW_ANGLE_WEIGHT=w blends the view-angle network's elevation/roll with PnP's (0: PnP alone)
MODEL = {"weights": os.environ.get("WEIGHTS"), "model_domain": os.environ.get("DOMAIN", "nocs_self"),
         "view_angle_weight": float(os.environ.get("VIEW_ANGLE_WEIGHT", 1.0))}
from sparp_ros.evaluation.metrics import relative_rotation_errors, summarize_rotation
backend = sys.argv[1]; steps = int(sys.argv[2]) if len(sys.argv) > 2 else None
pipe = SparpPipeline(PipelineConfig(align_with_camera_motion=False, backend=backend, inference_steps=steps, mesh=False, **MODEL))
errs = []; t = {}
for cd in sorted((REPO / "benchmarks/out/eval25/captures").iterdir()):
    cap = load_capture(cd)
    try:
        r = pipe(cap.frames)
    except Exception as e:  # a failed reconstruction counts as 180° for every view pair
        print(cd.name, "failed:", e); n = len(cap.frames); errs += [180.0] * (n * (n - 1) // 2); continue
    for k, v in r.timings.items(): t[k] = t.get(k, 0) + v / 25
    errs += relative_rotation_errors([v.T_camera_object for v in r.views], cap.gt.T_camera_object)
print(backend, steps, json.dumps({k: round(v, 3) for k, v in summarize_rotation(errs).items()}), {k: round(v, 3) for k, v in t.items()})
