"""Where the RGB-D registration's rotation error comes from: pairs of views it registered against
pairs with a view it left to the model, and, for the registered pairs it got wrong, whether the
search or the score is to blame.

    python benchmarks/registration_pairs.py benchmarks/out/eval25n/captures

Runs ``model`` (RGB-D, no TF) on every capture and prints, for the pairs whose both views were
registered and for the others, the count, median relative rotation error, Acc@15 and Acc@5, then
all pairs together and the median time of the RGB-D stage.

Then the failed pairs (more than 15° off) by cause, with one line per capture that has any:

* ``unregistered``: a view of the pair overlapped no registered view enough and kept the model's
  pose;
* ``placed``: a view of the pair was registered by no pair but placed against the registered
  views together (``registration.place_unregistered``), none kept the model's pose;
* ``search``: both views registered, and the true poses make the measured surfaces agree better
  than the registered ones (``geometry.registration.agreement``: overlap minus free-space
  violations, summed over all pairs, both scored with the same settings): a better search
  would find them;
* ``score``: both registered, and the registered poses agree at least as well as the true ones:
  the surfaces cannot tell them apart (a symmetric shape), only something else can (colour, the
  model's heading).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

FAILED_DEG = 15.0


def main(folder: str) -> int:
    from sparp_ros.capture import load_capture
    from sparp_ros.evaluation.metrics import relative_rotation_errors
    from sparp_ros.evaluation.run import expand_capture_dirs
    from sparp_ros.geometry.fusion import voxel_size_for
    from sparp_ros.geometry.measured import REGISTRATION_VOXELS, measured_views, registration_views
    from sparp_ros.geometry.registration import RegistrationParams, agreement
    from sparp_ros.pipeline import reconstruct_capture

    both, placed_pairs, other, seconds = [], [], [], []
    causes = {"unregistered": 0, "placed": 0, "search": 0, "score": 0}
    lines = []
    for d in expand_capture_dirs([Path(folder)]):
        capture = load_capture(d)
        recon = reconstruct_capture(capture, backend="model", align_with_camera_motion=False)
        seconds.append(recon.timings.get("measured", float("nan")))
        estimate = [v.T_camera_object for v in recon.views]
        errors = relative_rotation_errors(estimate, capture.gt.T_camera_object)
        record = (recon.extra.get("measured") or {}).get("registration") or {}
        registered = record.get("registered", [False] * len(recon.views))
        placed = {k for p in record.get("placed", []) if p["placed"] for k in p["views"]}
        n, k = len(recon.views), 0
        failed = []                      # per failed pair: "registered", "placed" or "unregistered"
        for i in range(n):
            for j in range(i + 1, n):
                kind = ("registered" if registered[i] and registered[j] else
                        "placed" if all(registered[v] or v in placed for v in (i, j)) else
                        "unregistered")
                {"registered": both, "placed": placed_pairs, "unregistered": other}[kind].append(errors[k])
                if errors[k] > FAILED_DEG:
                    failed.append(kind)
                k += 1
        if not failed:
            continue
        # the same views and settings score the registered and the true poses
        diagonal = float(capture.gt.extra["canonical"]["diagonal"])
        params = RegistrationParams(voxel=REGISTRATION_VOXELS * voxel_size_for(diagonal),
                                    object_size=diagonal)
        views = registration_views(capture.frames, measured_views(capture.frames))
        at_result = agreement(views, estimate, params)
        at_truth = agreement(views, capture.gt.T_camera_object, params)
        cause = "search" if at_truth > at_result else "score"
        counts = {"unregistered": failed.count("unregistered"), "placed": failed.count("placed"),
                  cause: failed.count("registered")}
        for key, value in counts.items():
            causes[key] += value
        lines.append(f"  {d.name}: {len(failed)} failed ({', '.join(f'{v} {c}' for c, v in counts.items() if v)}); "
                     f"agreement registered {at_result:.2f}, true {at_truth:.2f}")
    for name, e in (("registered pairs", both), ("pairs with a placed view", placed_pairs),
                    ("pairs with a view at the model's pose", other),
                    ("all pairs", both + placed_pairs + other)):
        e = np.asarray(e)
        if e.size:
            print(f"{name}: {e.size}, median {np.median(e):.1f}°, Acc@15 {np.mean(e < 15):.2f}, "
                  f"Acc@5 {np.mean(e < 5):.2f}")
    print(f"RGB-D stage (registration + placement + fusion) median {np.nanmedian(seconds):.2f} s per capture")
    print(f"pairs more than {FAILED_DEG:.0f}° off: " + ", ".join(f"{v} {c}" for c, v in causes.items()))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/out/eval25n/captures"))
