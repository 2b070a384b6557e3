"""Joint azimuth search with visibility + colour-consistency scores."""
import sys, json, time, itertools
from pathlib import Path
import numpy as np
REPO = __import__("pathlib").Path(__file__).resolve().parents[2]; sys.path.insert(0, str(REPO))
from sparp_ros.capture import load_capture
from sparp_ros.pipeline import SparpPipeline, PipelineConfig, _rotate_object_frame
from sparp_ros.geometry.azimuth import view_geometry, violation_fraction
from sparp_ros.geometry.pnp import correspondences
from sparp_ros.conventions import rot_z
from sparp_ros.evaluation.metrics import relative_rotation_errors, summarize_rotation
backend = sys.argv[1]; STEPS = 72
LAMBDAS = [float(x) for x in sys.argv[2].split(",")]
TOL = float(sys.argv[3]) if len(sys.argv) > 3 else 0.05
pipe = SparpPipeline(PipelineConfig(align_with_camera_motion=False, backend=backend, inference_steps=1 if backend == "model" else None))
gtp = SparpPipeline(PipelineConfig(align_with_camera_motion=False, backend="oracle_per_view"))
angles = np.arange(STEPS) * 2 * np.pi / STEPS
Rs = np.stack([rot_z(a) for a in angles])

def color_diff(pts, cols, g, img):
    """A×N×3 points in g's frame with colours N×3 → (mean colour diff over visible, visible frac)."""
    T = g.T_camera_object
    pc = pts @ T[:3, :3].T + T[:3, 3]
    z = np.maximum(pc[..., 2], 1e-6)
    K = g.camera.K
    u = np.round(K[0, 0] * pc[..., 0] / z + K[0, 2]).astype(int)
    v = np.round(K[1, 1] * pc[..., 1] / z + K[1, 2]).astype(int)
    H, W = g.mask.shape
    inside = (u >= 0) & (u < W) & (v >= 0) & (v < H)
    uc, vc = np.clip(u, 0, W - 1), np.clip(v, 0, H - 1)
    vis = inside & g.mask[vc, uc] & (np.abs(z - g.depth[vc, uc]) < TOL)
    d = np.abs(img[vc, uc].astype(float) - cols[None].astype(float)).mean(-1) / 255.0
    n = vis.sum(-1)
    return np.where(n > 10, (d * vis).sum(-1) / np.maximum(n, 1), 0.3), n / pts.shape[1]

def curves(gk, g0, ck, c0, imk, im0, rng, n=400):
    ik = rng.choice(len(gk.points), min(n, len(gk.points)), replace=False)
    i0 = rng.choice(len(g0.points), min(n, len(g0.points)), replace=False)
    pk, p0 = gk.points[ik], g0.points[i0]
    k_in_0 = np.einsum("aij,nj->ani", Rs, pk)
    zero_in_k = np.einsum("aji,nj->ani", Rs, p0)
    vis = 0.5 * (violation_fraction(k_in_0, g0) + violation_fraction(zero_in_k, gk))
    c1, _ = color_diff(k_in_0, ck[ik], g0, im0)
    c2, _ = color_diff(zero_in_k, c0[i0], gk, imk)
    return vis, 0.5 * (c1 + c2)

res = {l: [] for l in LAMBDAS}; res["true"] = []
for cd in sorted((REPO / "benchmarks/out/eval25/captures").iterdir()):
    cap = load_capture(cd)
    cells = [pipe.prepare_view(i, f) for i, f in enumerate(cap.frames)]
    preds, pnp, _ = pipe.select_poses(cells, pipe.predict_nocs([v.cell for v in cells]))
    cells_g = [gtp.prepare_view(i, f) for i, f in enumerate(cap.frames)]
    pg, pnpg, _ = gtp.select_poses(cells_g, gtp.predict_nocs([v.cell for v in cells_g]))
    R_true, _ = gtp.align_views(cells_g, pg, pnpg, cap.frames)
    ok = [i for i, r in enumerate(pnp) if r.ok]
    rng = np.random.default_rng(0)
    geoms, cols = {}, {}
    for i in ok:
        uv, X = correspondences(preds[i].nocs, preds[i].mask)
        geoms[i] = view_geometry(X, uv, pnp[i].T_camera_unit, cells[i][0].camera, preds[i].mask)
        cols[i] = cells[i][0].image[uv[:, 1].astype(int), uv[:, 0].astype(int)]
    C = {(i, j): curves(geoms[i], geoms[j], cols[i], cols[j], cells[i][0].image, cells[j][0].image, rng)
         for i in ok for j in ok if i < j}
    others = ok[1:]
    grids = np.array(list(itertools.product(range(STEPS), repeat=len(others)))) if others else np.zeros((1, 0), int)
    th = np.zeros((len(grids), len(ok)), int); th[:, 1:] = grids
    gt = cap.gt.T_camera_object
    for lam in LAMBDAS:
        score = np.zeros(len(grids))
        for a, i in enumerate(ok):
            for b, j in enumerate(ok):
                if i < j:
                    vis, col = C[(i, j)]
                    score += (vis + lam * col)[(th[:, a] - th[:, b]) % STEPS]
        bi = int(np.argmin(score))
        R = [np.eye(3)] * len(pnp)
        for a, i in enumerate(ok):
            R[i] = rot_z(angles[th[bi, a]])
        T = [(_rotate_object_frame(r, Ri).T_camera_unit if r.ok else None) for r, Ri in zip(pnp, R)]
        res[lam] += relative_rotation_errors(T, gt)
    T = [(_rotate_object_frame(r, Ri).T_camera_unit if r.ok else None) for r, Ri in zip(pnp, R_true)]
    res["true"] += relative_rotation_errors(T, gt)
for name, e in res.items():
    print(name, json.dumps({k: round(v, 3) for k, v in summarize_rotation(e).items()}))
