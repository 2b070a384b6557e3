"""Procedural training objects: simple shapes with random colour patterns, seeded.

They widen the training distribution beyond the scanned meshes (sizes, proportions, patterns) at
no download cost. A shape is a box, cylinder, ellipsoid, cone or capsule, or two of them stuck
together (asymmetric, like a mug or a bottle with a cap); the pattern is a 3D checker, stripes or
smooth noise in vertex colours, evaluated on the surface after subdividing it so that colour varies
within a face. The result is stored like the shared meshes: +Z up, resting on z = 0, metres.
"""
from __future__ import annotations

import numpy as np
import trimesh

from .mesh_io import TexturedMesh

SIZE_RANGE_M = (0.04, 0.30)         # longest side
ASPECT_RANGE = (0.25, 1.0)          # other sides relative to the longest
SUBDIVISIONS_PER_SIZE = 24          # max edge = size / this
SHAPES = ("box", "cylinder", "ellipsoid", "cone", "capsule")


def procedural_name(index: int) -> str:
    return f"procedural_{index:05d}"


def procedural_mesh(seed: int, index: int) -> TexturedMesh:
    """Object ``index`` of the procedural family ``seed`` (same arguments, same mesh)."""
    rng = np.random.default_rng([int(seed), 0x5EED, int(index)])
    size = float(rng.uniform(*SIZE_RANGE_M))
    parts = [_primitive(rng, size)]
    if rng.random() < 0.4:                                  # a second part: asymmetry
        extra = _primitive(rng, size * float(rng.uniform(0.25, 0.6)))
        lo, hi = parts[0].bounds
        anchor = np.array([rng.uniform(lo[0], hi[0]), rng.uniform(lo[1], hi[1]),
                           rng.uniform(lo[2], hi[2])])
        extra.apply_translation(anchor - extra.bounds.mean(axis=0))
        parts.append(extra)
    mesh = trimesh.util.concatenate(parts)
    mesh.apply_transform(trimesh.transformations.rotation_matrix(rng.uniform(0, 2 * np.pi),
                                                                 [0, 0, 1]))
    mesh.apply_translation([0.0, 0.0, -mesh.bounds[0, 2]])  # rest on z = 0
    mesh.unmerge_vertices()                                 # sharp edges: normals per face group
    v, f = trimesh.remesh.subdivide_to_size(mesh.vertices, mesh.faces,
                                            max_edge=size / SUBDIVISIONS_PER_SIZE, max_iter=12)
    colors = _pattern(rng, v, size)
    return TexturedMesh(v, f, vertex_colors=colors, name=procedural_name(index))


def _primitive(rng: np.random.Generator, size: float) -> trimesh.Trimesh:
    kind = SHAPES[int(rng.integers(len(SHAPES)))]
    a, b = rng.uniform(*ASPECT_RANGE, size=2)
    dims = size * np.array([1.0, a, b])
    rng.shuffle(dims)
    if kind == "box":
        return trimesh.creation.box(extents=dims)
    if kind == "ellipsoid":
        m = trimesh.creation.icosphere(subdivisions=3)
        m.apply_scale(dims / 2.0)
        return m
    radius = float(min(dims[0], dims[1])) / 2.0
    height = float(dims[2])
    if kind == "cylinder":
        return trimesh.creation.cylinder(radius=radius, height=height, sections=48)
    if kind == "cone":
        return trimesh.creation.cone(radius=radius, height=height, sections=48)
    return trimesh.creation.capsule(radius=radius, height=max(height - 2 * radius, 1e-3), count=[24, 24])


def _pattern(rng: np.random.Generator, v: np.ndarray, size: float) -> np.ndarray:
    """Nx3 uint8 colours: 3D checker, stripes or smooth noise between random colours."""
    palette = rng.uniform(0, 255, size=(3, 3))
    R = trimesh.transformations.random_rotation_matrix(rng.random(3))[:3, :3]
    p = (v - v.mean(axis=0)) @ R.T / size
    kind = int(rng.integers(3))
    if kind == 0:                                            # checker
        cells = np.floor(p * rng.uniform(2.0, 8.0)).astype(int)
        t = (cells.sum(axis=1) % 2).astype(float)
    elif kind == 1:                                          # stripes with a third accent
        t = 0.5 + 0.5 * np.sign(np.sin(p[:, 0] * rng.uniform(6.0, 30.0)))
    else:                                                    # smooth noise: random plane waves
        t = np.zeros(len(v))
        for _ in range(4):
            k = rng.normal(size=3) * rng.uniform(2.0, 12.0)
            t += np.sin(p @ k + rng.uniform(0, 2 * np.pi))
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-9)
    accent = np.clip(np.sin(p[:, 2] * rng.uniform(3.0, 10.0)) - 0.8, 0.0, None) * 5.0
    col = palette[0] * (1 - t[:, None]) + palette[1] * t[:, None]
    col = col * (1 - accent[:, None]) + palette[2] * accent[:, None]
    col += rng.normal(0.0, rng.uniform(0.0, 8.0), size=col.shape)
    return np.clip(col, 0, 255).astype(np.uint8)
