"""How much of the rotation error is an object's own symmetry? Each true mesh's turns about its
up axis that map it onto itself (shape and colour), and the relative rotation errors of the
RGB-D pipeline with and without them.

    python benchmarks/symmetric_pairs.py benchmarks/out/eval25n/captures

The true mesh (the capture's, z up) is turned about the vertical axis through its box's centre by
every 5°; a turn is a symmetry when the turned vertices lie on average within 0.6 % of the
object's diagonal of the mesh's vertices and their colours (the texture at the vertices) differ by
less than 0.07 on average (of 1 per channel). A pair's symmetric error is the smallest angle
between the estimated relative rotation and ``R_ci_mesh · S · R_cj_mesh^T`` over those turns
``S`` and the identity: a surface of revolution of one colour turned about its axis is the same
surface, which no camera on it can tell apart (README "Not yet at the bar"); only a scene around
it (a table, TF) measures the turn. Prints every object's symmetric turns and both Acc@15. The
bar is stated in the plain relative rotation error; this is a diagnostic beside it.
"""
from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import numpy as np

STEP_DEG = 5
MAX_DISTANCE = 0.006          # × the mesh's diagonal
MAX_COLOUR = 0.07             # mean L1 per channel, colours in [0, 1]
FAILED_DEG = 15.0
SURFACE_SAMPLES = 200_000


@functools.lru_cache(maxsize=64)
def symmetry_turns(mesh_path: str) -> tuple[int, ...]:
    """The turns (degrees, multiples of ``STEP_DEG``, 0 excluded) about the mesh's vertical axis
    through its box's centre that map its vertices onto itself in place and colour."""
    from scipy.spatial import cKDTree

    from sparp_ros.conventions import rot_z
    from sparp_ros.evaluation.metrics import load_true_mesh
    mesh = load_true_mesh(mesh_path)
    V = np.asarray(mesh.vertices, np.float64)
    visual = mesh.visual.to_color() if hasattr(mesh.visual, "to_color") else mesh.visual
    C = np.asarray(visual.vertex_colors, np.float64)[:, :3] / 255.0
    lo, hi = V.min(axis=0), V.max(axis=0)
    diagonal = float(np.linalg.norm(hi - lo))
    centre = 0.5 * (lo + hi)
    centre[2] = 0.0
    # dense surface samples (their colour the nearest vertex's) stand for the surface: a turned
    # vertex is compared with the surface, not with the next vertex a few millimetres away
    samples = np.asarray(mesh.sample(SURFACE_SAMPLES, seed=0), np.float64)
    sample_colours = C[cKDTree(V).query(samples)[1]]
    tree = cKDTree(samples)
    turns = []
    for angle in range(STEP_DEG, 360, STEP_DEG):
        R = rot_z(np.radians(angle))
        distance, index = tree.query((V - centre) @ R.T + centre)
        if (distance.mean() < MAX_DISTANCE * diagonal
                and np.abs(sample_colours[index] - C).mean() < MAX_COLOUR):
            turns.append(angle)
    return tuple(turns)


def symmetric_errors(T_est, T_gt, turns) -> tuple[list[float], list[float]]:
    """(plain, symmetric) relative rotation errors of every pair i < j (180° where a pose is
    missing)."""
    from sparp_ros.conventions import rot_z, rotation_angle_deg
    S = [np.eye(3)] + [rot_z(np.radians(angle)) for angle in turns]
    plain, symmetric = [], []
    n = len(T_gt)
    for i in range(n):
        for j in range(i + 1, n):
            if T_est[i] is None or T_est[j] is None:
                plain.append(180.0)
                symmetric.append(180.0)
                continue
            R_est = np.asarray(T_est[i])[:3, :3] @ np.asarray(T_est[j])[:3, :3].T
            Ri, Rj = np.asarray(T_gt[i])[:3, :3], np.asarray(T_gt[j])[:3, :3]
            errors = [rotation_angle_deg(R_est.T @ (Ri @ s @ Rj.T)) for s in S]
            plain.append(errors[0])
            symmetric.append(min(errors))
    return plain, symmetric


def main(argv: list[str] | None = None) -> int:
    from sparp_ros.capture import load_capture
    from sparp_ros.evaluation.run import expand_capture_dirs
    from sparp_ros.pipeline import reconstruct_capture

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("captures", nargs="?", default="benchmarks/out/eval25n/captures")
    args = parser.parse_args(argv)
    plain, symmetric = [], []
    for d in expand_capture_dirs([Path(args.captures)]):
        capture = load_capture(d)
        path = capture.mesh_path()
        if path is None or not path.exists():
            print(f"  {d.name}: no true mesh")
            continue
        turns = symmetry_turns(str(path))
        recon = reconstruct_capture(capture, backend="model", align_with_camera_motion=False)
        p, s = symmetric_errors([v.T_camera_object if v.ok else None for v in recon.views],
                                capture.gt.T_camera_object, turns)
        plain += p
        symmetric += s
        shown = ("none" if not turns else "all" if len(turns) == 360 // STEP_DEG - 1
                 else ", ".join(f"{t}°" for t in turns))
        print(f"  {d.name}: symmetric turns {shown}; pairs within {FAILED_DEG:.0f}°: "
              f"{np.sum(np.asarray(p) < FAILED_DEG)} plain, {np.sum(np.asarray(s) < FAILED_DEG)} "
              f"up to symmetry, of {len(p)}", flush=True)
    if not plain:
        print("no capture with a true mesh")
        return 1
    p, s = np.asarray(plain), np.asarray(symmetric)
    print(f"{len(p)} pairs: plain median {np.median(p):.1f}°, Acc@15 {np.mean(p < FAILED_DEG):.3f}; "
          f"up to the objects' symmetries median {np.median(s):.1f}°, Acc@15 {np.mean(s < FAILED_DEG):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
