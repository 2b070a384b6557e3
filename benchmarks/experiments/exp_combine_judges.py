"""Experiment: ways to combine the joint azimuth search's two judges — the visibility score and the
pair-azimuth network's cost (−log p). The pipeline runs once per capture (image-only alignment) and
its search inputs are recorded; each rule is then replayed on them: weights on the network, the
network or visibility alone, a per-pair weight from the network's confidence (mean − min of its
cost curve), re-ranking the kept hypotheses by one judge, bins interpolated linearly between their
centres, probabilities smoothed over neighbouring bins before the cost. Relative rotation of the chosen
(and best of the kept) hypothesis.
``CAPTURES="benchmarks/out/eval25 ..." PAIR=DIR PAIR_ENSEMBLE="DIR DIR" WEIGHTS=0.05,0.1,0.2,0.4 W=0.1
python .../exp_combine_judges.py`` (PAIR: another pair network; PAIR_ENSEMBLE: the mean of several
networks' probabilities; WEIGHTS: the network weights tried; W: the weight of the other rules;
``ALIGN_DEPTH=1``: the visibility score tests the captures' measured depth; ``CACHE=FILE``: the
recorded inputs are saved there, and read from there when it exists; ``SPREADS=0.5,1``: the spreads
tried at weight W; ``SUPPORT=0.5,1 [SUPPORT_TOL=0.03 SUPPORT_ONLY=1]``: visibility − λ × the
fraction of points landing on the other view's surface + W × network; ``DEPTH_TOL=0.03``: the visibility score's depth tolerance;
``ANGLES_DEPTH=DIR``, ``PAIR_DEPTH=DIR``: these RGB-D view-angle / pair networks instead of the
weights' own ("": none); ``SMOOTH_WEIGHTS=0.1,0.2 SPREAD=1``: weights tried with that spread)."""
import os
import pickle
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
import sparp_ros.geometry.azimuth as az  # noqa: E402
import sparp_ros.pipeline as pl  # noqa: E402
from sparp_ros.capture import load_capture  # noqa: E402
from sparp_ros.conventions import rot_z  # noqa: E402
from sparp_ros.evaluation.metrics import relative_rotation_errors, summarize_rotation  # noqa: E402
from sparp_ros.model.pair_azimuth import PairAzimuthEstimator  # noqa: E402

STEPS = pl.AZIMUTH_STEPS
recorded = {}
search = az.joint_azimuths


def recording_search(views, **kw):
    recorded["views"], recorded["pair_costs"] = views, kw.get("pair_costs")
    return search(views, **kw)


pl.joint_azimuths = recording_search
pipe = pl.SparpPipeline(pl.PipelineConfig(align_with_camera_motion=False, backend="model", mesh=False,
                                          pair_azimuth_weight=0.1,
                                          align_with_depth=os.environ.get("ALIGN_DEPTH", "0") == "1"))
nets = [PairAzimuthEstimator.from_folder(f) for f in
        (os.environ.get("PAIR_ENSEMBLE") or os.environ.get("PAIR") or "").split()]
if nets:
    class MeanOfNetworks:
        cell = nets[0].cell

        def predict(self, images, masks):
            return np.mean([n.predict(images, masks) for n in nets], axis=0)
    pipe.pair_azimuth_estimator = MeanOfNetworks()
for env, attribute in (("ANGLES_DEPTH", "view_angle_depth_estimator"), ("PAIR_DEPTH", "pair_azimuth_depth_estimator")):
    if os.environ.get(env) is not None:     # another RGB-D network than the weights' own ("": none)
        from sparp_ros.model.pair_azimuth import PairAzimuthEstimator as Pair  # noqa: E402
        from sparp_ros.model.view_angles import ViewAngleEstimator  # noqa: E402
        load = ViewAngleEstimator if env == "ANGLES_DEPTH" else Pair
        setattr(pipe, attribute, load.from_folder(os.environ[env]) if os.environ[env] else None)

