"""Error against the number of training objects and against steps (issue 21's curve), from the
runs of ``scripts/data_curve.sh`` (the shipped denoiser fine-tuned on the realism data of the
first N training scans, one schedule for every N).

    python benchmarks/data_curve.py runs/curve_objects_40 runs/curve_objects_80 ... \
        [--val-data runs/data_real32_val] [--items 50] [--seeds 0 1]

Per run: the training hook's validation every 50 steps (its log: the first 32 validation items,
seed 0), then the run's last EMA snapshot and the shipped denoiser (step 0) on ``--items``
validation items with every seed in ``--seeds`` (a second seed shows how much of a difference
is the sampler's noise). Validation items: realism renders of the 25 shared objects, never
trained on; per-view rotation error after PnP (``training.validate.view_rotation_errors``).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "sparp_ros" / "model" / "weights" / "tiny"


def _summary(errors: list[float]) -> str:
    e = np.asarray(errors)
    return f"{np.median(e):.1f}° / {np.mean(e < 15):.2f} / {np.mean(e < 30):.2f}"


def _log_curve(run: Path) -> dict[int, dict]:
    rows = {}
    for line in (run / "log.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "val" in row:
            rows[int(row["step"])] = row["val"]
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--val-data", default=str(REPO / "runs" / "data_real32_val"))
    p.add_argument("--items", type=int, default=50)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = p.parse_args()
    import torch

    from sparp_ros.model.diffusion import SparpDiffusionPipeline
    from sparp_ros.model.unet import SparpDenoiser
    from sparp_ros.training.dataset import SparpDataset
    from sparp_ros.training.validate import view_rotation_errors

    torch.set_num_threads(1)
    val = SparpDataset(args.val_data, domains=("nocs_self",))
    pipe = SparpDiffusionPipeline.from_pretrained(SHIPPED)

    def measure() -> str:
        return " | ".join(_summary(view_rotation_errors(pipe, val, items=args.items, seed=1000 * s))
                          for s in args.seeds)

    seeds = " | ".join(f"seed {s}: median / Acc@15 / Acc@30" for s in args.seeds)
    print(f"validation: {min(args.items, len(val))} items of {args.val_data}")
    print(f"| training objects | steps | {seeds} |")
    print("|---|---|" + "---|" * len(args.seeds))
    print(f"| shipped (69 plain) | 0 | {measure()} |", flush=True)
    curves = {}
    for run in sorted(args.runs, key=lambda r: int(re.sub(r"\D", "", r.name) or 0)):
        snaps = sorted((run / "snapshots").glob("step_*"))
        if not snaps:
            print(f"{run}: no snapshots yet", file=sys.stderr)
            continue
        step = int(snaps[-1].name.split("_")[1])
        pipe.denoiser = SparpDenoiser.from_pretrained(snaps[-1])
        objects = json.loads((run / "train_config.json").read_text())["args"].get("objects") or "all"
        print(f"| {objects} | {step} | {measure()} |", flush=True)
        curves[objects] = _log_curve(run)
    print("\nthe training hook's validation (32 items, seed 0), median per-view error by step:")
    steps = sorted({s for c in curves.values() for s in c})
    print("| training objects | " + " | ".join(str(s) for s in steps) + " |")
    print("|---|" + "---|" * len(steps))
    for objects, c in curves.items():
        print(f"| {objects} | " + " | ".join(f"{c[s]['nocs_self_median_deg']:.1f}°" if s in c else "–"
                                            for s in steps) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
