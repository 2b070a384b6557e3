"""Prompt segmentation (``segment_prompt.py``) on rendered tabletop scenes, against the true masks.

    python benchmarks/segmentation_prompt.py --scenes 20 --seed 1000

The scenes are those of ``segmentation_iou.py`` (scene i: seed ``--seed`` + i, 2–4 shared test
objects on a textured table, 4 views, stereo depth noise). Per true object one prompt, made as a
user would in the view that sees it best (view 0 unless it shows < 200 px there):

- ``point``: the 3D point of the object's most interior pixel (distance transform), from the
  noisy depth, in that view's camera frame (RViz "Publish Point" on the object);
- ``pixel``: that pixel;
- ``box``: the true mask's bounding box, 3 % larger on each side.

Each kind is run with depth and poses (``depth``), without depth but with poses (``rgb+poses``)
and with neither (``rgb``). Scores: object IoU (mean over the views where the object shows ≥ 200
px, ``evaluation/segmentation_metrics.py``; a prompt that raises counts 0), IoU in the prompt's
view, prompts refused; and per scene one point on the table (≥ 12 % of the short side from every
object) that must be refused (``PromptMissError``), as a 3D point with depth and a pixel without.
Prints one line per scene and configuration and a summary table; ``--json`` writes it.

Measured (2-core CPU shared with other jobs, default PromptSegmentationParams; seeds 1000–1019
were not used to tune anything except ``min_point_height_m``, lowered from 0.01 to 0.005 m after
scene 1013's lying scissors were refused at 8 mm, after which the ``depth point`` row was rerun
with ``--configs depth --kinds point``; the parameters were set on scene 4 of the tests and
seeds 500–509). 66 objects in 20 scenes:

| config | prompt | median / mean object IoU | median prompt-view IoU | refused |
|---|---|---|---|---|
| depth | point | 0.993 / 0.980 | 0.995 | 0 |
| depth | pixel | 0.993 / 0.980 | 0.995 | 0 |
| depth | box | 0.993 / 0.980 | 0.995 | 0 |
| rgb+poses | point | 0.896 / 0.716 | 0.963 | 1 |
| rgb+poses | pixel | 0.866 / 0.690 | 0.963 | 1 |
| rgb+poses | box | 0.958 / 0.820 | 0.997 | 0 |
| rgb | point | 0.558 / 0.541 | 0.963 | 1 |
| rgb | pixel | 0.558 / 0.538 | 0.963 | 1 |
| rgb | box | 0.670 / 0.657 | 0.997 | 0 |

A point on the table was refused in 20 of 20 scenes with depth and 19 of 20 without. With depth
the prompt only picks one of ``segment_depth``'s objects, so its limits are those (touching
objects are one). Without depth the prompt's own view is good (GrabCut); carrying the object to
the other views is the weak part: along the ray with poses it lost the hammer's handle in the
tests' scene (object IoU 0.55) and a lunch box whose point-grown mask took in a touching bus
(seed 500); without poses, by colour alone, another object or patch of background with the
object's colours often wins (mean object IoU 0.66 against 0.997 in the prompt's view).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from segmentation_iou import DEFAULT_OBJECTS, scene_meshes  # noqa: E402  (same scenes)

CONFIGS = ("depth", "rgb+poses", "rgb")
KINDS = ("point", "pixel", "box")
MIN_VISIBLE_PX = 200
TABLE_CLEARANCE = 0.12


def prompt_view(masks: list[np.ndarray]) -> int:
    """View 0 when the object shows there, else the view that sees most of it."""
    return 0 if masks[0].sum() >= MIN_VISIBLE_PX else int(np.argmax([m.sum() for m in masks]))


def table_pixel(ids: np.ndarray, depth: np.ndarray) -> tuple[int, int] | None:
    """A table pixel (depth, no object) at least TABLE_CLEARANCE of the short side from every
    object, the one nearest the objects' centre."""
    clear = cv2.distanceTransform((ids == 0).astype(np.uint8), cv2.DIST_L2, 5)
    ok = (clear >= TABLE_CLEARANCE * min(ids.shape)) & (depth > 0)
    if not ok.any():
        return None
    oy, ox = np.nonzero(ids > 0)
    ys, xs = np.nonzero(ok)
    j = int(np.argmin(np.hypot(xs - ox.mean(), ys - oy.mean())))
    return int(xs[j]), int(ys[j])


