"""What a robot is given: the mesh placed by the published keyframe's pose, in that keyframe's
camera, scored against the truth, for the confirmed-view rule and for the most recent keyframe.

    python benchmarks/published_view.py benchmarks/out/eval25n/captures [--backend model]

Runs the pipeline (RGB-D, no TF, as ``sparp-ros eval --backend model``) on every capture and
prints, for each capture where the two rules pick different keyframes, every view's pose source
and the posed-mesh F-score at 5 % of the object's size (``metrics.mesh_metrics``'s
``fscore_published``) under each rule; then the means over all captures.

* confirmed-view rule (``Reconstruction.published_view``, what the node publishes): the most
  recent keyframe whose pose a measurement confirmed (registered, placed, TF);
* most-recent rule: the most recent keyframe with any pose (the node's rule before pose sources
  existed), scored by the same metric with every view's source set to ``model``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    from sparp_ros.capture import load_capture
    from sparp_ros.evaluation.metrics import mesh_metrics
    from sparp_ros.evaluation.run import expand_capture_dirs
    from sparp_ros.pipeline import reconstruct_capture

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("captures", nargs="?", default="benchmarks/out/eval25n/captures")
    parser.add_argument("--backend", default="model")
    args = parser.parse_args(argv)
    confirmed_rule, latest_rule, changed = [], [], 0
    for d in expand_capture_dirs([Path(args.captures)]):
        capture = load_capture(d)
        recon = reconstruct_capture(capture, backend=args.backend, align_with_camera_motion=False)
        metrics = mesh_metrics(recon, capture)
        if metrics is None:
            print(f"  {d.name}: no mesh metrics (no mesh or no metric ground truth)")
            continue
        sources = [v.pose_source if v.ok else "-" for v in recon.views]
        for v in recon.views:                  # nothing confirmed: the most recent posed view
            v.pose_source = "model"
        latest = mesh_metrics(recon, capture)
        confirmed_rule.append(metrics["fscore_published"])
        latest_rule.append(latest["fscore_published"])
        if metrics["published_view"] != latest["published_view"]:
            changed += 1
            print(f"  {d.name}: pose sources {sources}; published view {latest['published_view']}"
                  f" -> {metrics['published_view']}, F@5 % {latest['fscore_published']:.3f} -> "
                  f"{metrics['fscore_published']:.3f} (in the reference view {metrics['fscore']:.3f})")
    if not confirmed_rule:
        print("no capture with mesh metrics")
        return 1
    print(f"{len(confirmed_rule)} captures, the published view differs on {changed}; mean F@5 % "
          f"of the published mesh: most recent keyframe {np.mean(latest_rule):.3f}, most recent "
          f"confirmed keyframe {np.mean(confirmed_rule):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
