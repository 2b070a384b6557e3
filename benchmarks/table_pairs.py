"""How far the table around the object can be trusted: every pair of views the RGB-D registration
judged, split by what the table said, against the truth.

    python benchmarks/table_pairs.py benchmarks/out/eval25rn/captures [more capture folders]

For each capture the pipeline runs as ``sparp-ros eval --backend model`` (RGB-D, no TF); the
registration's pairs are caught where ``measured.measure`` calls ``register_views`` (the pairs
of ``registration.register_pair``, before the pose graph, the placement and the search all
round). Each pair's placement is compared with the true relative pose (right: within 15°) and
counted in one of:

* ``no tables``: a view of the pair sees no support plane (no table grid);
* ``not confirmed``: both views have a table, but no candidate's tables agreed enough (a plain
  table, too little overlap) — the object's surfaces chose as before;
* ``confirmed``: the tables confirmed the placement (``table_confirmed``).

Prints per class the pairs, how many are right, and how many of them the registration trusted
(and of those, right), then the agreement of the tables at the *true* pose for the pairs with
both tables (median and share ≥ ``min_table_agreement``): how often the table could have
confirmed the truth.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

FAILED_DEG = 15.0
CLASSES = ("no tables", "not confirmed", "confirmed")


def pair_class(has_tables: bool, confirmed: bool) -> str:
    """``no tables``, ``not confirmed`` or ``confirmed`` (module docstring)."""
    if not has_tables:
        return "no tables"
    return "confirmed" if confirmed else "not confirmed"


def summary(rows: list[tuple[str, bool, bool]]) -> dict[str, dict[str, int]]:
    """Per class: pairs, right ones, trusted ones and trusted right ones, from rows of
    (class, right, trusted)."""
    out = {c: {"pairs": 0, "right": 0, "trusted": 0, "trusted_right": 0} for c in CLASSES}
    for kind, right, trusted in rows:
        out[kind]["pairs"] += 1
        out[kind]["right"] += int(right)
        out[kind]["trusted"] += int(trusted)
        out[kind]["trusted_right"] += int(trusted and right)
    return out


def main(argv: list[str] | None = None) -> int:
    from sparp_ros.capture import load_capture
    from sparp_ros.conventions import invert_rigid, rotation_angle_deg
    from sparp_ros.evaluation.run import expand_capture_dirs
    import sparp_ros.geometry.measured as measured
    from sparp_ros.geometry.table import table_agreement
    from sparp_ros.pipeline import reconstruct_capture

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("captures", nargs="+")
    args = parser.parse_args(argv)
    rows: list[tuple[str, bool, bool]] = []
    at_truth: list[float] = []
    threshold = None
    original = measured.register_views
    for d in expand_capture_dirs([Path(c) for c in args.captures]):
        capture = load_capture(d)
        caught = {}

        def catch(views, hypotheses, params, reference=0):
            result = original(views, hypotheses, params, reference)
            caught["views"], caught["params"], caught["result"] = views, params, result
            return result
        measured.register_views = catch
        try:
            reconstruct_capture(capture, backend="model", align_with_camera_motion=False)
        except Exception as exc:  # noqa: BLE001 - a capture the pipeline refuses is reported, not fatal
            print(f"  {d.name}: {type(exc).__name__}: {exc}")
            continue
        finally:
            measured.register_views = original
        if "result" not in caught:
            print(f"  {d.name}: not registered (no depth, or TF)")
            continue
        views, params = caught["views"], caught["params"]
        threshold = params.min_table_agreement
        gt = capture.gt.T_camera_object
        line = []
        for p in caught["result"].pairs:
            true = gt[p.i] @ invert_rigid(gt[p.j])
            error = rotation_angle_deg(p.T_ci_cj[:3, :3] @ true[:3, :3].T)
            has_tables = views[p.i].table is not None and views[p.j].table is not None
            kind = pair_class(has_tables, p.table_confirmed)
            rows.append((kind, error < FAILED_DEG, p.trusted))
            if has_tables:
                truth = table_agreement(views[p.i].table, views[p.j].table, true)
                if truth is not None:
                    at_truth.append(truth)
            if kind == "confirmed":
                line.append(f"{p.i}{p.j} {error:.0f}° ({p.table:.2f}{', trusted' if p.trusted else ''})")
        if line:
            print(f"  {d.name}: confirmed {', '.join(line)}", flush=True)
    if not rows:
        print("no capture registered")
        return 1
    for kind, s in summary(rows).items():
        print(f"{kind:14s} {s['pairs']:4d} pairs, {s['right']:4d} right; trusted {s['trusted']:4d}, "
              f"{s['trusted_right']:4d} of them right")
    if at_truth:
        share = np.mean(np.asarray(at_truth) >= threshold) if threshold else float("nan")
        print(f"tables at the true pose ({len(at_truth)} pairs with overlap): median agreement "
              f"{np.median(at_truth):.2f}, {share:.2f} of them at least {threshold}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
