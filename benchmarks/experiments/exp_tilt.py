"""Object orientation in the world from the images alone, with camera poses (TF), and with TF +
``assume_upright``: up-axis error of every posed view's object frame. (The heading has no ground
truth to compare with here: per-view frames point x at the first camera, the captures' object frame
is the mesh's; relative rotations, which do not depend on it, are in exp_eval_align.py.)"""
import sys
from pathlib import Path
import numpy as np
REPO = Path(__file__).resolve().parents[2]; sys.path.insert(0, str(REPO))
from sparp_ros.capture import load_capture
from sparp_ros.pipeline import SparpPipeline, PipelineConfig
backend = sys.argv[1]
caps = [load_capture(cd) for cd in sorted((REPO / "benchmarks/out/eval25/captures").iterdir())]
for name, tf, upright in (("images", False, False), ("tf", True, False), ("tf+upright", True, True)):
    pipe = SparpPipeline(PipelineConfig(backend=backend, mesh=False, align_with_camera_motion=tf,
                                        assume_upright=upright))
    up = []
    for cap in caps:
        r = pipe(cap.frames)
        for v, Tg in zip(r.views, cap.gt.T_camera_object):
            Tg = np.asarray(Tg)
            if v.ok:
                up.append(np.degrees(np.arccos(np.clip(v.T_camera_object[:3, 2] @ Tg[:3, 2], -1, 1))))
            else:
                up.append(180.0)
    u = np.array(up)
    print(f"{backend} {name:11s} up-axis error median {np.median(u):5.1f}° mean {u.mean():5.1f}° "
          f"<10°: {np.mean(u < 10):.2f} <20°: {np.mean(u < 20):.2f}", flush=True)
