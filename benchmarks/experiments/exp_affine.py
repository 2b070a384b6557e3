"""Where does the per-view NOCS error come from? For each view: PnP rotation error of the raw
prediction, and after correcting the prediction towards the truth by (a) per-axis scale+offset
(extent/centre of the hidden object), (b) a similarity, (c) a full affine fit."""
import sys, numpy as np
sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parents[2]))
from sparp_ros.model.diffusion import SparpDiffusionPipeline, split_nocs_tiles
from sparp_ros.training.dataset import SparpDataset, split_nocs
from sparp_ros.camera import PinholeCamera
from sparp_ros.conventions import rotation_angle_deg
from sparp_ros.geometry.azimuth import rot_z
from sparp_ros.geometry.pnp import solve_pnp_nocs
from sparp_ros.model.tiling import untile
w, data = sys.argv[1], sys.argv[2]
pipe = SparpDiffusionPipeline.from_pretrained(w)
ds = SparpDataset(data)
rows = []
def err(nocs, mask, K, R_gt):
    S = nocs.shape[0]
    r = solve_pnp_nocs(np.clip(nocs, 0, 1).astype(np.float32), mask, PinholeCamera(S, S, K))
    return rotation_angle_deg(r.T_camera_unit[:3, :3] @ R_gt.T) if r.ok else 180.0
for i in range(min(int(sys.argv[3]) if len(sys.argv) > 3 else 60, len(ds))):
    item = ds[i]; n = int(item["num_views"])
    out = pipe(item["cond"], item["cond_mask"], n, "nocs_self", seed=i)[0]
    gt = split_nocs_tiles(item["nocs_self"], n)
    for k, ((p, pm), (g, gm)) in enumerate(zip(split_nocs_tiles(out, n), gt)):
        K = item["K"][k].numpy().astype(np.float64)
        R_gt = item["T_camera_object"][k].numpy()[:3, :3].astype(np.float64) @ rot_z(float(item["azimuth_self"][k]))
        m = pm & gm
        if m.sum() < 30: continue
        P, G = p[m].astype(np.float64), g[m].astype(np.float64)
        raw = err(p, pm, K, R_gt)
        # (a) per-axis scale + offset
        q = p.copy().astype(np.float64)
        for a in range(3):
            A = np.c_[P[:, a], np.ones(len(P))]; s, o = np.linalg.lstsq(A, G[:, a], rcond=None)[0]
            q[..., a] = s * p[..., a] + o
        axis = err(q, pm, K, R_gt)
        # (c) full affine
        A = np.c_[P, np.ones(len(P))]; M = np.linalg.lstsq(A, G, rcond=None)[0]
        qa = (np.c_[p.reshape(-1, 3), np.ones(p.size // 3)] @ M).reshape(p.shape)
        aff = err(qa, pm, K, R_gt)
        gt_e = err(g, gm, K, R_gt)
        rows.append((raw, axis, aff, gt_e, float(np.abs(P - G).mean())))
r = np.array(rows)
for j, name in enumerate(["raw", "axis scale+offset fixed", "affine fixed", "gt nocs", "mean |nocs err|"]):
    print(f"{name:26s} median {np.median(r[:, j]):6.2f}  acc15 {np.mean(r[:, j] < 15):.2f}  acc30 {np.mean(r[:, j] < 30):.2f}")
print("n views", len(r))
