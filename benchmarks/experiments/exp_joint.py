"""Relative rotation with: pairwise-to-ref search (current), joint all-pairs search, true azimuth."""
import sys, json, time, itertools
from pathlib import Path
import numpy as np
REPO = __import__("pathlib").Path(__file__).resolve().parents[2]; sys.path.insert(0, str(REPO))
from sparp_ros.capture import load_capture
from sparp_ros.pipeline import SparpPipeline, PipelineConfig, _rotate_object_frame
from sparp_ros.geometry.azimuth import search_azimuth, view_geometry, violation_fraction
from sparp_ros.geometry.pnp import correspondences
from sparp_ros.conventions import rot_z
from sparp_ros.evaluation.metrics import relative_rotation_errors, summarize_rotation
backend = sys.argv[1]; steps = int(sys.argv[2]) if len(sys.argv) > 2 else 1
STEPS = 72 if len(sys.argv) <= 3 else int(sys.argv[3])
gtp = SparpPipeline(PipelineConfig(align_with_camera_motion=False, backend="oracle_per_view"))
pipe = SparpPipeline(PipelineConfig(align_with_camera_motion=False, backend=backend, inference_steps=steps if backend == "model" else None))
angles = np.arange(STEPS) * 2 * np.pi / STEPS
Rs = np.stack([rot_z(a) for a in angles])

def curve(gk, g0, rng, n=400):
    s = lambda p: p if len(p) <= n else p[rng.choice(len(p), n, replace=False)]
    pk, p0 = s(gk.points), s(g0.points)
    k_in_0 = np.einsum("aij,nj->ani", Rs, pk)
    zero_in_k = np.einsum("aji,nj->ani", Rs, p0)
    return 0.5 * (violation_fraction(k_in_0, g0) + violation_fraction(zero_in_k, gk))  # S(θ): p0 = Rz(θ) pk

res = {"pairwise": [], "joint": [], "true": []}
t0 = time.time()
for cd in sorted((REPO / "benchmarks/out/eval25/captures").iterdir()):
    cap = load_capture(cd)
    cells_g = [gtp.prepare_view(i, f) for i, f in enumerate(cap.frames)]
    pg, pnpg, _ = gtp.select_poses(cells_g, gtp.predict_nocs([v.cell for v in cells_g]))
    R_true, _ = gtp.align_views(cells_g, pg, pnpg, cap.frames)
    cells = [pipe.prepare_view(i, f) for i, f in enumerate(cap.frames)]
    preds, pnp, _ = pipe.select_poses(cells, pipe.predict_nocs([v.cell for v in cells]))
    # each view against the first posed view alone (the search before the joint one)
    R_pair = [np.eye(3)] * len(pnp)
    okv = [i for i, r in enumerate(pnp) if r.ok]
    gv = {}
    for i in okv:
        uv_, X_ = correspondences(preds[i].nocs, preds[i].mask)
        gv[i] = view_geometry(X_, uv_, pnp[i].T_camera_unit, cells[i][0].camera, preds[i].mask)
    for i in okv[1:]:
        R_pair[i] = rot_z(search_azimuth(gv[i], gv[okv[0]])[0].azimuth)
    ok = [i for i, r in enumerate(pnp) if r.ok]
    rng = np.random.default_rng(0)
    geoms = {}
    for i in ok:
        uv, X = correspondences(preds[i].nocs, preds[i].mask)
        geoms[i] = view_geometry(X, uv, pnp[i].T_camera_unit, cells[i][0].camera, preds[i].mask)
    ref, others = ok[0], ok[1:]
    # world = frame of ref; θ_i maps frame i → ref: p_ref = Rz(θ_i) p_i. Pair (i,j): p_j = Rz(θ_i-θ_j) p_i
    C = {(i, j): curve(geoms[i], geoms[j], rng) for i in ok for j in ok if i < j}
    best, best_s = None, np.inf
    grids = np.array(list(itertools.product(range(STEPS), repeat=len(others)))) if others else np.zeros((1, 0), int)
    th = np.zeros((len(grids), len(ok)), int); th[:, 1:] = grids
    score = np.zeros(len(grids))
    for a, i in enumerate(ok):
        for b, j in enumerate(ok):
            if i < j:
                score += C[(i, j)][(th[:, a] - th[:, b]) % STEPS]
    bi = int(np.argmin(score))
    R_joint = [np.eye(3)] * len(pnp)
    for a, i in enumerate(ok):
        R_joint[i] = rot_z(angles[th[bi, a]])
    gt = cap.gt.T_camera_object
    for name, R in (("pairwise", R_pair), ("joint", R_joint), ("true", R_true)):
        T = [(_rotate_object_frame(r, Ri).T_camera_unit if r.ok else None) for r, Ri in zip(pnp, R)]
        res[name] += relative_rotation_errors(T, gt)
print("time", round(time.time() - t0))
for name, e in res.items():
    print(name, json.dumps({k: round(v, 3) for k, v in summarize_rotation(e).items()}))
