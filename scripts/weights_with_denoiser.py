"""A weights folder that is the shipped ``tiny`` model with another diffusion NOCS denoiser (e.g. a
training snapshot), for ``sparp-ros eval --weights``: the small networks, pipeline.json and the
scheduler are the shipped ones (symlinked), ``denoiser/`` is copied from DENOISER.

    python scripts/weights_with_denoiser.py runs/real_self/snapshots/step_0000100 runs/eval_weights/step100
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

SHIPPED = Path(__file__).resolve().parents[1] / "sparp_ros" / "model" / "weights" / "tiny"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    src, out = Path(argv[0]), Path(argv[1])
    if (src / "denoiser" / "config.json").is_file():          # a pipeline folder (RUN/final)
        src = src / "denoiser"
    if not (src / "config.json").is_file():
        print(f"{src}: not a denoiser folder (no config.json)", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    for item in SHIPPED.iterdir():
        if item.name in ("denoiser", "MODEL_CARD.md", "training_curve.png"):
            continue
        link = out / item.name
        if not link.exists():
            link.symlink_to(item.resolve())
    shutil.rmtree(out / "denoiser", ignore_errors=True)
    shutil.copytree(src, out / "denoiser")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