captures = []
CACHE = os.environ.get("CACHE")          # a file: the recorded search inputs, reused when it exists
dirs = [d for root in os.environ.get("CAPTURES", "benchmarks/out/eval25").split()
        for d in sorted((REPO / root / "captures").iterdir())]
if CACHE and Path(CACHE).exists():
    with open(CACHE, "rb") as fh:
        captures = pickle.load(fh)
    dirs = []
for d in dirs:
    recorded.clear()
    cap = load_capture(d)
    r = pipe(cap.frames)
    if recorded.get("pair_costs") is None:
        continue
    a0 = r.extra["azimuth_hypotheses"][0]["azimuths_deg"]
    order = [int(k) for k in a0]
    own = {i: r.views[i].T_camera_object[:3, :3] @ rot_z(np.radians(a0[str(i)])) for i in order}
    rng = np.random.default_rng(0)             # the search's own sampling of the points
    views = recorded["views"]
    vis = {(i, j): az.pair_scores(views[i], views[j], STEPS, 600, rng)
           for i in range(len(views)) for j in range(i + 1, len(views))}
    captures.append(dict(order=order, own=own, n=len(r.views), gt=cap.gt.T_camera_object, views=views,
                         vis=vis, net=recorded["pair_costs"]))
if CACHE and dirs:
    with open(CACHE, "wb") as fh:
        pickle.dump(captures, fh)


def errors(c, azimuths):
    Rs = [None] * c["n"]
    for k, i in enumerate(c["order"]):
        M = np.eye(4)
        M[:3, :3] = c["own"][i] @ rot_z(azimuths[k]).T
        Rs[i] = M
    return relative_rotation_errors(Rs, c["gt"])


def run_search(c, S):
    curves = iter([S[k] for k in sorted(S)])       # joint_azimuths asks for the pairs in this order
    az.pair_scores = lambda *a, **kw: next(curves)
    try:
        return search(c["views"], steps=STEPS, top_k=3)
    finally:
        az.pair_scores = pair_scores


pair_scores = az.pair_scores
if os.environ.get("DEPTH_TOL"):       # the visibility score's depth tolerance (diagonals), replayed
    az.violation_fraction.__defaults__ = (float(os.environ["DEPTH_TOL"]),)
    for c in captures:
        rng = np.random.default_rng(0)
        v = c["views"]
        c["vis"] = {(i, j): az.pair_scores(v[i], v[j], STEPS, 600, rng)
                    for i in range(len(v)) for j in range(i + 1, len(v))}


