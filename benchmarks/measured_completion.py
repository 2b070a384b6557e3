"""The RGB-D stage with and without the model's completion, on the captures of a folder.

    python benchmarks/measured_completion.py benchmarks/out/eval25n/captures

For every capture it runs ``model`` (RGB-D, registration) and ``model+tf`` (RGB-D, poses from TF)
with ``complete_surface`` off and on, and prints the mean posed-mesh F-scores (5 % and 1 % of the
diagonal, 5 mm with precision and recall), the inferred part's precision at 5 mm, the median
relative rotation and the median scale error of each. Why: whether adding the model's shape where
nothing was measured helps a planner is a measurement, not a belief (README, "Measured surfaces").
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def main(folder: str) -> int:
    from sparp_ros.capture import load_capture
    from sparp_ros.evaluation.metrics import mesh_metrics, relative_rotation_errors, scale_error
    from sparp_ros.evaluation.run import expand_capture_dirs, method_options
    from sparp_ros.pipeline import reconstruct_capture

    rows: dict[tuple[str, bool], list[dict]] = {}
    for d in expand_capture_dirs([Path(folder)]):
        capture = load_capture(d)
        for method in ("model", "model+tf"):
            name, options = method_options(method)
            for complete in (False, True):
                recon = reconstruct_capture(capture, backend=name, complete_surface=complete, **options)
                m = mesh_metrics(recon, capture) or {}
                rotation = relative_rotation_errors([v.T_camera_object for v in recon.views],
                                                    capture.gt.T_camera_object)
                rows.setdefault((method, complete), []).append(
                    {**m, "rotation": float(np.median(rotation)),
                     "scale": (scale_error(recon, capture) or {}).get("scale_error")})
    for (method, complete), values in rows.items():
        def mean(key):
            v = [r[key] for r in values if r.get(key) is not None]
            return float(np.mean(v)) if v else float("nan")
        print(f"{method:9s} completion {'on ' if complete else 'off'}: "
              f"rotation median {np.median([r['rotation'] for r in values]):.1f}°, "
              f"F@5% {mean('fscore'):.3f}, F@1% {mean('fscore@0.01'):.3f}, "
              f"F@5mm {mean('fscore@5mm'):.3f} (P {mean('precision@5mm'):.3f} / R {mean('recall@5mm'):.3f}), "
              f"F@10mm {mean('fscore@10mm'):.3f}, inferred P@5mm {mean('precision@5mm_inferred'):.3f}, "
              f"scale error median {np.median([r['scale'] for r in values]):.3f} "
              f"({len(values)} captures)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/out/eval25n/captures"))
