"""Experiment: the view-angle network's elevation errors are per-object biases; can the visibility
score see a common elevation offset ``b`` of all views of a capture? At the true azimuths, every
view's frame is raised by b in ``ELEVATIONS`` (default −20…20° by 5°); the relative rotation is
measured at b = 0, at the b the visibility score prefers, and at the best b per capture (the
most a common-offset correction could give). ``ALIGN_DEPTH=1``: the visibility score tests the
captures' measured depth (``measured_view_geometry``) instead of the predicted shapes.
``CAPTURES="benchmarks/out/eval25 ..." python .../exp_elevation_offset.py``."""
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
import sparp_ros.pipeline as pl  # noqa: E402
from sparp_ros.capture import load_capture  # noqa: E402
from sparp_ros.conventions import camera_azimuth, rot_z  # noqa: E402
from sparp_ros.evaluation.metrics import relative_rotation_errors, summarize_rotation  # noqa: E402
from sparp_ros.geometry.azimuth import measured_view_geometry, pair_scores, view_geometry  # noqa: E402
from sparp_ros.geometry.view_angles import elevation_roll_deg, tilt_correction  # noqa: E402

recorded = []          # the arguments of the pipeline's view_geometry calls: each posed view's frame


def recording_view_geometry(*args):
    recorded.append(args)
    return view_geometry(*args)


def recording_measured_geometry(measured, uv, centre, R, scale, camera, mask):
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, centre / scale
    recorded.append((measured, uv, T, camera, mask, centre, scale))
    return measured_view_geometry(measured, uv, centre, R, scale, camera, mask)


DEPTH = os.environ.get("ALIGN_DEPTH", "0") == "1"
pl.view_geometry = recording_view_geometry
pl.measured_view_geometry = recording_measured_geometry
pipe = pl.SparpPipeline(pl.PipelineConfig(align_with_camera_motion=False, backend="model", mesh=False,
                                          align_with_depth=DEPTH))
offsets = np.array([float(b) for b in os.environ.get("ELEVATIONS", "-20,-15,-10,-5,0,5,10,15,20").split(",")])
res = {"b = 0": [], "b by visibility": [], "best b per capture": []}
picked = []
dirs = [d for root in os.environ.get("CAPTURES", "benchmarks/out/eval25").split()
        for d in sorted((REPO / root / "captures").iterdir())]
for cd in dirs:
    recorded.clear()
    cap = load_capture(cd)
    pipe(cap.frames)
    gt = cap.gt.T_camera_object
    if len(recorded) != len(cap.frames):      # a view without a pose: skip the capture
        continue
    frame = cap.gt.canonical_frame()
    true_az = [camera_azimuth(T @ frame.T_mesh_object) for T in gt]
    n = len(recorded)
    scores, errors = [], []
    for b in offsets:
        views, Rs = [], []
        for i, (X, uv, T, camera, mask, *measured) in enumerate(recorded):
            elevation, roll = elevation_roll_deg(T)
            Q = tilt_correction(T, elevation + b, roll)
            T_b = T.copy()
            T_b[:3, :3] = T[:3, :3] @ Q.T
            if measured:          # X: the measured camera-frame points; the object centre kept
                centre, scale = measured
                views.append(measured_view_geometry(X, uv, centre, T_b[:3, :3], scale, camera, mask))
            else:
                views.append(view_geometry(X @ Q.T, uv, T_b, camera, mask))
            M = np.eye(4)
            M[:3, :3] = T_b[:3, :3] @ rot_z(true_az[i] - true_az[0]).T
            Rs.append(M)
        rng = np.random.default_rng(0)
        score = 0.0
        for i in range(n):
            for j in range(i + 1, n):     # the search's convention: p_j = Rz(θ_i − θ_j) p_i
                a = np.degrees(true_az[i] - true_az[j]) % 360.0
                score += pair_scores(views[i], views[j], 360, 600, rng)[int(round(a)) % 360]
        scores.append(score)
        errors.append(relative_rotation_errors(Rs, gt))
    by_score = int(np.argmin(scores))
    best = int(np.argmin([np.median(e) for e in errors]))
    res["b = 0"] += errors[int(np.argmin(np.abs(offsets)))]
    res["b by visibility"] += errors[by_score]
    res["best b per capture"] += errors[best]
    picked.append((offsets[by_score], offsets[best]))
for name, e in res.items():
    s = summarize_rotation(e)
    print(f"{name}: {s['median_rotation_error_deg']:.1f}° / Acc@15 {s['acc15']:.2f} / Acc@30 {s['acc30']:.2f}")
p = np.array(picked)
print(f"visibility's b vs the best b: correlation {np.corrcoef(p[:, 0], p[:, 1])[0, 1]:.2f}, "
      f"mean |difference| {np.abs(p[:, 0] - p[:, 1]).mean():.1f}° ({len(p)} captures)")