def interpolated(curve):
    centres = np.arange(STEPS // 72, STEPS, STEPS // 36)      # bin centres of 36 bins
    x = np.concatenate([centres - STEPS, centres, centres + STEPS])
    return np.interp(np.arange(STEPS), x, np.tile(curve[centres], 3))


def smoothed(curve, spread_bins=1.0):
    """The cost of probabilities spread over neighbouring bins (a circular Gaussian of
    ``spread_bins``): a network one bin off still gives the true azimuth some probability."""
    probs = np.exp(-curve)                     # ≈ p of the bin (each grid step carries its bin's p)
    offsets = np.arange(-STEPS // 2, STEPS // 2)
    kernel = np.exp(-0.5 * (offsets / (spread_bins * STEPS / 36)) ** 2)
    kernel = np.roll(kernel / kernel.sum(), -STEPS // 2)
    spread = np.real(np.fft.ifft(np.fft.fft(probs) * np.fft.fft(kernel)))
    return -np.log(np.maximum(spread, 1e-4))


def rule(w_vis, w_net, confidence=False, interp=False, smooth=0.0):
    def costs(c):
        out = {}
        for k, v in c["vis"].items():
            net = interpolated(c["net"][k]) if interp else c["net"][k]
            net = smoothed(net, smooth) if smooth else net
            weight = (net.mean() - net.min()) if confidence else 1.0
            out[k] = w_vis * v + w_net * weight * net
        return out
    return costs


def evaluate(name, costs, rerank=None):
    chosen, best = [], []
    for c in captures:
        hyps = run_search(c, costs(c))
        h = hyps[0]
        if rerank is not None:
            R = rerank(c)
            h = hyps[int(np.argmin([az.total_pair_cost(np.asarray(x.azimuths) / (2 * np.pi) * STEPS, R, STEPS)
                                    for x in hyps]))]
        chosen += errors(c, h.azimuths)
        best += min((errors(c, x.azimuths) for x in hyps), key=np.median)
    s, b = summarize_rotation(chosen), summarize_rotation(best)
    print(f"{name:38s} {s['median_rotation_error_deg']:5.1f}° / Acc@15 {s['acc15']:.2f} / Acc@30 "
          f"{s['acc30']:.2f}   best of 3 {b['median_rotation_error_deg']:5.1f}° / {b['acc30']:.2f}", flush=True)


W = float(os.environ.get("W", 0.1))
SPREAD = float(os.environ.get("SPREAD", 1.0))        # the spread of the SMOOTH_WEIGHTS rules


def support_fraction(points_in_target, target, tolerance):
    """Fraction of points that land on the target view's surface (inside its silhouette, within
    ``tolerance`` diagonals of its z-buffer): positive evidence of overlap, which the violation
    test does not reward (a point hidden behind the surface is free there)."""
    z, in_silhouette, surface = az.project_into(points_in_target, target)
    return (in_silhouette & np.isfinite(surface) & (np.abs(z - surface) < tolerance)).mean(axis=-1)


def support_curves(c, tolerance, max_points=600):
    rng = np.random.default_rng(0)
    views = c["views"]
    Rs = np.stack([rot_z(a) for a in np.arange(STEPS) * (2 * np.pi / STEPS)])
    out = {}
    for i in range(len(views)):
        for j in range(i + 1, len(views)):
            pv, po = views[i].points, views[j].points
            pv = pv if len(pv) <= max_points else pv[rng.choice(len(pv), max_points, replace=False)]
            po = po if len(po) <= max_points else po[rng.choice(len(po), max_points, replace=False)]
            v_in_o = np.einsum("aij,nj->ani", Rs, pv)
            o_in_v = np.einsum("aji,nj->ani", Rs, po)
            out[i, j] = 0.5 * (support_fraction(v_in_o, views[j], tolerance)
                               + support_fraction(o_in_v, views[i], tolerance))
    return out


print(f"{len(captures)} captures")
if os.environ.get("SUPPORT"):          # visibility − λ·support + W·network, λ in SUPPORT
    tol = float(os.environ.get("SUPPORT_TOL", 0.03))
    for c in captures:
        c["support"] = support_curves(c, tol)
    for lam in (float(x) for x in os.environ["SUPPORT"].split(",")):
        def with_support(c, lam=lam):
            return {k: v - lam * c["support"][k] + W * c["net"][k] for k, v in c["vis"].items()}
        evaluate(f"visibility − {lam} support + {W} network", with_support)
    if os.environ.get("SUPPORT_ONLY"):
        sys.exit(0)
for w in (float(x) for x in os.environ.get("WEIGHTS", "0.05,0.1,0.2,0.4").split(",")):
    evaluate(f"visibility + {w} network", rule(1, w))
evaluate("network alone", rule(0, 1))
evaluate("visibility alone", rule(1, 0))
evaluate(f"+{W} network, re-ranked by network", rule(1, W), rerank=rule(0, 1))
evaluate(f"+{W} network, re-ranked by visibility", rule(1, W), rerank=rule(1, 0))
for w in (W / 2, W, 2 * W):
    evaluate(f"visibility + {w} confidence x network", rule(1, w, confidence=True))
evaluate(f"visibility + {W} network, interpolated", rule(1, W, interp=True))
for spread in (float(x) for x in os.environ.get("SPREADS", "0.5,1.0").split(",")):
    evaluate(f"visibility + {W} network, smoothed {spread} bin", rule(1, W, smooth=spread))
for w in (float(x) for x in os.environ.get("SMOOTH_WEIGHTS", "").split(",") if x):
    evaluate(f"visibility + {w} network, smoothed {SPREAD} bin", rule(1, w, smooth=SPREAD))
