"""Sparse-view subsets of a real, calibrated capture (``../shared/data/real/middlebury_temple``: 16
views on a ring, 22.5° apart) as capture folders for ``sparp-ros eval``.

    python benchmarks/real_subsets.py --views 4 --subsets 8 --out benchmarks/out/real/temple
    sparp-ros eval benchmarks/out/real/temple --out benchmarks/out/real/temple_report \\
        --backend model --baseline pycolmap

Each subset takes ``views`` of the ring spread around it (start k, then every 16/views-th view,
each jittered by ±1 position with a fixed seed), so the views are sparse, as in SpaRP's setting.
The subset folders point at the original images (absolute paths in ``cameras.json``): nothing of
the real data is copied into the project.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
REAL = Path(os.environ.get("SPARP_SHARED", REPO.parent / "shared")) / "data" / "real"


def subsets(total: int, views: int, count: int, seed: int = 0) -> list[list[int]]:
    """``count`` index lists of ``views`` views spread around a ring of ``total``."""
    rng = np.random.default_rng(seed)
    step = total / views
    out = []
    for k in range(count):
        start = k * total // count
        picked = []
        for v in range(views):
            index = int(round(start + v * step + rng.integers(-1, 2))) % total
            while index in picked:
                index = (index + 1) % total
            picked.append(index)
        out.append(picked)
    return out


def write_subset(source: Path, indices: list[int], out: Path) -> Path:
    cameras = json.loads((source / "cameras.json").read_text())["frames"]
    gt = json.loads((source / "gt.json").read_text())
    frames = []
    for i in indices:
        entry = dict(cameras[i])
        for key in ("image", "mask", "depth"):
            if entry.get(key):
                entry[key] = str((source / entry[key]).resolve())
        frames.append(entry)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cameras.json").write_text(json.dumps({"frames": frames}, indent=1))
    (out / "gt.json").write_text(json.dumps({**gt, "frames": [gt["frames"][i] for i in indices],
                                             "subset": indices}, indent=1))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, default=REAL / "middlebury_temple")
    p.add_argument("--views", type=int, default=4)
    p.add_argument("--subsets", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "real" / "temple")
    args = p.parse_args()
    total = len(json.loads((args.source / "cameras.json").read_text())["frames"])
    for k, indices in enumerate(subsets(total, args.views, args.subsets, args.seed)):
        folder = write_subset(args.source, indices, args.out / f"{args.source.name}_{k:02d}")
        print(f"{folder}: views {indices}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
