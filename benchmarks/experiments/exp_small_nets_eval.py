"""Experiment: the small networks on their own, on eval captures (not dataset samples): each
view-angle network's elevation / roll error and each pair-azimuth network's error on every ordered
pair of views (mirror-averaged, as the pipeline asks), each fed its own cell size from the full
frames; per object, the view-angle networks' median |elevation error| and mean error (bias).
An RGB-D network (``--depth``) gets the captures' depth as the pipeline cuts it.
``VAL_DATA=DIR``: also the view-angle networks on a dataset folder (e.g. ``runs/data_val``; cells of
the networks' size), with and without mirror averaging.
``ANGLES="DIR ..." PAIRS="DIR ..." CAPTURES="benchmarks/out/eval25 ..." python
.../exp_small_nets_eval.py`` (default: the shipped networks)."""
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from sparp_ros.capture import load_capture  # noqa: E402
from sparp_ros.conventions import camera_azimuth  # noqa: E402
from sparp_ros.geometry.view_angles import elevation_roll_deg  # noqa: E402
from sparp_ros.model.backend import DEFAULT_WEIGHTS  # noqa: E402
from sparp_ros.model.pair_azimuth import PairAzimuthEstimator  # noqa: E402
from sparp_ros.model.view_angles import ViewAngleEstimator  # noqa: E402
from sparp_ros.views import stack_cuts, stack_depth_cuts  # noqa: E402
from sparp_ros.pipeline import PipelineConfig, SparpPipeline  # noqa: E402
from sparp_ros.training.view_angles import angle_errors, load_view_samples, view_groups  # noqa: E402

angle_nets = {f: ViewAngleEstimator.from_folder(f)
              for f in os.environ.get("ANGLES", str(DEFAULT_WEIGHTS / "view_angles")).split()}
pair_nets = {f: PairAzimuthEstimator.from_folder(f)
             for f in os.environ.get("PAIRS", str(DEFAULT_WEIGHTS / "pair_azimuth")).split()}
pipe = SparpPipeline(PipelineConfig(backend="oracle_per_view", mesh=False, cell_size=32))  # cropping only
angle_err = {f: [] for f in angle_nets}
elevation_by_object = {f: {} for f in angle_nets}     # signed elevation errors per object
pair_err = {f: [] for f in pair_nets}
dirs = [d for root in os.environ.get("CAPTURES", "benchmarks/out/eval25").split()
        for d in sorted((REPO / root / "captures").iterdir())]
for cd in dirs:
    cap = load_capture(cd)
    frame = cap.gt.canonical_frame()
    T_canonical = [T @ frame.T_mesh_object for T in cap.gt.T_camera_object]
    true_angles = np.array([elevation_roll_deg(T) for T in T_canonical])
    true_az = np.degrees([camera_azimuth(T) for T in T_canonical])
    cells = [pipe.prepare_view(i, f) for i, f in enumerate(cap.frames)]
    for f, net in angle_nets.items():
        images, masks = stack_cuts(cells, net.cell)
        if net.uses_depth:      # an RGB-D network: the captures' depth too
            signed = net.predict_with_depth(images, masks, *stack_depth_cuts(cells, net.cell))
        else:
            signed = net.predict(images, masks)
        signed = signed - true_angles
        angle_err[f].append(np.abs(signed))
        elevation_by_object[f].setdefault(cd.name.rsplit("_s", 1)[0], []).extend(signed[:, 0])
    for f, net in pair_nets.items():
        images, masks = stack_cuts(cells, net.cell)
        probs = (net.predict_with_depth(images, masks, *stack_depth_cuts(cells, net.cell))
                 if net.uses_depth else net.predict(images, masks))
        n = len(cells)
        for i in range(n):
            for j in range(n):
                if i != j:        # [i, j]: the azimuth taking view j's frame onto view i's
                    centre = (np.argmax(probs[i, j]) + 0.5) * 360.0 / net.bins
                    pair_err[f].append(abs((centre - (true_az[j] - true_az[i]) + 180) % 360 - 180))
print(f"{len(dirs)} captures")
for f, e in angle_err.items():
    e = np.concatenate(e)
    print(f"view angles {f} ({angle_nets[f].cell} px): |elevation error| median {np.median(e[:, 0]):.2f}° "
          f"mean {e[:, 0].mean():.2f}°, |roll error| median {np.median(e[:, 1]):.2f}° ({len(e)} views)")
for f, e in pair_err.items():
    e = np.array(e)
    print(f"pair azimuth {f} ({pair_nets[f].cell} px): |error| median {np.median(e):.1f}°, within 30° "
          f"{np.mean(e < 30):.2f}, flipped (>150°) {np.mean(e > 150):.2f} ({len(e)} ordered pairs)")
for f, rows in elevation_by_object.items():
    print(f"view angles {f}, per object (median |elevation error|, mean error):")
    for name, e in sorted(rows.items(), key=lambda kv: -np.median(np.abs(kv[1]))):
        print(f"  {name[:50]:50s} {np.median(np.abs(e)):5.1f}° {np.mean(e):+6.1f}°")
if os.environ.get("VAL_DATA"):
    for f, net in angle_nets.items():
        val = load_view_samples([os.environ["VAL_DATA"]], with_depth=net.uses_depth)
        images, masks, labels, cell = val[:4]
        groups = view_groups([os.environ["VAL_DATA"]]) if net.context else None   # a set network
        for mirror in (False, True):
            e = angle_errors(net, images, masks, labels, mirror=mirror, groups=groups,
                             depth=val.depth, depth_valid=val.depth_valid)
            print(f"view angles {f} on {os.environ['VAL_DATA']} ({cell} px, mirror {mirror}): |elevation "
                  f"error| median {np.median(e[:, 0]):.2f}° mean {e[:, 0].mean():.2f}°, |roll error| "
                  f"median {np.median(e[:, 1]):.2f}° ({len(e)} views)")
