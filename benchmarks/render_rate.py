"""Renders per second at 320×320 (RGB + mask + depth + xyz) over the shared meshes.

Why: the data engine's throughput bounds how much training data a CPU-only machine can make, and
DESIGN.md §7 chose moderngl + EGL on a measured ~229 renders/s; this keeps that number honest.
Meshes are loaded and uploaded before timing (the renderer caches GPU buffers per mesh), so the
rate is draw + read-back only, with a fresh random pose per render.

    .venv/bin/python benchmarks/render_rate.py [--objects DIR] [--renders-per-object 40] [--fill 0.9]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from sparp_ros.camera import PinholeCamera
from sparp_ros.render import MeshRenderer, load_mesh
from sparp_ros.render.capture_renderer import look_at

SIZE = 320
SHARED = Path(os.environ.get("SPARP_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DEFAULT_OBJECTS = SHARED / "data" / "objects"


def random_poses(rng: np.random.Generator, bounds: np.ndarray, n: int, f: float,
                 fill: float) -> list[np.ndarray]:
    """Views from random directions at a distance where the bounding sphere spans ``fill`` of the
    image (as in SpaRP's object-centred 320 px cells)."""
    lo, hi = bounds.astype(np.float64)
    center, radius = (lo + hi) / 2, np.linalg.norm(hi - lo) / 2
    distance = 2 * f * radius / (fill * SIZE)
    poses = []
    for _ in range(n):
        az, el = rng.uniform(0, 2 * np.pi), np.radians(rng.uniform(-20, 50))
        d = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        poses.append(look_at(center + distance * d, center))
    return poses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=Path, default=DEFAULT_OBJECTS)
    parser.add_argument("--renders-per-object", type=int, default=40)
    parser.add_argument("--fill", type=float, default=0.9,
                        help="bounding-sphere diameter / image size")
    args = parser.parse_args()
    files = sorted(args.objects.glob("*.glb"))
    if not files:
        raise SystemExit(f"no .glb meshes in {args.objects}")
    f = 1.0 * SIZE
    camera = PinholeCamera(SIZE, SIZE, np.array([[f, 0, (SIZE - 1) / 2], [0, f, (SIZE - 1) / 2], [0, 0, 1]]))
    rng = np.random.default_rng(0)
    renderer = MeshRenderer()
    meshes = [load_mesh(p) for p in files]
    jobs = []
    for mesh in meshes:
        poses = random_poses(rng, mesh.bounds, args.renders_per_object, f, args.fill)
        renderer.render(mesh, camera, poses[0])                  # upload + warm-up, not timed
        jobs += [(mesh, T) for T in poses]
    order = rng.permutation(len(jobs))                          # interleave objects like a data loader
    pixels = 0
    start = time.perf_counter()
    for i in order:
        mesh, T = jobs[i]
        pixels += int(renderer.render(mesh, camera, T).mask.sum())
    elapsed = time.perf_counter() - start
    rate = len(jobs) / elapsed
    print(f"render_rate {SIZE}x{SIZE}: {rate:.0f} renders/s ({os.cpu_count()} cores) "
          f"[{len(files)} objects x {args.renders_per_object} renders, "
          f"mean object coverage {pixels / len(jobs) / SIZE ** 2:.0%}]")
    renderer.release()


if __name__ == "__main__":
    main()
