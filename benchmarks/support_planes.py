"""How well each view's support plane (``geometry/support.py``) measures the object's up axis.

    python benchmarks/eval_shared.py --objects 25 --views 4 --seed 0 --depth-noise stereo \
        --realism --out benchmarks/out/eval25rn --no-eval        # photograph-like captures
    python benchmarks/support_planes.py benchmarks/out/eval25rn/captures

For every view of every capture: whether a support plane under the object is found, and the angle
between its normal and the true up axis (the true mesh frame's z seen from that camera: the
renderer stands objects upright on their table). Prints one line per capture (the angle per view,
``-`` where none was found, and whether the capture's scene has a table at all:
``gt.extra["realism"]["plane"]``), then how many views had a plane, the median and largest angle
and the mean time per view. Captures without a table (the plain renders: depth on the object only)
must find none.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np


def main(folder: str) -> int:
    from sparp_ros.capture import load_capture
    from sparp_ros.geometry.registration import depth_noise
    from sparp_ros.geometry.support import support_plane, tilt_deg

    errors, found, total, seconds = [], 0, 0, 0.0
    for path in sorted(p for p in Path(folder).iterdir() if (p / "cameras.json").exists()):
        capture = load_capture(path, with_nocs=False)
        row = []
        for frame, T in zip(capture.frames, capture.gt.T_camera_object):
            total += 1
            start = time.perf_counter()
            known = frame.mask & (frame.depth > 0)
            plane = support_plane(frame.depth, frame.mask, frame.camera, depth_noise(frame.depth, known))
            seconds += time.perf_counter() - start
            if plane is None:
                row.append("-")
                continue
            found += 1
            errors.append(tilt_deg(T, plane.normal))
            row.append(f"{errors[-1]:.1f}")
        table = capture.gt.extra.get("realism", {}).get("plane")
        print(f"{path.name[:40]:40s} table {table!s:5s} up error (°): {' '.join(row)}")
    summary = (f"median {np.median(errors):.2f}°, largest {max(errors):.2f}°" if errors else "")
    print(f"support plane found in {found} of {total} views {summary}; "
          f"{1000 * seconds / max(total, 1):.0f} ms per view")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/out/eval25rn/captures"))
