"""Experiment: the diffusion NOCS model per view on eval captures (any set): each view's pose from
PnP on the predicted NOCS against the ground-truth per-view NOCS through the same PnP (so only
the network's error counts), median / Acc@15 / Acc@30 over all views. Weights folders as for
``sparp-ros eval --weights`` (``scripts/weights_with_denoiser.py`` makes one from a snapshot).

    CAPTURES="benchmarks/out/eval25r/captures" python benchmarks/experiments/exp_perview_captures.py [WEIGHTS ...]
"""
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from sparp_ros.capture import load_capture  # noqa: E402
from sparp_ros.conventions import rotation_angle_deg  # noqa: E402
from sparp_ros.geometry.pnp import solve_pnp_nocs  # noqa: E402
from sparp_ros.pipeline import PipelineConfig, SparpPipeline  # noqa: E402

roots = os.environ.get("CAPTURES", "benchmarks/out/eval25r/captures").split()
caps = [load_capture(c) for r in roots for c in sorted(Path(r).iterdir()) if (c / "cameras.json").exists()]
for w in (sys.argv[1:] or [None]):
    pipe = SparpPipeline(PipelineConfig(align_with_camera_motion=False, backend="model", weights=w, mesh=False))
    gtp = SparpPipeline(PipelineConfig(align_with_camera_motion=False, backend="oracle_per_view",
                                       cell_size=pipe.cell_size))
    errs = []
    for cap in caps:
        cells = [pipe.prepare_view(i, f) for i, f in enumerate(cap.frames)]
        preds = pipe.predict_nocs([v.cell for v in cells])[0]
        gcells = [gtp.prepare_view(i, f) for i, f in enumerate(cap.frames)]
        gpreds = gtp.predict_nocs([v.cell for v in gcells])[0]
        for (c, _), p, g in zip(cells, preds, gpreds):
            r = solve_pnp_nocs(p.nocs, p.mask, c.camera)
            rg = solve_pnp_nocs(g.nocs, g.mask, c.camera)
            errs.append(rotation_angle_deg(r.T_camera_unit[:3, :3].T @ rg.T_camera_unit[:3, :3])
                        if r.ok and rg.ok else 180.0)
    e = np.array(errs)
    print(f"{w or 'shipped'}: per-view median {np.median(e):.1f}° acc15 {np.mean(e < 15):.2f} "
          f"acc30 {np.mean(e < 30):.2f} ({len(e)} views of {len(caps)} captures, {' '.join(roots)})")
