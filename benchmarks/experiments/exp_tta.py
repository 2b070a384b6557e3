"""Experiment: test-time averaging of the per-view NOCS (K noise samples, horizontal flip) vs one sample.

Per-view rotation error of PnP on the predicted own-frame NOCS against the ground truth, on the 25
eval captures (4 views). Usage: ``python benchmarks/experiments/exp_tta.py [K]``.
"""
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from sparp_ros.capture import load_capture  # noqa: E402
from sparp_ros.conventions import rotation_angle_deg  # noqa: E402
from sparp_ros.geometry.pnp import solve_pnp_nocs  # noqa: E402
from sparp_ros.model.backend import CellView  # noqa: E402
from sparp_ros.pipeline import PipelineConfig, SparpPipeline  # noqa: E402

K = int(sys.argv[1]) if len(sys.argv) > 1 else 8
caps = [load_capture(c) for c in sorted(Path("benchmarks/out/eval25/captures").iterdir())][:int(os.environ.get("N", 25))]
pipe = SparpPipeline(PipelineConfig(align_with_camera_motion=False, backend="model",
                                    weights=os.environ.get("WEIGHTS"), mesh=False))
gtp = SparpPipeline(PipelineConfig(align_with_camera_motion=False, backend="oracle_per_view",
                                   cell_size=pipe.cell_size))
model = pipe.backend


def flip_view(v: CellView) -> CellView:
    return CellView(image=v.image[:, ::-1].copy(), mask=v.mask[:, ::-1].copy(), camera=v.camera)


def unflip(nocs: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = nocs[:, ::-1].copy()
    n[..., 1] = np.where(mask[:, ::-1], 1.0 - n[..., 1], 0.0)
    return n, mask[:, ::-1].copy()


def average(preds: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    m = np.mean([p[1] for p in preds], axis=0) >= 0.5
    n = np.mean([p[0] for p in preds], axis=0)
    n[~m] = 0
    return n.astype(np.float32), m


def err(nocs, mask, cam, rg):
    r = solve_pnp_nocs(nocs, mask, cam)
    return rotation_angle_deg(r.T_camera_unit[:3, :3].T @ rg) if r.ok else 180.0


res = {k: [] for k in ("base", f"mean{K}", f"median{K}", "flip", f"flip+mean{K}")}
for cap in caps:
    cells = [pipe.prepare_view(i, f).cell for i, f in enumerate(cap.frames)]
    gcells = [gtp.prepare_view(i, f).cell for i, f in enumerate(cap.frames)]
    g = gtp.backend.predict(gcells)
    hyps = model.predict_hypotheses(cells, num_samples=K)
    fl = model.predict_hypotheses([flip_view(c) for c in cells], num_samples=K)
    for v, c in enumerate(cells):
        rg = solve_pnp_nocs(g[v].nocs, g[v].mask, c.camera).T_camera_unit[:3, :3]
        samples = [(h[v].nocs, h[v].mask) for h in hyps]
        fsamples = [unflip(h[v].nocs, h[v].mask) for h in fl]
        res["base"].append(err(*samples[0], c.camera, rg))
        res[f"mean{K}"].append(err(*average(samples), c.camera, rg))
        med = np.median([s[0] for s in samples], axis=0).astype(np.float32)
        m = average(samples)[1]
        med[~m] = 0
        res[f"median{K}"].append(err(med, m, c.camera, rg))
        res["flip"].append(err(*average([samples[0], fsamples[0]]), c.camera, rg))
        res[f"flip+mean{K}"].append(err(*average(samples + fsamples), c.camera, rg))
for k, e in res.items():
    e = np.array(e)
    print(f"{k:14s} per-view median {np.median(e):5.1f}  mean {e.mean():5.1f}  acc15 {np.mean(e < 15):.2f} "
          f"acc30 {np.mean(e < 30):.2f}  n {len(e)}")
