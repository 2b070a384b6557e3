"""How well the object's print measures the relative pose: for every pair of views, the
placement most of their print matches agree on (``geometry.features``), compared with the
*true* relative pose.

    python benchmarks/print_pairs.py benchmarks/out/eval25n/captures [more capture folders]

For each capture, each view's features are found from its image, its usable depth
(``measured.usable_depths``, as the registration takes it) and its mask; every pair's matches
give a placement where at least ``min_matches`` of them agree (``features.matched_placement``,
with the registration's gate: ``MATCH_GATE`` of the object's size, from the points' spread
here, or three standard deviations of the views' depth noise). Prints each such pair's matches,
how many agree, and its rotation error against the truth; then how many pairs have a placement,
how many of those lie within 15° of the truth, and the features' time a view. A placement far
from the truth is a repeated print (a mug's pattern on both sides, a lunch box's dinosaurs):
the registration must refuse those by the free space and the images (README "The print
measures the turn").
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

WITHIN_DEG = 15.0


def summary(errors: list[float], within_deg: float = WITHIN_DEG) -> dict:
    """Pairs with a placement, how many lie within ``within_deg`` of the truth, their median."""
    return {"pairs": len(errors), "within": int(sum(e <= within_deg for e in errors)),
            "median_deg": float(np.median(errors)) if errors else None}


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from rgbd_captures import posed_rgbd_captures
    from sparp_ros.conventions import invert_rigid, rotation_angle_deg
    from sparp_ros.geometry.features import match_features, matched_placement, view_features
    from sparp_ros.geometry.measured import depth_noises, usable_depths
    from sparp_ros.geometry.registration import MATCH_GATE, RegistrationParams

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("captures", nargs="+")
    parser.add_argument("--min-matches", type=int, default=RegistrationParams.min_matches)
    args = parser.parse_args(argv)
    errors, views, pairs, seconds = [], 0, 0, 0.0
    for root, capture in posed_rgbd_captures(args.captures):
        usable = usable_depths(capture.frames)
        noises = depth_noises(usable)
        start = time.perf_counter()
        features = [None if d is None else view_features(f.image, d, f.mask, f.camera)
                    for f, d in zip(capture.frames, usable)]
        seconds += time.perf_counter() - start
        views += len(features)
        points = np.concatenate([f.points for f in features if f is not None] or [np.zeros((0, 3))])
        size = float(np.linalg.norm(np.ptp(points, axis=0))) if len(points) else 0.0
        truth = [np.asarray(T, float) for T in capture.gt.T_camera_object]
        for i in range(len(features)):
            for j in range(i + 1, len(features)):
                pairs += 1
                a, b = features[i], features[j]
                if a is None or b is None:
                    continue
                matches = match_features(a, b)
                gate = max(MATCH_GATE * size, 3.0 * float(np.hypot(noises[i], noises[j])))
                found = matched_placement(a, b, matches, gate, args.min_matches)
                if found is None:
                    continue
                T, agree = found
                true = truth[i] @ invert_rigid(truth[j])
                error = rotation_angle_deg(T[:3, :3] @ true[:3, :3].T)
                errors.append(error)
                print(f"{root.name[:32]:32s} views {i}-{j}: {len(matches):4d} matches, {agree:4d} "
                      f"agree; {error:6.1f}° from the truth")
    s = summary(errors)
    print(f"views: {views}; features took {seconds / max(views, 1):.3f} s a view")
    print(f"pairs: {pairs}, with a placement ({args.min_matches} matches agreeing): {s['pairs']}, "
          f"within {WITHIN_DEG:.0f}° of the truth: {s['within']} (median {s['median_deg']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
