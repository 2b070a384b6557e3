"""What the model's starting poses give the RGB-D registration: how their rotation errors split
into a turn about the object's up axis and the rest, how far off their object centres are, and
the same pipeline run with each view's centre replaced by the true one (an upper bound of what a
better centre estimate could give; nothing else changes).

    python benchmarks/model_starts.py benchmarks/out/eval25n/captures

For every pair of views, the relative rotation of the model's first hypothesis against the truth:
the error's angle and its twist about the true up axis (the mesh frame's z; swing-twist split),
summed up over the pairs more than 15° off. Then it runs ``model`` (RGB-D, no TF) twice on every
capture: as shipped, and with the translation of
every azimuth hypothesis' pose set to the true object centre seen from that view (the centre of
the true mesh's box, ``gt.extra["canonical"]["center"]``, which is where the NOCS frame's origin
lies). Prints the median centre error (a fraction of the object's size) and the share of views
beyond the coarse ICP gate (``RegistrationParams.coarse_distance``), then for both runs the median
relative rotation error, Acc@15, Acc@30 and the mean posed-mesh F-score at 5 %.

Why: the registration only refines the model's poses; a pair whose start is a wrong heading, or
whose two centres are further apart than ICP's coarse gate, fails whatever ICP does. A pair's
ICP starts from the two views' centres; when they are off by more than its coarse
gate together, it cannot converge whatever the rotation, and the pair is refused or placed wrong.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def main(folder: str) -> int:
    import sparp_ros.pipeline as pipeline
    from sparp_ros.capture import load_capture
    from sparp_ros.evaluation.metrics import mesh_metrics, relative_rotation_errors
    from sparp_ros.evaluation.run import expand_capture_dirs
    from sparp_ros.geometry.registration import RegistrationParams

    shipped_measure = pipeline.measure
    state: dict = {"true_centres": False, "errors": [], "starts": []}

    def measure(frames, hypotheses, *args, **kwargs):
        capture = state["capture"]
        centre = np.append(np.asarray(capture.gt.extra["canonical"]["center"], float), 1.0)
        size = float(capture.gt.extra["canonical"]["diagonal"])
        true = [(np.asarray(T, float) @ centre)[:3] for T in capture.gt.T_camera_object]
        if not state["true_centres"]:
            state["starts"] += _start_errors(hypotheses[0], capture.gt.T_camera_object)
            state["errors"] += [float(np.linalg.norm(T[:3, 3] - t)) / size
                                for T, t in zip(hypotheses[0], true) if T is not None]
            return shipped_measure(frames, hypotheses, *args, **kwargs)
        moved = []
        for poses in hypotheses:
            out = []
            for T, t in zip(poses, true):
                if T is not None:
                    T = np.array(T, float)
                    T[:3, 3] = t
                out.append(T)
            moved.append(out)
        return shipped_measure(frames, moved, *args, **kwargs)

    pipeline.measure = measure
    rows: dict[bool, tuple[list[float], list[float]]] = {False: ([], []), True: ([], [])}
    for d in expand_capture_dirs([Path(folder)]):
        capture = load_capture(d)
        state["capture"] = capture
        for true_centres in (False, True):
            state["true_centres"] = true_centres
            recon = pipeline.reconstruct_capture(capture, backend="model", align_with_camera_motion=False)
            errors = relative_rotation_errors([v.T_camera_object for v in recon.views],
                                              capture.gt.T_camera_object)
            rows[true_centres][0].extend(errors)
            rows[true_centres][1].append((mesh_metrics(recon, capture) or {}).get("fscore", np.nan))
    starts = np.asarray(state["starts"]).reshape(-1, 2)
    off = starts[starts[:, 0] > 15.0]
    print(f"model's first hypothesis: {len(off)} of {len(starts)} pairs more than 15° off; of their "
          f"error, the twist about up is {np.median(off[:, 1] / off[:, 0]):.2f} (median share), "
          f"{np.mean(off[:, 1] > 15.0):.2f} of them have more than 15° of twist" if len(off) else
          f"model's first hypothesis: no pair of {len(starts)} more than 15° off")
    centre = np.asarray(state["errors"])
    gate = RegistrationParams.coarse_distance
    print(f"model's object centre: median error {np.median(centre):.3f} × the object's size, "
          f"{np.mean(centre > gate):.2f} of {centre.size} views beyond the coarse ICP gate ({gate})")
    for true_centres, (rotation, fscore) in rows.items():
        e = np.asarray(rotation)
        print(f"{'true centres ' if true_centres else 'as shipped   '}: rotation median {np.median(e):.2f}°, "
              f"Acc@15 {np.mean(e < 15):.3f}, Acc@30 {np.mean(e < 30):.3f}, "
              f"F@5 % {np.nanmean(fscore):.3f} ({len(fscore)} captures)")
    return 0


def _start_errors(poses, truth) -> list[tuple[float, float]]:
    """(error angle, its twist about the true up axis), degrees, per pair of posed views."""
    from scipy.spatial.transform import Rotation

    from sparp_ros.conventions import rotation_angle_deg
    out = []
    for i in range(len(poses)):
        for j in range(i + 1, len(poses)):
            if poses[i] is None or poses[j] is None:
                continue
            est = np.asarray(poses[i], float)[:3, :3] @ np.asarray(poses[j], float)[:3, :3].T
            true = np.asarray(truth[i], float)[:3, :3] @ np.asarray(truth[j], float)[:3, :3].T
            error = true.T @ est                          # in view j's camera frame
            up = np.asarray(truth[j], float)[:3, :3] @ np.array([0.0, 0.0, 1.0])
            x, y, z, w = Rotation.from_matrix(error).as_quat()
            along = float(np.dot([x, y, z], up))
            twist = float(np.degrees(2.0 * np.arctan2(abs(along), abs(w))))
            out.append((rotation_angle_deg(error), twist))
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/out/eval25n/captures"))
