"""Pose refinement (pipeline stage "refine") before/after on the 25 pre-rendered captures.

    python benchmarks/experiments/exp_refine.py model
    python benchmarks/experiments/exp_refine.py oracle --perturb-deg 3 --perturb-cm 1

Runs the pipeline with ``refine`` (image-only alignment, as the eval:
``align_with_camera_motion=False``; no mesh) and prints the relative rotation metrics over all
view pairs, the per-view errors against the truth (rotation °, translation as % of the object's
diagonal, in the canonical object frame), how many views the refinement changed, and the time per
capture (the pipeline is also run without ``refine``, for its time). "before" is the pose the
refine stage was given, i.e. the pipeline's pose without refinement; ``--perturb-*`` perturbs
every pose first (random axis and direction, fixed seed), and "before" is then the perturbed pose.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from sparp_ros.capture import load_capture  # noqa: E402
from sparp_ros.conventions import rotation_angle_deg  # noqa: E402
from sparp_ros.evaluation.metrics import relative_rotation_errors, summarize_rotation  # noqa: E402
from sparp_ros.pipeline import PipelineConfig, SparpPipeline, _metric  # noqa: E402

CAPTURES = REPO / "benchmarks" / "out" / "eval25" / "captures"


class _Perturbed(SparpPipeline):
    """Perturbs every pose just before the refine stage (when asked) and remembers the poses
    the stage was given: "before" is exactly the refine stage's input."""

    deg, cm = 0.0, 0.0

    def refine(self, preds, pnp, R_ref_view, scale, frames):
        rng = np.random.default_rng(len(self.seen))
        out, before = [], []
        for r in pnp:
            if r.ok:
                axis, d = rng.normal(size=3), rng.normal(size=3)
                T = r.T_camera_unit.copy()
                T[:3, :3] = Rotation.from_rotvec(
                    np.radians(self.deg) * axis / np.linalg.norm(axis)).as_matrix() @ T[:3, :3]
                T[:3, 3] += self.cm / 100 / scale * d / np.linalg.norm(d)
                r = replace(r, T_camera_unit=T)
            out.append(r)
            before.append(_metric(r.T_camera_unit, scale) if r.ok else None)
        self.seen.append(before)
        return super().refine(preds, out, R_ref_view, scale, frames)


def _per_view(T_est, capture):
    frame = capture.gt.canonical_frame()
    rows = []
    for T, g in zip(T_est, capture.gt.T_camera_object):
        if T is None:
            continue
        G = g @ frame.T_mesh_object
        rows.append((rotation_angle_deg(T[:3, :3] @ G[:3, :3].T),
                     100 * float(np.linalg.norm(T[:3, 3] - G[:3, 3])) / frame.diagonal))
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("backend", choices=["oracle", "oracle_per_view", "model"])
    p.add_argument("--perturb-deg", type=float, default=0.0)
    p.add_argument("--perturb-cm", type=float, default=0.0)
    p.add_argument("--max-rotation", type=float, default=None, help="refine_max_rotation_deg")
    p.add_argument("--max-translation", type=float, default=None, help="refine_max_translation")
    p.add_argument("--gate", type=float, default=None, help="refine_max_correspondence")
    p.add_argument("--joint", type=int, default=None, help="refine_joint_passes")
    p.add_argument("--limit", type=int, default=None, help="first N captures only")
    args = p.parse_args()
    refine_cfg = {k: v for k, v in (("refine_max_rotation_deg", args.max_rotation),
                                    ("refine_max_translation", args.max_translation),
                                    ("refine_max_correspondence", args.gate),
                                    ("refine_joint_passes", args.joint)) if v is not None}
    base = dict(backend=args.backend, mesh=False, align_with_camera_motion=False)
    plain = SparpPipeline(PipelineConfig(**base))
    refined = _Perturbed(PipelineConfig(**base, refine=True, **refine_cfg), backend=plain.backend)
    refined.deg, refined.cm, refined.seen = args.perturb_deg, args.perturb_cm, []
    rel = {"before": [], "after": []}
    views = {"before": [], "after": []}
    applied = total = 0
    t_plain = t_refined = t_stage = 0.0
    dirs = sorted(d for d in CAPTURES.iterdir() if (d / "gt.json").exists())[: args.limit]
    for d in dirs:
        cap = load_capture(d)
        t0 = time.perf_counter()
        plain(cap.frames)                    # timing only
        t1 = time.perf_counter()
        r1 = refined(cap.frames)
        t2 = time.perf_counter()
        t_plain, t_refined, t_stage = t_plain + t1 - t0, t_refined + t2 - t1, \
            t_stage + r1.timings["refine"]
        before = refined.seen[-1]
        after = [v.T_camera_object for v in r1.views]
        rel["before"] += relative_rotation_errors(before, cap.gt.T_camera_object)
        rel["after"] += relative_rotation_errors(after, cap.gt.T_camera_object)
        views["before"] += _per_view(before, cap)
        views["after"] += _per_view(after, cap)
        applied += sum(bool(x["applied"]) for x in r1.extra["refinement"])
        total += len(after)
    n = len(dirs)
    print(f"backend={args.backend} captures={n} perturb={args.perturb_deg}°/{args.perturb_cm} cm "
          f"refine config={refine_cfg or 'defaults'}")
    for k in ("before", "after"):
        s = {m: round(v, 3) for m, v in summarize_rotation(rel[k]).items()}
        v = np.asarray(views[k])
        print(f"  {k:6s} relative {json.dumps(s)}  per-view rotation median "
              f"{np.median(v[:, 0]):.3f}° mean {v[:, 0].mean():.3f}°  translation median "
              f"{np.median(v[:, 1]):.2f} % of diag "
              f"mean {v[:, 1].mean():.2f} %")
    print(f"  refinement applied to {applied}/{total} views; time per capture: pipeline "
          f"{t_plain / n:.2f} s without refine, {t_refined / n:.2f} s with (refine stage "
          f"{t_stage / n:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
