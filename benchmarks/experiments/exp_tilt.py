import sys, json
from pathlib import Path
import numpy as np
REPO = __import__("pathlib").Path(__file__).resolve().parents[2]; sys.path.insert(0, str(REPO))
from sparp_ros.capture import load_capture
from sparp_ros.pipeline import SparpPipeline, PipelineConfig
backend = sys.argv[1]
for tf in (False, True):
    pipe = SparpPipeline(PipelineConfig(backend=backend, mesh=False, align_with_camera_motion=tf))
    errs = []
    for cd in sorted((REPO / "benchmarks/out/eval25/captures").iterdir()):
        cap = load_capture(cd)
        r = pipe(cap.frames)
        for v, Tg in zip(r.views, cap.gt.T_camera_object):
            if v.ok:
                c = np.clip(v.T_camera_object[:3, 2] @ np.asarray(Tg)[:3, 2], -1, 1)
                errs.append(np.degrees(np.arccos(c)))
            else:
                errs.append(180.0)
    e = np.array(errs)
    print(backend, "tf" if tf else "images", f"up-axis error median {np.median(e):.1f} mean {e.mean():.1f} <10: {np.mean(e<10):.2f} <20: {np.mean(e<20):.2f}")
