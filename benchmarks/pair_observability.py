"""Which pairs of views can their measured surfaces register at all? Every pair judged at the
true poses by the registration's own trust tests, and what that leaves to the model.

    python benchmarks/pair_observability.py benchmarks/out/eval25n/captures

For each capture the pipeline runs as ``sparp-ros eval --backend model`` (RGB-D, no TF); its
registration inputs are caught where ``measured.measure`` calls ``register_views``. At every
pair's *true* relative pose the script measures what ``register_pair`` judges a candidate by
(``registration.pair_fit``: overlap, RMSE, free-space violations) and asks the same trust tests
(``registration.untrusted_because``, no correction). Pairs that would be trusted at the truth join
views into groups (connected components). Every pair is then one of:

* ``measured``: both views in one group, and the object has no turn about its up axis that maps
  it onto itself (``symmetric_pairs.symmetry_turns``): the surfaces can fix the relative pose;
* ``symmetric``: one group, but the object has a turn about up of more than 15° that maps it
  onto itself in shape and colour (a surface of revolution of one colour, a figure alike front
  and back): the surfaces fix the pose only up to that turn;
* ``across``: the views lie in different groups: even the true pose overlaps too little, or
  violates too much, for a pair to be trusted, so only the placement's weaker evidence (a small
  overlap with the union, free space) or the model's heading can relate them.

Prints the groups of each capture with a split, and the ``measured`` pairs the shipped result
gets more than 15° wrong (with where each view's pose came from: ``registered``, ``placed`` or
``model``), then per class the number of pairs, the
shipped result's Acc@15 on them and that of the model's own poses (the registration's first
hypothesis, before any surface moved it), and the Acc@15 the result would have if every
``measured`` pair were right and the others stayed as they are: how far a better use of the
surfaces alone can go. What the model's own poses get on ``symmetric`` and ``across`` pairs is
what only a better learned heading can raise.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

FAILED_DEG = 15.0
CLASSES = ("measured", "symmetric", "across")


def trust_groups(n: int, links: Iterable[tuple[int, int]]) -> list[set[int]]:
    """The connected components of ``n`` views joined by ``links`` (pairs of view indices),
    each a set, ordered by their smallest view."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    links = list(links)
    rows, cols = [a for a, _ in links], [b for _, b in links]
    _, labels = connected_components(coo_matrix((np.ones(len(links)), (rows, cols)), shape=(n, n)),
                                     directed=False)
    groups: dict[int, set[int]] = {}
    for k, label in enumerate(labels):
        groups.setdefault(int(label), set()).add(k)
    return sorted(groups.values(), key=min)


def turn_symmetric(turns: Iterable[float]) -> bool:
    """Whether any of an object's symmetry turns (degrees about up) is larger than
    ``FAILED_DEG``: only such a turn can make a right pair look wrong, or a wrong one right (a
    compact figure's ±5° pass ``symmetry_turns``'s tolerance without being a symmetry)."""
    return any(min(t % 360, 360 - t % 360) > FAILED_DEG for t in turns)


def pair_class(i: int, j: int, groups: Sequence[set[int]], symmetric: bool) -> str:
    """``measured``, ``symmetric`` or ``across`` (module docstring) for the pair (i, j)."""
    if not any(i in g and j in g for g in groups):
        return "across"
    return "symmetric" if symmetric else "measured"


def classify_pairs(capture, views, params) -> tuple[list[set[int]], bool, dict[tuple[int, int], str]]:
    """The view groups of ``capture`` (views joined by the pairs that would be trusted at their
    true pose), whether its object is turn-symmetric, and every pair's class (i < j; views
    without depth each make a group of their own, so their pairs are ``across``)."""
    from sparp_ros.conventions import invert_rigid
    from sparp_ros.geometry.registration import _cloud, pair_fit, untrusted_because

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from symmetric_pairs import symmetry_turns

    gt = capture.gt.T_camera_object
    n = len(views)
    usable = [k for k in range(n) if views[k] is not None]
    clouds = {k: _cloud(views[k].points, params.voxel) for k in usable}
    links = []
    for a, i in enumerate(usable):
        for j in usable[a + 1:]:
            fit = pair_fit(views, clouds, i, j, gt[i] @ invert_rigid(gt[j]), params)
            if not untrusted_because(fit, 0.0, params):
                links.append((i, j))
    groups = trust_groups(n, links)
    mesh_path = capture.mesh_path()
    symmetric = mesh_path is not None and turn_symmetric(symmetry_turns(str(mesh_path)))
    classes = {(i, j): pair_class(i, j, groups, symmetric) for i in range(n) for j in range(i + 1, n)}
    return groups, symmetric, classes


def main(argv: list[str] | None = None) -> int:
    from sparp_ros.capture import load_capture
    from sparp_ros.evaluation.metrics import relative_rotation_errors
    from sparp_ros.evaluation.run import expand_capture_dirs

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from pair_candidates import registration_inputs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("captures", nargs="?", default="benchmarks/out/eval25n/captures")
    args = parser.parse_args(argv)
    right: dict[str, list[bool]] = {c: [] for c in CLASSES}
    model_right: dict[str, list[bool]] = {c: [] for c in CLASSES}
    for d in expand_capture_dirs([Path(args.captures)]):
        capture = load_capture(d)
        caught, recon = registration_inputs(capture)
        if caught is None:
            print(f"  {d.name}: not registered (no depth, or TF)")
            continue
        views, hypotheses, params, _ = caught
        gt = capture.gt.T_camera_object
        n = len(views)
        groups, symmetric, classes = classify_pairs(capture, views, params)
        errors = relative_rotation_errors([v.T_camera_object for v in recon.views], gt)
        # the model's own poses: the registration's first hypothesis, before any surface moved it
        model_errors = relative_rotation_errors(list(hypotheses[0]), gt)
        sources = [v.pose_source for v in recon.views]
        k, missed = 0, []
        for i in range(n):
            for j in range(i + 1, n):
                kind = classes[(i, j)]
                right[kind].append(errors[k] < FAILED_DEG)
                model_right[kind].append(model_errors[k] < FAILED_DEG)
                if kind == "measured" and errors[k] >= FAILED_DEG:
                    missed.append(f"{i}{j} {errors[k]:.0f}° ({sources[i]}, {sources[j]})")
                k += 1
        if len(groups) > 1 or symmetric or missed:
            print(f"  {d.name}: groups {[sorted(g) for g in groups]}"
                  + (" (turn-symmetric object)" if symmetric else "")
                  + (f"; measured pairs missed: {', '.join(missed)}" if missed else ""), flush=True)
    total = sum(len(v) for v in right.values())
    if not total:
        print("no capture registered")
        return 1
    for c in CLASSES:
        share = len(right[c]) / total
        acc = f"{np.mean(right[c]):.3f}" if right[c] else "-"
        own = f"{np.mean(model_right[c]):.3f}" if model_right[c] else "-"
        print(f"{c:10s} {len(right[c]):4d} pairs ({share:.3f}), shipped Acc@15 {acc}, "
              f"the model's own poses {own}")
    shipped = sum(sum(v) for v in right.values()) / total
    own = sum(sum(v) for v in model_right.values()) / total
    bound = (len(right["measured"]) + sum(right["symmetric"]) + sum(right["across"])) / total
    print(f"all        {total:4d} pairs, shipped Acc@15 {shipped:.3f}, the model's own poses "
          f"{own:.3f}; with every measured pair right {bound:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
