"""Experiment: the image-only azimuth search on dataset samples of the 25 unseen objects
(``runs/data_val``, not the eval captures, so settings chosen here are not fitted to the eval).
Per non-reference view: |chosen − true| azimuth between its own frame and view 0's.
``WEIGHTS=DIR VIEW_ANGLES=0|1 PAIR_WEIGHT=w DEPTH_TOL=0.03 SIL_PX=1 N=120 python .../exp_azimuth_val.py [DATA]``
(PAIR_WEIGHT: weight of the pair-azimuth network's cost in the search, 0 = visibility alone).
Data with larger cells than the model's (``--cell-size 64`` datasets, for 64 px small networks):
the model gets them area-averaged to its cell size, the small networks get them as they are.
``ANGLES=DIR PAIR=DIR``: other small networks than the ones beside the weights."""
import glob
import os
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
import sparp_ros.geometry.azimuth as az  # noqa: E402
from sparp_ros.camera import PinholeCamera  # noqa: E402
from sparp_ros.model.backend import CellView  # noqa: E402
from sparp_ros.views import view_from_cuts  # noqa: E402
from sparp_ros.pipeline import PipelineConfig, SparpPipeline  # noqa: E402

data = sys.argv[1] if len(sys.argv) > 1 else str(REPO / "runs/data_val")
N = int(os.environ.get("N", 120))
depth_tol, sil_px = float(os.environ.get("DEPTH_TOL", 0.03)), int(os.environ.get("SIL_PX", 1))
_vf, _vg = az.violation_fraction, az.view_geometry
az.violation_fraction = lambda p, t, depth_tolerance=depth_tol: _vf(p, t, depth_tolerance)
az.view_geometry = lambda *a, tolerance_px=sil_px: _vg(*a, tolerance_px=tolerance_px)
import sparp_ros.pipeline as pl  # noqa: E402
pl.view_geometry = az.view_geometry
pipe = SparpPipeline(PipelineConfig(align_with_camera_motion=False, backend="model", mesh=False,
                                    weights=os.environ.get("WEIGHTS"),
                                    view_angles=os.environ.get("VIEW_ANGLES", "1") == "1",
                                    pair_azimuth_weight=float(os.environ.get("PAIR_WEIGHT", 0))))
if os.environ.get("ANGLES"):
    from sparp_ros.model.view_angles import ViewAngleEstimator  # noqa: E402
    pipe.view_angle_estimator = ViewAngleEstimator.from_folder(os.environ["ANGLES"])
if os.environ.get("PAIR"):
    from sparp_ros.model.pair_azimuth import PairAzimuthEstimator  # noqa: E402
    pipe.pair_azimuth_estimator = PairAzimuthEstimator.from_folder(os.environ["PAIR"])


def model_cell(image: np.ndarray, mask: np.ndarray, K: np.ndarray, size: int):
    """A dataset cell brought to the model's cell size (area-averaged; pixel-centre convention)."""
    s = size / image.shape[0]
    if s == 1:
        return image, mask, K
    K = K.copy()
    K[:2, :2] *= s
    K[:2, 2] = (K[:2, 2] + 0.5) * s - 0.5
    return (cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA),
            cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) > 0.5, K)


errs, done = [], 0
for shard in sorted(glob.glob(f"{data}/shard_*.npz")):
    d = np.load(shard)
    for i in range(len(d["num_views"])):
        n = int(d["num_views"][i])
        if n < 2:
            continue
        S = pipe.cell_size
        cells = []
        for v in range(n):
            image, mask, K = model_cell(d["images"][i, v], d["masks"][i, v] > 0, d["K"][i, v].astype(float), S)
            native = d["images"][i, v], d["masks"][i, v] > 0      # the small networks' cut
            cells.append(view_from_cuts(v, CellView(image, mask, PinholeCamera(K=K, width=S, height=S)),
                                        {native[0].shape[0]: native}))
        preds, pnp, _ = pipe.select_poses(cells, pipe.predict_nocs([v.cell for v in cells]))
        if pipe.view_angle_estimator is not None:
            preds, pnp, _ = pipe.correct_tilt(cells, preds, pnp)
        if not pnp[0].ok:
            continue
        R, _ = pipe.align_views(cells, preds, pnp, [None] * n)
        for v in range(1, n):
            if pnp[v].ok:
                a = np.degrees(np.arctan2(R[v][1, 0], R[v][0, 0]))
                errs.append(abs((a - np.degrees(d["azimuth_self"][i, v]) + 180) % 360 - 180))
        done += 1
        if done >= N:
            break
    if done >= N:
        break
e = np.array(errs)
print(f"depth_tol {depth_tol} sil_px {sil_px} view_angles {pipe.view_angle_estimator is not None} "
      f"pair_weight {pipe.config.pair_azimuth_weight}: "
      f"{done} samples, {len(e)} views: |azimuth error| median {np.median(e):.1f}°, <15° {np.mean(e < 15):.2f}, "
      f"<30° {np.mean(e < 30):.2f}, >150° {np.mean(e > 150):.2f}")
