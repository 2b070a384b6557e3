"""Render fixed-seed captures of the shared objects and run `sparp-ros eval` on them.

    python benchmarks/eval_shared.py --objects 10 --views 4 --out benchmarks/out/eval
                                     [--depth-noise stereo] [--realism]

``--realism``: the captures look like photographs (``render/object_realism.py``, the data
engine's ``ObjectRealism``: wider intrinsics and elevations, size in frame, truncation, a support
plane with shadows, light types, backgrounds, camera effects, the other shared objects as
distractors), in their own ``*_real`` folders.

Prints the metrics and the per-stage timings; the command line is written into the report.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPARP_SHARED", REPO.parent / "shared")) / "data" / "objects"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--objects", type=int, default=10)
    p.add_argument("--views", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "eval"))
    p.add_argument("--backend", action="append")
    p.add_argument("--baseline", default="pycolmap")
    p.add_argument("--depth-noise", choices=["none", "stereo"], default="none",
                   help="stereo: captures with a stereo camera's depth (sparp_ros/render/"
                        "depth_noise.py), in their own *_noisy folders")
    p.add_argument("--realism", action="store_true",
                   help="photo-like captures (ObjectRealism defaults), in their own *_real folders")
    p.add_argument("--no-eval", action="store_true", help="render the captures only")
    args = p.parse_args()
    from sparp_ros.evaluation import run_eval
    from sparp_ros.render import render_capture
    from sparp_ros.render.depth_noise import STEREO_DEFAULT

    out = Path(args.out)
    everything = sorted(SHARED.glob("*.glb"))
    meshes = everything[: args.objects]
    noise = STEREO_DEFAULT if args.depth_noise == "stereo" else None
    suffix = "_noisy" if noise is not None else ""     # clean and noisy captures never mix
    realism = None
    if args.realism:
        from sparp_ros.render.object_realism import ObjectRealism
        realism, suffix = ObjectRealism(), suffix + "_real"
    caps = []
    for k, mesh in enumerate(meshes):
        cap_dir = out / "captures" / f"{mesh.stem}_v{args.views}_s{args.seed}{suffix}"
        if not (cap_dir / "cameras.json").exists():
            render_capture(mesh, cap_dir, views=args.views, seed=args.seed + k, depth_noise=noise,
                           realism=realism, distractors=everything if realism else ())
        caps.append(cap_dir)
    if args.no_eval:
        print(f"{len(caps)} captures in {out / 'captures'}")
        return 0
    metrics = run_eval(caps, out / "report", backends=args.backend or ["oracle"],
                       baseline=None if args.baseline == "none" else args.baseline)
    print(json.dumps(metrics, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
