"""A first mesh from the fused canonical points of every view's NOCS map.

Every foreground NOCS pixel is a surface point in the (shared) object frame; its colour comes from
the image pixel. Normals are estimated from the points and oriented towards the camera that saw
them, then screened Poisson reconstruction gives a watertight surface, low-density vertices
(Poisson's extrapolation far from data) are trimmed, and vertex colours are carried over from the
nearest fused points. Silhouette carving with fixed views and texture atlases come with the model's
fixed-view outputs (later work).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class MeshError(RuntimeError):
    """Too few or degenerate points to build a surface."""


@dataclass
class FusedPoints:
    points: np.ndarray        # Nx3, unit-scale object frame
    colors: np.ndarray        # Nx3 uint8
    view_centers: np.ndarray  # Nx3 camera centre (object frame) of the view each point came from


def fuse_points(points: list[np.ndarray], colors: list[np.ndarray], view_centers: list[np.ndarray],
                max_points: int = 60000, seed: int = 0) -> FusedPoints:
    """Concatenate per-view points (subsampled to ``max_points`` in total)."""
    P = np.concatenate(points) if points else np.zeros((0, 3))
    C = np.concatenate(colors) if colors else np.zeros((0, 3), np.uint8)
    V = np.concatenate([np.repeat(c[None], len(p), 0) for p, c in zip(points, view_centers)]) \
        if points else np.zeros((0, 3))
    if len(P) > max_points:
        idx = np.random.default_rng(seed).choice(len(P), max_points, replace=False)
        P, C, V = P[idx], C[idx], V[idx]
    return FusedPoints(P, C.astype(np.uint8), V)


def poisson_mesh(fused: FusedPoints, depth: int = 7, density_quantile: float = 0.05,
                 voxel: float = 0.005, face_budget: int = 20000):
    """Screened Poisson surface of the fused points, as a ``trimesh.Trimesh`` with vertex colours
    (unit-scale object frame)."""
    import open3d as o3d
    import trimesh

    if len(fused.points) < 100:
        raise MeshError(f"only {len(fused.points)} surface points; need at least 100")
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(fused.points))
    pcd.colors = o3d.utility.Vector3dVector(fused.colors / 255.0)
    # Normals from each point's view direction orientation; a voxel grid first to even density.
    pcd_n = pcd.voxel_down_sample(voxel)
    pcd_n.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=4 * voxel, max_nn=30))
    down = np.asarray(pcd_n.points)
    normals = np.asarray(pcd_n.normals)
    centers = fused.view_centers[_nearest(fused.points, down)[1]]
    flip = np.einsum("ij,ij->i", normals, centers - down) < 0
    normals[flip] *= -1
    pcd_n.normals = o3d.utility.Vector3dVector(normals)
    mesh, densities = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(
        pcd_n, depth=depth, scale=1.1, linear_fit=True)
    densities = np.asarray(densities)
    if len(densities) == 0:
        raise MeshError("Poisson reconstruction produced no surface")
    mesh.remove_vertices_by_mask(densities < np.quantile(densities, density_quantile))
    # Trim surface extrapolated beyond the observed points (Poisson closes open scans).
    lo, hi = fused.points.min(0) - 2 * voxel, fused.points.max(0) + 2 * voxel
    mesh = mesh.crop(o3d.geometry.AxisAlignedBoundingBox(lo, hi))
    if len(mesh.triangles) > face_budget:
        mesh = mesh.simplify_quadric_decimation(face_budget)
    mesh.remove_unreferenced_vertices()
    V = np.asarray(mesh.vertices)
    F = np.asarray(mesh.triangles)
    if len(F) == 0:
        raise MeshError("surface empty after trimming")
    _, nn = _nearest(fused.points, V)
    colors = np.concatenate([fused.colors[nn], np.full((len(V), 1), 255, np.uint8)], axis=1)
    return trimesh.Trimesh(vertices=V, faces=F, vertex_colors=colors, process=False)


def _nearest(reference: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy.spatial import cKDTree
    return cKDTree(reference).query(queries, k=1)
