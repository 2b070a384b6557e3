"""Experiment: which angles the per-view NOCS gets wrong — camera elevation, roll about the optical
axis, or azimuth of the own frame — on the 25 eval captures (4 views). Also the spread of the true
angles, to compare the model's error with predicting their mean.
With a view-angle network beside the weights (``view_angles/``), its own errors on the same views.
Usage: ``WEIGHTS=DIR python benchmarks/experiments/exp_decompose.py``."""
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from sparp_ros.capture import load_capture  # noqa: E402
from sparp_ros.geometry.pnp import solve_pnp_nocs  # noqa: E402
from sparp_ros.pipeline import PipelineConfig, SparpPipeline  # noqa: E402

caps = [load_capture(c) for c in sorted(Path("benchmarks/out/eval25/captures").iterdir())][:int(os.environ.get("N", 25))]
pipe = SparpPipeline(PipelineConfig(align_with_camera_motion=False, backend="model",
                                    weights=os.environ.get("WEIGHTS"), mesh=False))
gtp = SparpPipeline(PipelineConfig(align_with_camera_motion=False, backend="oracle_per_view",
                                   cell_size=pipe.cell_size))


def angles(T):
    R, t = T[:3, :3], T[:3, 3]
    c = -R.T @ t
    d = c / np.linalg.norm(c)
    up = R[:, 2]                                    # object z in the camera frame
    return np.degrees([np.arcsin(np.clip(d[2], -1, 1)), np.arctan2(d[1], d[0]), np.arctan2(up[0], -up[1])])


P, G, NET = [], [], []
net = pipe.view_angle_estimator          # the shipped view-angle network, if any
for cap in caps:
    cells = [pipe.prepare_view(i, f).cell for i, f in enumerate(cap.frames)]
    gcells = [gtp.prepare_view(i, f).cell for i, f in enumerate(cap.frames)]
    pr, g = pipe.backend.predict(cells), gtp.backend.predict(gcells)
    angles_net = net.predict(np.stack([c.image for c in cells]), np.stack([c.mask for c in cells])) \
        if net is not None else None
    for v, c in enumerate(cells):
        r = solve_pnp_nocs(pr[v].nocs, pr[v].mask, c.camera)
        rg = solve_pnp_nocs(g[v].nocs, g[v].mask, c.camera)
        if r.ok and rg.ok:
            P.append(angles(r.T_camera_unit)); G.append(angles(rg.T_camera_unit))
            if angles_net is not None:
                NET.append(angles_net[v])
P, G = np.array(P), np.array(G)
d = (P - G + 180) % 360 - 180
for i, name in enumerate(("elevation", "azimuth", "roll")):
    print(f"{name:9s} |err| median {np.median(np.abs(d[:, i])):5.1f}  mean err (bias) {d[:, i].mean():+5.1f}  "
          f"true: mean {G[:, i].mean():+6.1f} sd {G[:, i].std():5.1f}  pred sd {P[:, i].std():5.1f}  "
          f"corr {np.corrcoef(P[:, i], G[:, i])[0, 1]:.2f}  |true-mean| median {np.median(np.abs(G[:, i] - G[:, i].mean())):5.1f}")
if NET:
    NET = np.array(NET)
    for i, j, name in ((0, 0, "elevation"), (1, 2, "roll")):
        e = np.abs((NET[:, i] - G[:, j] + 180) % 360 - 180)
        print(f"view-angle network {name}: |err| median {np.median(e):5.1f}  corr {np.corrcoef(NET[:, i], G[:, j])[0, 1]:.2f}")
