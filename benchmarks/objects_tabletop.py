"""Every object on the table: segmentation + one pipeline call per object (``sparp_ros.objects``,
what the node runs on a trigger with ``segmentation: depth``) on rendered tabletop scenes.

    python benchmarks/objects_tabletop.py --scenes 10 --seed 2000          # with TF poses
    python benchmarks/objects_tabletop.py --scenes 10 --seed 2000 --no-poses

Scene i (seed ``--seed`` + i) puts 2–4 of the shared test objects on a textured table, 4 views,
stereo depth noise (``benchmarks/segmentation_iou.py``'s scenes). For each true object: was it
reconstructed (a reconstructed object is matched to the true object whose box centre is nearest
its frame origin, within half the true object's size), the distance of its frame origin from the
centre of the true mesh's resting box (``geometry.fusion.resting_box`` about the table's up axis,
which the object frame's origin estimates), its scale error (the measured size against that
box's diagonal), and per-scene time. Prints one line per scene and
the summary; ``--json`` writes it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import trimesh

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from segmentation_iou import DEFAULT_OBJECTS, scene_meshes  # noqa: E402


def true_objects(scene) -> list[tuple[str, np.ndarray, float]]:
    """(name, centre, diagonal) of every object's resting box in the world (the table's z up):
    what the object frame's origin and the measured size estimate (``fusion.resting_box``)."""
    from sparp_ros.geometry.fusion import resting_box

    out = []
    for o in scene.objects:
        mesh = trimesh.load(o.mesh_path, force="mesh")
        v = mesh.vertices @ o.T_world_object[:3, :3].T + o.T_world_object[:3, 3]
        centre, extent = resting_box(v)
        out.append((o.name, centre, float(np.linalg.norm(extent))))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=2000, help="scene i uses seed + i")
    ap.add_argument("--objects-dir", type=Path, default=DEFAULT_OBJECTS)
    ap.add_argument("--no-poses", action="store_true", help="keyframes without T_world_camera")
    ap.add_argument("--max-objects", type=int, default=8)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)

    from sparp_ros.objects import order_objects, reconstruct_objects
    from sparp_ros.segment_select import segment_objects
    from sparp_ros.pipeline import PipelineConfig, SparpPipeline
    from sparp_ros.render.depth_noise import STEREO_DEFAULT
    from sparp_ros.render.scene import render_tabletop

    objects = sorted(a.objects_dir.glob("*.glb"))
    pipeline = SparpPipeline(PipelineConfig(backend="model", mesh=False, isolate_mesh=False))
    rows, per_scene = [], []
    for i in range(a.scenes):
        seed = a.seed + i
        scene = render_tabletop(scene_meshes(objects, seed, 2, 4), views=4, seed=seed,
                                depth_noise=STEREO_DEFAULT)
        frames = scene.capture.frames
        if a.no_poses:
            frames = [replace(f, T_world_camera=None) for f in frames]
        truth = true_objects(scene)
        t0 = time.perf_counter()
        found = segment_objects(frames, "depth")
        chosen, _ = order_objects(found, a.max_objects)
        results = reconstruct_objects(pipeline, frames, chosen, errors=(Exception,),
                                      log=lambda line: None)
        seconds = time.perf_counter() - t0
        matched = {}
        for r in results:
            if not r.ok:
                continue
            centre = r.centre
            if not r.centre_in_world:      # in the camera of the object's first posed view
                first = next(k for k, v in enumerate(r.reconstruction.views) if v.ok)
                T = scene.capture.frames[r.views[first]].T_world_camera
                centre = T[:3, :3] @ centre + T[:3, 3]
            d = [float(np.linalg.norm(centre - c)) for _, c, _ in truth]
            k = int(np.argmin(d))
            if d[k] < 0.5 * truth[k][2] and (k not in matched or d[k] < matched[k][0]):
                matched[k] = (d[k], abs(r.size_m / truth[k][2] - 1.0))
        for k, (name, _, diag) in enumerate(truth):
            hit = matched.get(k)
            rows.append({"scene": seed, "object": name, "reconstructed": hit is not None,
                         "centre_error_m": hit[0] if hit else None,
                         "scale_error": hit[1] if hit else None})
        per_scene.append({"scene": seed, "objects": len(truth), "segmented": len(found),
                          "reconstructed": len(matched), "seconds": seconds})
        print(f"scene {seed}: {len(truth)} objects, {len(found)} segmented, {len(matched)} "
              f"reconstructed and matched, {seconds:.1f} s; centre errors (mm) "
              + ", ".join(f"{1000 * m[0]:.0f}" for m in matched.values()), flush=True)
    hits = [r for r in rows if r["reconstructed"]]
    summary = {
        "scenes": a.scenes, "seed": a.seed, "poses": not a.no_poses, "objects": len(rows),
        "reconstructed_fraction": len(hits) / max(len(rows), 1),
        "centre_error_mm_median": 1000 * float(np.median([r["centre_error_m"] for r in hits])) if hits else None,
        "centre_error_mm_p90": 1000 * float(np.percentile([r["centre_error_m"] for r in hits], 90)) if hits else None,
        "scale_error_median": float(np.median([r["scale_error"] for r in hits])) if hits else None,
        "seconds_per_scene_median": float(np.median([s["seconds"] for s in per_scene])),
        "seconds_per_object_median": float(np.median([s["seconds"] / max(s["reconstructed"], 1)
                                                      for s in per_scene])),
    }
    print(json.dumps(summary, indent=1))
    if a.json:
        a.json.write_text(json.dumps({"summary": summary, "objects": rows, "scenes": per_scene},
                                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
