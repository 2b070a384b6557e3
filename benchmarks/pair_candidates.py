"""Is it the search or the score? Every pair's ICP candidates from a search all round the up
axis, against the truth.

    python benchmarks/pair_candidates.py benchmarks/out/eval25n/captures [--turn-penalty 0 0.3 1]

For each capture, the pipeline runs as ``sparp-ros eval --backend model`` (RGB-D, no TF) up to
the registration; then every pair of views gets ICP candidates (the start, fine ICP, coarse then
fine ICP, as ``registration.register_pair`` makes them) from the model's hypotheses, their ±20°
turns about up (the shipped search) and turns of the first hypothesis every 30° (a search all
round). Each candidate is scored as the shipped pair score does (overlap − 3 × free-space
violations − colour weight × colour difference − the move margin), less each ``--turn-penalty``
per radian it turned from the model's first hypothesis, plus each ``--image-weight`` × the
candidate's image agreement (``registration.image_agreement``: the normalised cross-correlation
of the two views' blurred grey values where each view's measured surface, moved into the other
camera, is visible there; 0 where too few points are; one result line per penalty and weight).
``--image-tiebreak D``: the images instead pick among the candidates scored within D of the best
(shape and colour first, the images only among what they cannot tell apart). Prints, over all
pairs and per pair class (``pair_observability.classify_pairs``: ``measured``, ``symmetric``,
``across``), the share whose candidates hold one within 15° of the truth, and the share whose
best-scored candidate is within 15°, among the shipped search's candidates and among all. Where
candidates hold the truth but the best is wrong, the score (not the search) is what fails.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROUND_TURNS_DEG = (30, 60, 90, 120, 150, 180, -150, -120, -90, -60, -30)
FAILED_DEG = 15.0


def registration_inputs(capture):
    """The RGB-D pipeline (``sparp-ros eval --backend model``) on ``capture``: (its own
    registration inputs — views, hypotheses, params and the reference view, caught where
    ``measured.measure`` calls ``register_views``; None without depth or with TF — and the
    reconstruction)."""
    args, _, recon = registration_run(capture)
    return args, recon


def registration_run(capture):
    """As :func:`registration_inputs`, with the registration's own result between them (its
    ``Registration``: the pairs before the pose graph, the placement and the search all round;
    None where the inputs are)."""
    import sparp_ros.geometry.measured as measured
    from sparp_ros.pipeline import reconstruct_capture
    caught = {}
    original = measured.register_views

    def catch(views, hypotheses, params, reference=0):
        caught["args"] = (views, hypotheses, params, reference)
        caught["result"] = original(views, hypotheses, params, reference)
        return caught["result"]
    measured.register_views = catch
    try:
        recon = reconstruct_capture(capture, backend="model", align_with_camera_motion=False)
    finally:
        measured.register_views = original
    return caught.get("args"), caught.get("result"), recon


def pair_candidates(views, hypotheses, params, i: int, j: int) -> list[dict]:
    """Every ICP candidate of pair (i, j) with its score terms (``registration.pair_fit`` and the
    colour difference), its turn from the model's first hypothesis and whether the shipped search
    makes it. Unlike ``register_pair``, which weighs colour only for each start's shape winner,
    every candidate's colour is measured here: the diagnostic asks what the score would pick among
    all of them."""
    import sparp_ros.geometry.registration as reg_module
    from sparp_ros.conventions import invert_rigid, rotation_angle_deg
    clouds = {k: reg_module._cloud(views[k].points, params.voxel, views[k].chromaticity) for k in (i, j)}
    trees = reg_module._colour_trees(clouds)
    fine = params.fine_distance * params.object_size
    starts = reg_module._distinct_starts([np.asarray(h[i]) @ invert_rigid(np.asarray(h[j]))
                                          for h in hypotheses if h[i] is not None and h[j] is not None])
    T_ci_o = np.asarray(hypotheses[0][i], float)
    inits = [(True, s) for s in starts]
    inits += [(True, reg_module._turn_about_up(starts[0], T_ci_o, a)) for a in (-20.0, 20.0)]
    inits += [(False, reg_module._turn_about_up(starts[0], T_ci_o, a)) for a in ROUND_TURNS_DEG]
    out = []
    for shipped, start in inits:
        start = reg_module.snap_to_support(start, views[i], views[j], T_ci_o[:3, 3])
        for moved, T in reg_module._icp_candidates(clouds[j], clouds[i], start, params):
            T = reg_module.snap_to_support(T, views[i], views[j], T_ci_o[:3, 3])
            fit = reg_module.pair_fit(views, clouds, i, j, T, params)
            out.append(dict(T=T, shipped=shipped, moved=moved, fitness=fit.fitness,
                            violation=fit.violation,
                            colour=reg_module.colour_difference(clouds, i, j, T, fine, trees),
                            turn_rad=np.radians(rotation_angle_deg(T[:3, :3] @ starts[0][:3, :3].T))))
    return out


def main(argv: list[str] | None = None) -> int:
    from sparp_ros.capture import load_capture
    from sparp_ros.conventions import invert_rigid, rotation_angle_deg
    from sparp_ros.evaluation.run import expand_capture_dirs
    from sparp_ros.geometry.registration import MIN_POINTS, candidate_score, image_agreement

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from pair_observability import CLASSES, classify_pairs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("captures", nargs="?", default="benchmarks/out/eval25n/captures")
    parser.add_argument("--turn-penalty", type=float, nargs="+", default=[0.0],
                        help="score lost per radian turned from the model's first hypothesis")
    parser.add_argument("--image-weight", type=float, nargs="+", default=[0.0],
                        help="score gained per unit of image agreement (normalised cross-correlation)")
    parser.add_argument("--image-tiebreak", type=float, nargs="+", default=[],
                        help="the images pick among the candidates scored within this of the best")
    args = parser.parse_args(argv)
    variants = [(p, w, None) for p in args.turn_penalty for w in args.image_weight]
    variants += [(0.0, 0.0, d) for d in args.image_tiebreak]
    measure_images = any(args.image_weight) or bool(args.image_tiebreak)
    holds: dict[str, list[bool]] = {}
    best_shipped: dict[tuple, dict[str, list[bool]]] = {v: {} for v in variants}
    best_all: dict[tuple, dict[str, list[bool]]] = {v: {} for v in variants}
    for d in expand_capture_dirs([Path(args.captures)]):
        capture = load_capture(d)
        caught, _ = registration_inputs(capture)
        if caught is None:
            print(f"  {d.name}: not registered (no depth, or TF)")
            continue
        views, hypotheses, params, _ = caught
        gt = capture.gt.T_camera_object
        _, _, classes = classify_pairs(capture, views, params)
        usable = [k for k, v in enumerate(views) if v is not None and hypotheses[0][k] is not None
                  and len(v.points) >= MIN_POINTS]
        image_tolerance = params.free_space_tolerance * params.object_size
        for a, i in enumerate(usable):
            for j in usable[a + 1:]:
                truth = gt[i] @ invert_rigid(gt[j])
                candidates = pair_candidates(views, hypotheses, params, i, j)
                for c in candidates:
                    c["error"] = rotation_angle_deg(c["T"][:3, :3] @ truth[:3, :3].T)
                    c["score"] = candidate_score(c["fitness"], c["violation"], moved=c["moved"],
                                                 colour=c["colour"],
                                                 colour_weight=params.colour_weight)
                    c["image"] = ((image_agreement(views, i, j, c["T"], image_tolerance) or 0.0)
                                  if measure_images else 0.0)
                kinds = ("all", classes[(i, j)])
                for kind in kinds:
                    holds.setdefault(kind, []).append(min(c["error"] for c in candidates) < FAILED_DEG)
                for variant in variants:
                    for pool, out in ((candidates, best_all[variant]),
                                      ([c for c in candidates if c["shipped"]], best_shipped[variant])):
                        right = chosen(pool, *variant)["error"] < FAILED_DEG
                        for kind in kinds:
                            out.setdefault(kind, []).append(right)
        print(f"  {d.name}: {len(holds.get('all', []))} pairs so far", flush=True)
    if not holds:
        print("no pair registered")
        return 1
    kinds = ["all"] + [k for k in CLASSES if k in holds]

    def shares(results: dict[str, list[bool]]) -> str:
        return ", ".join(f"{k} {np.mean(results[k]):.3f}" for k in kinds)
    print(f"pairs: {', '.join(f'{k} {len(holds[k])}' for k in kinds)}")
    print(f"a candidate within {FAILED_DEG:.0f}° of the truth: {shares(holds)}")
    for variant in variants:
        rule = (f"turn penalty {variant[0]:g}/rad, image weight {variant[1]:g}" if variant[2] is None
                else f"images pick within {variant[2]:g} of the best score")
        print(f"  {rule}: the best-scored candidate within it: shipped search "
              f"{shares(best_shipped[variant])}; search all round {shares(best_all[variant])}")
    return 0


def chosen(candidates: list[dict], penalty: float, weight: float, tiebreak: float | None) -> dict:
    """The candidate a rule picks: the best ``score`` less ``penalty`` per radian turned plus
    ``weight`` × its image agreement; or, with ``tiebreak``, the best image agreement among the
    candidates scored within ``tiebreak`` of the best score."""
    if tiebreak is not None:
        top = max(c["score"] for c in candidates)
        return max((c for c in candidates if c["score"] >= top - tiebreak), key=lambda c: c["image"])
    return max(candidates, key=lambda c: c["score"] - penalty * c["turn_rad"] + weight * c["image"])


if __name__ == "__main__":
    sys.exit(main())
