import sys, os, numpy as np
sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parents[2]))
from pathlib import Path
from sparp_ros.capture import load_capture
from sparp_ros.pipeline import SparpPipeline, PipelineConfig
from sparp_ros.conventions import rotation_angle_deg
from sparp_ros.geometry.pnp import solve_pnp_nocs
w = sys.argv[1] if len(sys.argv) > 1 else None
caps = [load_capture(c) for c in sorted(Path("benchmarks/out/eval25/captures").iterdir())][:int(os.environ.get("N", 25))]
pipe = SparpPipeline(PipelineConfig(align_with_camera_motion=False, backend="model", weights=w, mesh=False))
gtp = SparpPipeline(PipelineConfig(align_with_camera_motion=False, backend="oracle_per_view", cell_size=pipe.cell_size))
errs = []; fg = []
for cap in caps:
    cells = [pipe.prepare_view(i, f) for i, f in enumerate(cap.frames)]
    preds = pipe.predict_nocs([v.cell for v in cells])[0]
    gcells = [gtp.prepare_view(i, f) for i, f in enumerate(cap.frames)]
    gpreds = gtp.predict_nocs([v.cell for v in gcells])[0]
    for (c, _), p, g in zip(cells, preds, gpreds):
        fg.append((p.mask.sum(), g.mask.sum()))
        r = solve_pnp_nocs(p.nocs, p.mask, c.camera); rg = solve_pnp_nocs(g.nocs, g.mask, c.camera)
        errs.append(rotation_angle_deg(r.T_camera_unit[:3, :3].T @ rg.T_camera_unit[:3, :3]) if r.ok and rg.ok else 180.0)
        if not r.ok: print("fail:", r.message, "mask px", p.mask.sum(), "gt px", g.mask.sum())
e = np.array(errs)
print(w, "cell", pipe.cell_size, f"per-view median {np.median(e):.1f} acc15 {np.mean(e<15):.2f} acc30 {np.mean(e<30):.2f} n {len(e)}")
