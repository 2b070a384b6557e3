"""Experiment: does test-time averaging help the pair-azimuth network? On every ordered pair of
views of eval captures: each network's error with its cells as the pipeline cuts them ("plain"),
averaged over zoomed cells (0.9, 1, 1.1 about the centre) or shifted ones (±3 px), and the mean of
all the networks given (an ensemble), each mirror-averaged as the pipeline asks.
``PAIRS="DIR ..." CAPTURES="benchmarks/out/eval25 ..." python .../exp_pair_tta.py``"""
import os
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from sparp_ros.capture import load_capture  # noqa: E402
from sparp_ros.conventions import camera_azimuth  # noqa: E402
from sparp_ros.model.pair_azimuth import PairAzimuthEstimator  # noqa: E402
from sparp_ros.views import stack_cuts  # noqa: E402
from sparp_ros.pipeline import PipelineConfig, SparpPipeline  # noqa: E402

nets = {f: PairAzimuthEstimator.from_folder(f) for f in os.environ["PAIRS"].split()}
pipe = SparpPipeline(PipelineConfig(backend="oracle_per_view", mesh=False, cell_size=32))


def zoom(images, masks, s, dx=0, dy=0):
    """The cells scaled by ``s`` about their centre and shifted by (dx, dy) pixels."""
    c = images.shape[1]
    M = np.array([[s, 0, (1 - s) * c / 2 + dx], [0, s, (1 - s) * c / 2 + dy]], np.float32)
    im = np.stack([cv2.warpAffine(i, M, (c, c), flags=cv2.INTER_LINEAR, borderValue=(255, 255, 255))
                   for i in images])
    mk = np.stack([cv2.warpAffine(m.astype(np.float32), M, (c, c), flags=cv2.INTER_LINEAR) > 0.5
                   for m in masks])
    return im, mk


variants = {"plain": [(1, 0, 0)], "zoom": [(1, 0, 0), (0.9, 0, 0), (1.1, 0, 0)],
            "shift": [(1, 0, 0), (1, 3, 0), (1, -3, 0), (1, 0, 3), (1, 0, -3)]}
err = {}
dirs = [d for root in os.environ.get("CAPTURES", "benchmarks/out/eval25").split()
        for d in sorted((REPO / root / "captures").iterdir())]
for cd in dirs:
    cap = load_capture(cd)
    frame = cap.gt.canonical_frame()
    T_can = [T @ frame.T_mesh_object for T in cap.gt.T_camera_object]
    true_az = np.degrees([camera_azimuth(T) for T in T_can])
    cells = [pipe.prepare_view(i, f) for i, f in enumerate(cap.frames)]
    allp = {}
    for f, net in nets.items():
        im, mk = stack_cuts(cells, net.cell)
        for v, ops in variants.items():
            allp[f, v] = np.mean([net.predict(*zoom(im, mk, *o)) for o in ops], axis=0)
    for v in variants:
        allp["ens", v] = np.mean([allp[f, v] for f in nets], axis=0)
    n = len(cells)
    for key, probs in allp.items():
        bins = probs.shape[-1]
        for i in range(n):
            for j in range(n):
                if i != j:
                    centre = (np.argmax(probs[i, j]) + 0.5) * 360.0 / bins
                    err.setdefault(key, []).append(
                        abs((centre - (true_az[j] - true_az[i]) + 180) % 360 - 180))
for k, e in err.items():
    e = np.array(e)
    print(k, f"median {np.median(e):.1f}°, within 30° {np.mean(e < 30):.3f}, flipped (>150°) "
             f"{np.mean(e > 150):.3f} ({len(e)} ordered pairs)")
