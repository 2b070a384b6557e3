"""Experiment: what each part of a per-view pose costs the relative rotation. On eval captures,
image-only alignment with the shipped networks: the first azimuth hypothesis (what ships), the true
azimuths between the per-view frames, and the true azimuths plus the true camera elevation (and
roll) of every view; ``ALPHA=a`` keeps the fraction ``a`` of the elevation error instead (0.5: an
elevation twice as good). ``CAPTURES="benchmarks/out/eval25 ..." WEIGHTS=DIR python .../exp_floor.py``."""
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
from sparp_ros.geometry.view_angles import elevation_roll_deg, tilt_correction  # noqa: E402
from sparp_ros.pipeline import PipelineConfig, SparpPipeline  # noqa: E402

ALPHA = float(os.environ.get("ALPHA", 0))
pipe = SparpPipeline(PipelineConfig(align_with_camera_motion=False, backend="model", mesh=False,
                                    weights=os.environ.get("WEIGHTS")))
res = {"first": [], "true_azimuth": [], f"true_azimuth_elevation_alpha{ALPHA}": [],
       "true_azimuth_elevation_roll": []}
dirs = [d for root in os.environ.get("CAPTURES", "benchmarks/out/eval25").split()
        for d in sorted((REPO / root / "captures").iterdir())]
for cd in dirs:
    cap = load_capture(cd)
    r = pipe(cap.frames)
    gt = cap.gt.T_camera_object
    frame = cap.gt.canonical_frame()
    T_canonical = [T @ frame.T_mesh_object for T in gt]
    true_az = [camera_azimuth(T) for T in T_canonical]
    a0 = r.extra["azimuth_hypotheses"][0]["azimuths_deg"]
    own = {}                       # each view's pose in its own frame (the chosen azimuth undone)
    for k, v in enumerate(r.views):
        if v.ok and str(k) in a0:
            T = v.T_camera_object.copy()
            T[:3, :3] = T[:3, :3] @ rot_z(np.radians(a0[str(k)]))
            own[k] = T
    ref = min(own)

    def errors(azimuth, angles=None) -> list[float]:
        Rs = [None] * len(r.views)
        for i, T in own.items():
            R = T[:3, :3]
            if angles is not None:
                R = R @ tilt_correction(T, *angles(i, T)).T
            M = np.eye(4)
            M[:3, :3] = R @ rot_z(azimuth(i)).T
            Rs[i] = M
        return relative_rotation_errors(Rs, gt)

    def true_elevation(i, T):
        el, _ = elevation_roll_deg(T_canonical[i])
        el_own, roll_own = elevation_roll_deg(T)
        return el + ALPHA * (el_own - el), roll_own

    res["first"] += errors(lambda i: np.radians(a0[str(i)]))
    res["true_azimuth"] += errors(lambda i: true_az[i] - true_az[ref])
    res[f"true_azimuth_elevation_alpha{ALPHA}"] += errors(lambda i: true_az[i] - true_az[ref], true_elevation)
    res["true_azimuth_elevation_roll"] += errors(lambda i: true_az[i] - true_az[ref],
                                                 lambda i, T: elevation_roll_deg(T_canonical[i]))
print(f"{len(dirs)} captures")
for name, e in res.items():
    print(name, json.dumps({k: round(v, 3) for k, v in summarize_rotation(e).items()}))
