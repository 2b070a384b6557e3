"""Where the RGB-D registration's rotation error comes from: pairs of views it registered against
pairs with a view it left to the model.

    python benchmarks/registration_pairs.py benchmarks/out/eval25n/captures

Runs ``model`` (RGB-D, no TF) on every capture and prints, for the pairs whose both views were
registered and for the others, the count, median relative rotation error, Acc@15 and Acc@5, then
all pairs together and the median time of the RGB-D stage.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def main(folder: str) -> int:
    from sparp_ros.capture import load_capture
    from sparp_ros.evaluation.metrics import relative_rotation_errors
    from sparp_ros.evaluation.run import expand_capture_dirs
    from sparp_ros.pipeline import reconstruct_capture

    both, other, seconds = [], [], []
    for d in expand_capture_dirs([Path(folder)]):
        capture = load_capture(d)
        recon = reconstruct_capture(capture, backend="model", align_with_camera_motion=False)
        seconds.append(recon.timings.get("measured", float("nan")))
        errors = relative_rotation_errors([v.T_camera_object for v in recon.views],
                                          capture.gt.T_camera_object)
        registered = ((recon.extra.get("measured") or {}).get("registration") or {}).get(
            "registered", [False] * len(recon.views))
        n, k = len(recon.views), 0
        for i in range(n):
            for j in range(i + 1, n):
                (both if registered[i] and registered[j] else other).append(errors[k])
                k += 1
    for name, e in (("registered pairs", both), ("pairs with an unregistered view", other),
                    ("all pairs", both + other)):
        e = np.asarray(e)
        if e.size:
            print(f"{name}: {e.size}, median {np.median(e):.1f}°, Acc@15 {np.mean(e < 15):.2f}, "
                  f"Acc@5 {np.mean(e < 5):.2f}")
    print(f"RGB-D stage (registration + fusion) median {np.nanmedian(seconds):.2f} s per capture")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/out/eval25n/captures"))
