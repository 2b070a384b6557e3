"""Copy a saved pipeline folder, storing its floating-point weights as float16.

Why: a float16 file is half the size (the shipped ``tiny`` model fits the 60 MB budget with room,
and a GPU run's weights fit the device's 16 MiB-per-file return limit), while loading stays exact
enough: ``SparpDenoiser.from_pretrained`` copies the stored tensors into its float32 parameters, so
inference runs in float32 as before. Only ``*.safetensors`` files are read and written.

    python scripts/half_weights.py RUN/final OUT_FOLDER
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def halve(src: Path, dst: Path) -> list[Path]:
    """Copy ``src`` to ``dst`` with every safetensors file's float tensors cast to float16."""
    if dst.exists():
        raise SystemExit(f"{dst} exists; choose a new folder")
    shutil.copytree(src, dst)
    written = []
    for path in sorted(dst.rglob("*.safetensors")):
        state = load_file(str(path))
        half = {k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous() for k, v in state.items()}
        save_file(half, str(path), metadata={"format": "pt", "stored_dtype": "float16"})
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    for path in halve(Path(argv[0]), Path(argv[1])):
        print(f"{path}: {path.stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
