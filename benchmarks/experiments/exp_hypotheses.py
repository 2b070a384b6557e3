"""Experiment: how much of the 4-view relative-rotation error is the choice among the azimuth
hypotheses. On the 25 eval captures, image-only alignment: the first hypothesis (what ships), the
best of the kept hypotheses (an ideal selector), and the true azimuths between the per-view frames
(a perfect search). ``ALIGN_DEPTH=1``: the search tests the captures' measured depth instead of the
predicted shapes (RGB-D alignment); ``REFINE=J``: depth ICP refinement after the scale with J joint
passes (``REFINE_ROT=deg``: its largest rotation change); ``ANGLES_ENSEMBLE="DIR DIR"``: the mean of
these view-angle networks (same cell size) instead of the weights' own; ``ANGLES_DEPTH=DIR``: this
RGB-D view-angle network for views with depth instead of the weights' own (``""``: none);
``PAIR_DEPTH=DIR``: likewise the RGB-D pair-azimuth network. ``WEIGHTS=DIR VIEW_ANGLES=0|1 PAIR_WEIGHT=w HYPOTHESES=K
CAPTURES="benchmarks/out/eval25 benchmarks/out/eval25_s1" VIEWS=n python .../exp_hypotheses.py`` (CAPTURES:
eval_shared.py output folders, default the seed-0 eval captures; VIEWS: the first n views of each)."""
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from sparp_ros.capture import load_capture  # noqa: E402
from sparp_ros.conventions import camera_azimuth, rot_z  # noqa: E402
from sparp_ros.evaluation.metrics import relative_rotation_errors, summarize_rotation  # noqa: E402
from sparp_ros.pipeline import PipelineConfig, SparpPipeline  # noqa: E402

if os.environ.get("ANGLES_ENSEMBLE"):     # the mean of several view-angle networks' answers
    from sparp_ros.model.view_angles import ViewAngleEstimator  # noqa: E402
    angle_nets = [ViewAngleEstimator.from_folder(f) for f in os.environ["ANGLES_ENSEMBLE"].split()]

    class MeanOfViewAngleNetworks:
        cell = angle_nets[0].cell

        def predict(self, images, masks, *args, **kwargs):
            return np.mean([n.predict(images, masks, *args, **kwargs) for n in angle_nets], axis=0)

K = int(os.environ.get("HYPOTHESES", 3))
VIEWS = int(os.environ.get("VIEWS", 0)) or None
pipe = SparpPipeline(PipelineConfig(align_with_camera_motion=False, backend="model", mesh=False,
                                    weights=os.environ.get("WEIGHTS"), azimuth_hypotheses=K,
                                    view_angles=os.environ.get("VIEW_ANGLES", "1") == "1",
                                    pair_azimuth_weight=float(os.environ.get("PAIR_WEIGHT", 0)),
                                    align_with_depth=os.environ.get("ALIGN_DEPTH", "0") == "1",
                                    refine="REFINE" in os.environ,
                                    refine_joint_passes=int(os.environ.get("REFINE", 0)),
                                    refine_max_rotation_deg=float(os.environ.get("REFINE_ROT", 10))))
if os.environ.get("ANGLES_ENSEMBLE"):
    pipe.view_angle_estimator = MeanOfViewAngleNetworks()     # the pipeline's public attribute
if os.environ.get("ANGLES_DEPTH") is not None:   # another RGB-D view-angle network ("": none)
    from sparp_ros.model.view_angles import ViewAngleEstimator  # noqa: E402
    pipe.view_angle_depth_estimator = (ViewAngleEstimator.from_folder(os.environ["ANGLES_DEPTH"])
                                       if os.environ["ANGLES_DEPTH"] else None)
if os.environ.get("PAIR_DEPTH") is not None:     # another RGB-D pair-azimuth network ("": none)
    from sparp_ros.model.pair_azimuth import PairAzimuthEstimator  # noqa: E402
    pipe.pair_azimuth_depth_estimator = (PairAzimuthEstimator.from_folder(os.environ["PAIR_DEPTH"])
                                         if os.environ["PAIR_DEPTH"] else None)
res = {"first": [], f"best_of_{K}": [], "true_azimuth": []}
rank_of_best = []
az_err, az_true = [], []     # chosen − true azimuth of each non-reference view (first hypothesis)
capture_dirs = [d for root in os.environ.get("CAPTURES", "benchmarks/out/eval25").split()
                for d in sorted((REPO / root / "captures").iterdir())]
print(f"{len(capture_dirs)} captures")
for cd in capture_dirs:
    cap = load_capture(cd)
    r = pipe(cap.frames[:VIEWS])
    gt = cap.gt.T_camera_object[:VIEWS]
    frame = cap.gt.canonical_frame()
    true_az = [camera_azimuth(T @ frame.T_mesh_object) for T in gt]
    hyps = r.extra["azimuth_hypotheses"]
    a0 = hyps[0]["azimuths_deg"]
    own = {int(i): v.T_camera_object[:3, :3] @ rot_z(np.radians(a0[i]))
           for i, v in ((str(k), v) for k, v in enumerate(r.views)) if v.ok and i in a0}

    def errors(az: dict) -> list[float]:
        Rs = [None] * len(r.views)
        for i, R in own.items():
            T = np.eye(4)
            T[:3, :3] = R @ rot_z(az[i]).T
            Rs[i] = T
        return relative_rotation_errors(Rs, gt)
    per_h = [errors({int(i): np.radians(a) for i, a in h["azimuths_deg"].items()}) for h in hyps]
    ref = min(own)
    res["first"] += per_h[0]
    b = int(np.argmin([np.median(e) for e in per_h]))
    rank_of_best.append(b)
    res[f"best_of_{K}"] += per_h[b]
    res["true_azimuth"] += errors({i: true_az[i] - true_az[ref] for i in own})
    for i in own:
        if i != ref:
            t = np.degrees(true_az[i] - true_az[ref])
            az_err.append((a0[str(i)] - t + 180) % 360 - 180)
            az_true.append((t + 180) % 360 - 180)
for name, e in res.items():
    print(name, json.dumps({k: round(v, 3) for k, v in summarize_rotation(e).items()}))
print("rank of the best hypothesis per capture:", np.bincount(rank_of_best, minlength=K).tolist())
e = np.abs(np.array(az_err))
print("azimuth error of the first hypothesis, per view: median %.1f°; <15° %.2f, <30° %.2f, 150-180° %.2f"
      % (np.median(e), np.mean(e < 15), np.mean(e < 30), np.mean(e > 150)))
print("histogram of |error| in 30° bins:", np.histogram(e, bins=np.arange(0, 181, 30))[0].tolist())
print("true |relative azimuth| of those views: median %.1f°" % np.median(np.abs(az_true)))
