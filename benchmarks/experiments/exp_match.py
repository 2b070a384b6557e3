"""Experiment: relative azimuth between per-view NOCS frames from SIFT matches vs visibility search."""
import sys, time, json
from pathlib import Path
import cv2, numpy as np
REPO = __import__("pathlib").Path(__file__).resolve().parents[2]; sys.path.insert(0, str(REPO))
from sparp_ros.capture import load_capture
from sparp_ros.pipeline import SparpPipeline, PipelineConfig, _rotate_object_frame
from sparp_ros.segmentation import crop_box_from_mask, crop_image
from sparp_ros.conventions import rot_z, nocs_to_object
from sparp_ros.evaluation.metrics import relative_rotation_errors, summarize_rotation

MS = int(sys.argv[2]) if len(sys.argv) > 2 else 192
backend = sys.argv[1] if len(sys.argv) > 1 else "model"
pipe = SparpPipeline(PipelineConfig(align_with_camera_motion=False, backend=backend))
sift = cv2.SIFT_create(nfeatures=1500, contrastThreshold=0.02)

def feats(frame):
    box = crop_box_from_mask(frame.mask, pipe.config.crop_margin)
    img = crop_image(frame.image, box, MS)
    m = crop_image(frame.mask.astype(np.uint8), box, MS, nearest=True)
    m = cv2.dilate(m, np.ones((5, 5), np.uint8))
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    kp, des = sift.detectAndCompute(g, m)
    pts = np.array([k.pt for k in kp], np.float64).reshape(-1, 2)
    return pts, des

def match(fa, fb, ratio=0.8):
    (pa, da), (pb, db) = fa, fb
    if da is None or db is None or len(da) < 2 or len(db) < 2:
        return np.zeros((0, 2)), np.zeros((0, 2))
    bf = cv2.BFMatcher(cv2.NORM_L2)
    ab = bf.knnMatch(da, db, k=2)
    ba = {m[0].queryIdx: m[0].trainIdx for m in bf.knnMatch(db, da, k=2) if len(m) == 2 and m[0].distance < ratio * m[1].distance}
    keep = [(m[0].queryIdx, m[0].trainIdx) for m in ab if len(m) == 2 and m[0].distance < ratio * m[1].distance and ba.get(m[0].trainIdx) == m[0].queryIdx]
    if not keep:
        return np.zeros((0, 2)), np.zeros((0, 2))
    ia, ib = np.array(keep).T
    return pa[ia], pb[ib]

def lookup(pred, uv_ms, cell):
    uv = (uv_ms + 0.5) * cell / MS - 0.5
    u = np.clip(np.round(uv[:, 0]).astype(int), 0, cell - 1)
    v = np.clip(np.round(uv[:, 1]).astype(int), 0, cell - 1)
    ok = pred.mask[v, u]
    return nocs_to_object(pred.nocs[v, u]), ok

def azimuth_from_matches(a, b, tol=0.08):
    """b ≈ Rz(θ) a; 1-point RANSAC over all matches, closed-form refit on inliers."""
    if len(a) < 3:
        return None, 0
    th = np.arctan2(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0], a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1])
    valid = (np.linalg.norm(a[:, :2], axis=1) > 0.05) & (np.linalg.norm(b[:, :2], axis=1) > 0.05)
    best, best_in = None, 0
    for t in th[valid]:
        r = np.linalg.norm(a @ rot_z(t).T - b, axis=1)
        n = int((r < tol).sum())
        if n > best_in:
            best, best_in = t, n
    if best is None:
        return None, 0
    inl = np.linalg.norm(a @ rot_z(best).T - b, axis=1) < tol
    ai, bi = a[inl], b[inl]
    t = np.arctan2(np.sum(ai[:, 0] * bi[:, 1] - ai[:, 1] * bi[:, 0]), np.sum(ai[:, 0] * bi[:, 0] + ai[:, 1] * bi[:, 1]))
    return float(t), int(inl.sum())

caps = sorted((REPO / "benchmarks/out/eval25/captures").iterdir())
res = {"vis": [], "match": [], "combo": []}
stats = []
t0 = time.time()
for cd in caps:
    cap = load_capture(cd)
    frames = cap.frames
    cells = [pipe.prepare_view(i, f) for i, f in enumerate(frames)]
    hyps = pipe.predict_nocs([v.cell for v in cells])
    preds, pnp, _ = pipe.select_poses(cells, hyps)
    R_vis, _ = pipe.align_views(cells, preds, pnp, frames)
    cell = pipe.cell_size
    F = [feats(f) for f in frames]
    ref = next(i for i, r in enumerate(pnp) if r.ok)
    R_match = [np.eye(3)] * len(frames); R_combo = list(R_vis)
    for k in range(len(frames)):
        if k == ref or not pnp[k].ok: continue
        pr, pk = match(F[ref], F[k])
        b, okb = lookup(preds[ref], pr, cell); a, oka = lookup(preds[k], pk, cell)
        ok = oka & okb
        th, n = azimuth_from_matches(a[ok], b[ok])
        stats.append((cd.name[:20], k, len(pr), int(ok.sum()), n))
        if th is not None:
            R_match[k] = rot_z(th)
            if n >= 6: R_combo[k] = rot_z(th)
    gt = cap.gt.T_camera_object
    for name, R in (("vis", R_vis), ("match", R_match), ("combo", R_combo)):
        T = [(_rotate_object_frame(r, Ri).T_camera_unit if r.ok else None) for r, Ri in zip(pnp, R)]
        res[name] += relative_rotation_errors(T, gt)
print("time", time.time() - t0)
for s in stats: print(*s)
for name, e in res.items():
    print(name, json.dumps(summarize_rotation(e)))
