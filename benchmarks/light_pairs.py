"""How well the light measures the turn: every pair of views whose lights
``geometry.lighting.estimate_light`` accepts, compared at the *true* poses.

    python benchmarks/light_pairs.py benchmarks/out/eval25n/captures [more capture folders]

For each capture, each view's light is estimated from its image, depth and mask (as
``measured.registration_views`` does, there from the depth its usable-depth step cleaned) and
turned into the object frame of the view's true pose. At the truth two views' lights should
coincide; the turn about up between them is the error a turn to the light would make
(``registration.turn_to_light``). Prints how many views have a light and the fit's time a
view, and per pair whose lights both lie ``LIGHT_MIN_HORIZONTAL`` off the up axis (those that
can measure a turn) the angle between them and the turn about up between them, with how many
lie within ``LIGHT_TURN_TOLERANCE_DEG``; pairs nearer the axis are counted apart.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def pair_errors(lights_in_object: list[np.ndarray | None]) -> list[tuple[int, int, float, float, float]]:
    """(i, j, angle between the lights in degrees, turn about up between them in degrees, the
    smaller of their distances off the up axis) for every pair of views that both have a light
    (object-frame directions; None: no light)."""
    from sparp_ros.geometry.lighting import angle_deg, turn_about_up
    out = []
    for i, a in enumerate(lights_in_object):
        for j in range(i + 1, len(lights_in_object)):
            b = lights_in_object[j]
            if a is None or b is None:
                continue
            off_axis = min(float(np.hypot(a[0], a[1])), float(np.hypot(b[0], b[1])))
            out.append((i, j, angle_deg(a, b), turn_about_up(a, b), off_axis))
    return out


def summary(rows: list[tuple[int, int, float, float, float]], min_horizontal: float,
            tolerance_deg: float) -> dict:
    """Pairs that can measure a turn (off the axis by ``min_horizontal``), how many of them turn
    within ``tolerance_deg``, the median and largest turn among them, and the pairs nearer the
    axis."""
    usable = [abs(r[3]) for r in rows if r[4] >= min_horizontal]
    return {"pairs": len(usable), "within": int(sum(t <= tolerance_deg for t in usable)),
            "median_turn_deg": float(np.median(usable)) if usable else None,
            "max_turn_deg": float(max(usable)) if usable else None,
            "near_axis": len(rows) - len(usable)}


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from rgbd_captures import posed_rgbd_captures
    from sparp_ros.geometry.lighting import estimate_light
    from sparp_ros.geometry.registration import LIGHT_MIN_HORIZONTAL, LIGHT_TURN_TOLERANCE_DEG

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("captures", nargs="+")
    args = parser.parse_args(argv)
    rows, views, lit, seconds = [], 0, 0, 0.0
    for root, capture in posed_rgbd_captures(args.captures):
        start = time.perf_counter()
        lights = [estimate_light(f.image, f.depth, f.mask, f.camera) for f in capture.frames]
        seconds += time.perf_counter() - start
        views += len(lights)
        lit += sum(light is not None for light in lights)
        in_object = [None if light is None else np.asarray(T, float)[:3, :3].T @ light.direction
                     for light, T in zip(lights, capture.gt.T_camera_object)]
        for i, j, angle, turn, off_axis in pair_errors(in_object):
            rows.append((i, j, angle, turn, off_axis))
            print(f"{root.name[:32]:32s} views {i}-{j}: lights {angle:5.1f}° apart, turn "
                  f"{turn:6.1f}°, off the up axis {off_axis:.2f}")
    s = summary(rows, LIGHT_MIN_HORIZONTAL, LIGHT_TURN_TOLERANCE_DEG)
    print(f"views: {views}, with a light: {lit}; the light's fit took "
          f"{seconds / max(views, 1):.3f} s a view")
    print(f"pairs off the up axis by {LIGHT_MIN_HORIZONTAL}: {s['pairs']}, turn within "
          f"{LIGHT_TURN_TOLERANCE_DEG:.0f}°: {s['within']} (median {s['median_turn_deg']}, largest "
          f"{s['max_turn_deg']}); nearer the axis: {s['near_axis']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
