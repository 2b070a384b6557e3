"""What confirmed each pair the RGB-D registration trusted, and how often each kind of
confirmation is right: every pair of views that ``register_pair`` judged, against the truth.

    python benchmarks/pair_confirmations.py benchmarks/out/eval25n/captures [more capture folders]

For each capture the pipeline runs as ``sparp-ros eval --backend model`` (RGB-D, no TF); the
registration's pairs are caught where ``measured.measure`` calls ``register_views``
(``pair_candidates.registration_run``: before the pose graph, the placement and the search all
round). Each pair is compared with the true relative pose (right: within 15°) and counted in
one of:

* ``table``: the tables around the object confirmed it (``table_confirmed``);
* ``print``: the object's print confirmed it (``match_confirmed``);
* ``images``: trusted, and its images agree as well as ``STRONG_IMAGE_AGREEMENT`` asks with
  violations of at most ``STRONG_IMAGE_MAX_VIOLATION`` (``registration._images_confirm``): such a
  pair is not held to the move limit, and a view placed alone follows it;
* ``surfaces``: trusted on its surfaces and images alone;
* ``untrusted``.

Prints each confirmed pair that is wrong (with its images and violations), then per class the
pairs and how many are right: how far each confirmation can be trusted (README "The print
measures the turn", "Images that agree closely confirm a far move").
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

FAILED_DEG = 15.0
CLASSES = ("table", "print", "images", "surfaces", "untrusted")


def pair_class(trusted: bool, table: bool, printed: bool, images: bool) -> str:
    """The class of one pair (module docstring): a table's or the print's confirmation first
    (they may confirm a pair its surfaces refuse), then the images', then trust alone."""
    if table:
        return "table"
    if printed:
        return "print"
    if not trusted:
        return "untrusted"
    return "images" if images else "surfaces"


def summary(rows: list[tuple[str, bool]]) -> dict[str, dict[str, int]]:
    """Per class: pairs and right ones, from rows of (class, right)."""
    out = {c: {"pairs": 0, "right": 0} for c in CLASSES}
    for kind, right in rows:
        out[kind]["pairs"] += 1
        out[kind]["right"] += int(right)
    return out


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from pair_candidates import registration_run
    from sparp_ros.capture import load_capture
    from sparp_ros.conventions import invert_rigid, rotation_angle_deg
    from sparp_ros.evaluation.run import expand_capture_dirs
    from sparp_ros.geometry.registration import _images_confirm

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("captures", nargs="+")
    args = parser.parse_args(argv)
    rows: list[tuple[str, bool]] = []
    for d in expand_capture_dirs([Path(c) for c in args.captures]):
        capture = load_capture(d)
        try:
            _, result, _ = registration_run(capture)
        except Exception as exc:  # noqa: BLE001 - a capture the pipeline refuses is reported, not fatal
            print(f"  {d.name}: {type(exc).__name__}: {exc}")
            continue
        if result is None:
            print(f"  {d.name}: not registered (no depth, or TF)")
            continue
        gt = capture.gt.T_camera_object
        for p in result.pairs:
            true = gt[p.i] @ invert_rigid(gt[p.j])
            error = rotation_angle_deg(p.T_ci_cj[:3, :3] @ true[:3, :3].T)
            kind = pair_class(p.trusted, p.table_confirmed, p.match_confirmed,
                              _images_confirm(p.image, p.violation))
            rows.append((kind, error < FAILED_DEG))
            if kind in ("table", "print", "images") and error >= FAILED_DEG:
                image = "-" if p.image is None else f"{p.image:.2f}"
                print(f"  {d.name}: {kind} confirmed pair {p.i}{p.j} {error:.0f}° off "
                      f"(images {image}, violations {p.violation:.3f}, "
                      f"{'trusted' if p.trusted else 'untrusted'})", flush=True)
    if not rows:
        print("no capture registered")
        return 1
    for kind, s in summary(rows).items():
        print(f"{kind:10s} {s['pairs']:5d} pairs, {s['right']:5d} right")
    return 0


if __name__ == "__main__":
    sys.exit(main())