def run_prompts(frames, prompts, params) -> tuple[list, list[int]]:
    """segment_prompts, leaving out the prompts it refuses (one at a time): the results in
    prompt order (None for refused ones) and the refused indices."""
    from sparp_ros.segment_prompt import PromptMissError, segment_prompts
    alive = list(range(len(prompts)))
    refused: list[int] = []
    while alive:
        try:
            got = segment_prompts(frames, [prompts[i] for i in alive], params)
        except PromptMissError as exc:
            refused.append(alive.pop(exc.prompt))
            continue
        out = [None] * len(prompts)
        for i, o in zip(alive, got):
            out[i] = replace(o, id=i)
        return out, sorted(refused)
    return [None] * len(prompts), sorted(refused)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1000, help="scene i uses seed + i")
    ap.add_argument("--objects-dir", type=Path, default=DEFAULT_OBJECTS)
    ap.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    ap.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    ap.add_argument("--json", type=Path, help="write the summary and per-object scores here")
    args = ap.parse_args(argv)

    from sparp_ros.evaluation.segmentation_metrics import score_scene, simulated_prompt
    from sparp_ros.render.depth_noise import STEREO_DEFAULT
    from sparp_ros.render.scene import render_tabletop
    from sparp_ros.segment_prompt import (PixelPrompt, PointPrompt, PromptMissError,
                                          PromptSegmentationParams, segment_prompts)

    objects = sorted(args.objects_dir.glob("*.glb"))
    if not objects:
        print(f"error: no .glb meshes in {args.objects_dir}", file=sys.stderr)
        return 2
    params = PromptSegmentationParams()
    rows: list[dict] = []
    table = {c: {"refused": 0, "tried": 0} for c in ("depth", "rgb")}
    seconds = {(c, k): 0.0 for c in args.configs for k in args.kinds}
    for s in range(args.scenes):
        seed = args.seed + s
        scene = render_tabletop(scene_meshes(objects, seed, 2, 4), views=4, seed=seed,
                                depth_noise=STEREO_DEFAULT)
        full = scene.capture.frames
        variants = {"depth": full,
                    "rgb+poses": [replace(f, depth=None) for f in full],
                    "rgb": [replace(f, depth=None, T_world_camera=None) for f in full]}
        truth = {o.name: o.masks for o in scene.objects}
        views = [prompt_view(o.masks) for o in scene.objects]
        for config in args.configs:
            for kind in args.kinds:
                prompts = [simulated_prompt(kind, o.masks[v], full[v], v)
                           for o, v in zip(scene.objects, views)]
                t0 = time.perf_counter()
                got, refused = run_prompts(variants[config], prompts, params)
                seconds[(config, kind)] += time.perf_counter() - t0
                found = [o for o in got if o is not None]
                score = {o.truth_id: o for o in score_scene(truth, found).objects}
                line = []
                for k, (o, v) in enumerate(zip(scene.objects, views)):
                    m = got[k].masks[v] if got[k] is not None else None
                    inter = 0 if m is None else int(np.count_nonzero(m & o.masks[v]))
                    union = int(np.count_nonzero(o.masks[v] if m is None else m | o.masks[v]))
                    sc = score[o.name]
                    iou = 0.0 if got[k] is None or sc.predicted_id != k else sc.iou
                    rows.append({"seed": seed, "config": config, "kind": kind, "object": o.name,
                                 "iou": iou, "prompt_view_iou": inter / max(union, 1),
                                 "refused": k in refused})
                    line.append(f"{o.name[:14]} {iou:.2f}/{inter / max(union, 1):.2f}"
                                f"{' (refused)' if k in refused else ''}")
                print(f"scene {seed} {config:9s} {kind:5s} (object IoU / prompt-view IoU): "
                      + ", ".join(line), flush=True)
        # A point on the table must be refused.
        v = 0
        px = table_pixel(scene.ids[v], full[v].depth)
        if px is not None:
            f = full[v]
            p3 = f.camera.unproject(np.array([px], float), np.array([f.depth[px[1], px[0]]]))[0]
            for config, frames, prompt in (
                    ("depth", variants["depth"], PointPrompt(tuple(p3), v)),
                    ("rgb", variants["rgb"], PixelPrompt(*map(float, px), v))):
                if config == "rgb" and not {"rgb", "rgb+poses"} & set(args.configs):
                    continue
                if config == "depth" and "depth" not in args.configs:
                    continue
                table[config]["tried"] += 1
                try:
                    segment_prompts(frames, [prompt], params)
                except PromptMissError:
                    table[config]["refused"] += 1
    summary = []
    print(f"\n{'config':10s} {'prompt':6s} {'objects':>7s} {'median IoU':>10s} {'mean IoU':>8s} "
          f"{'median prompt-view IoU':>22s} {'refused':>7s} {'s/scene':>7s}")
    for config in args.configs:
        for kind in args.kinds:
            r = [x for x in rows if x["config"] == config and x["kind"] == kind]
            ious = np.array([x["iou"] for x in r])
            pv = np.array([x["prompt_view_iou"] for x in r])
            entry = {"config": config, "kind": kind, "objects": len(r),
                     "median_iou": float(np.median(ious)), "mean_iou": float(np.mean(ious)),
                     "median_prompt_view_iou": float(np.median(pv)),
                     "refused": int(sum(x["refused"] for x in r)),
                     "seconds_per_scene": seconds[(config, kind)] / max(args.scenes, 1)}
            summary.append(entry)
            print(f"{config:10s} {kind:6s} {len(r):7d} {entry['median_iou']:10.3f} "
                  f"{entry['mean_iou']:8.3f} {entry['median_prompt_view_iou']:22.3f} "
                  f"{entry['refused']:7d} {entry['seconds_per_scene']:7.1f}")
    for config, t in table.items():
        if t["tried"]:
            print(f"point on the table refused ({config}): {t['refused']} of {t['tried']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "summary": summary,
                                         "table_point": table, "objects": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
