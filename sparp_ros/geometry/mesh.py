"""A first mesh from the fused canonical points of every view's NOCS map.

Every foreground NOCS pixel is a surface point in the (shared) object frame; its colour comes from
the image pixel. Normals are estimated from the points and oriented towards the camera that saw
them, then screened Poisson reconstruction gives a watertight surface, low-density vertices
(Poisson's extrapolation far from data) are trimmed, and vertex colours are carried over from the
nearest fused points. ``color_vertices_from_views`` then re-colours every vertex from the input
views that see it (projection, a depth test against the view's own surface, a foreshortening
weight) so colours are averaged over views instead of copied from one noisy point. Silhouette
carving with fixed views and texture atlases come with the model's fixed-view outputs (later work).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..camera import PinholeCamera


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


COLOR_DEPTH_TOLERANCE = 0.02
"""Depth test of ``color_vertices_from_views`` in the unit-scale object frame: 2 % of the
bounding-box diagonal (results barely change between 1 % and 4 %, measured on 4 shared objects)."""


@dataclass
class ColorView:
    """One view for colouring a mesh: its image and where the object's visible surface is.

    ``depth`` is the z (camera frame, the mesh's units) of the surface this view saw at each pixel,
    0 where it saw none (e.g. from its NOCS points at the view's pose, or a depth image); it is the
    z-buffer a vertex must lie on to be visible in this view.
    """

    image: np.ndarray              # HxWx3 uint8 RGB
    camera: PinholeCamera          # intrinsics of ``image`` (distortion applied in projection)
    T_camera_object: np.ndarray    # 4x4, mesh (object) frame -> camera
    depth: np.ndarray              # HxW float, 0 = unknown


def surface_depth(points_object: np.ndarray, pixels: np.ndarray, T_camera_object: np.ndarray,
                  height: int, width: int) -> np.ndarray:
    """HxW z-buffer of a view from its own surface points: ``points_object[k]`` was seen at pixel
    ``pixels[k]`` (u, v); each pixel keeps the nearest z (0 where no point)."""
    z = points_object @ T_camera_object[:3, :3].T[:, 2] + T_camera_object[2, 3]
    u = np.rint(pixels[:, 0]).astype(int)
    v = np.rint(pixels[:, 1]).astype(int)
    ok = (z > 0) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    depth = np.full((height, width), np.inf)
    np.minimum.at(depth, (v[ok], u[ok]), z[ok])
    depth[~np.isfinite(depth)] = 0.0
    return depth


def color_vertices_from_views(vertices: np.ndarray, normals: np.ndarray | None,
                              views: Sequence[ColorView], depth_tolerance: float,
                              min_cos: float = 0.1, fallback: np.ndarray | None = None
                              ) -> tuple[np.ndarray, np.ndarray]:
    """Vertex colours averaged over the views that see each vertex.

    A vertex is seen by a view when it projects inside the image onto a pixel with a surface
    depth, within ``depth_tolerance`` of that depth (the z-buffer test: vertices on the far side or
    hidden behind another part fail it) and, with ``normals``, when it faces the camera
    (cosine between normal and the direction to the camera above ``min_cos``). Its colour is the
    image sampled bilinearly at the projection, weighted by that cosine (grazing views blur and
    mix in the background at silhouettes). Vertices no view sees keep ``fallback`` (Nx3 uint8;
    grey without one).

    Returns (Nx3 uint8 colours, N number of views that saw each vertex).
    """
    V = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    N = None if normals is None else np.asarray(normals, dtype=np.float64).reshape(-1, 3)
    if N is not None and N.shape != V.shape:
        raise ValueError(f"normals must match vertices {V.shape}, got {N.shape}")
    if not depth_tolerance > 0:
        raise ValueError(f"depth_tolerance must be positive, got {depth_tolerance}")
    acc = np.zeros((len(V), 3))
    wsum = np.zeros(len(V))
    seen = np.zeros(len(V), dtype=np.int32)
    for k, view in enumerate(views):
        H, W = view.depth.shape
        if view.image.shape[:2] != (H, W) or (view.camera.width, view.camera.height) != (W, H):
            raise ValueError(f"view {k}: image {view.image.shape[:2]}, depth {(H, W)} and camera "
                             f"{view.camera.width}x{view.camera.height} must agree")
        T = np.asarray(view.T_camera_object, dtype=np.float64)
        Xc = V @ T[:3, :3].T + T[:3, 3]
        front = Xc[:, 2] > 1e-9
        if not front.any():
            continue
        idx = np.flatnonzero(front)
        uv = view.camera.project(Xc[idx])
        u, v = np.rint(uv[:, 0]).astype(int), np.rint(uv[:, 1]).astype(int)
        inside = (u >= 0) & (u < W) & (v >= 0) & (v < H)
        idx, uv, u, v = idx[inside], uv[inside], u[inside], v[inside]
        d = view.depth[v, u]
        ok = (d > 0) & (np.abs(Xc[idx, 2] - d) <= depth_tolerance)
        weight = np.ones(len(idx))
        if N is not None:
            to_camera = -(Xc[idx] @ T[:3, :3])              # camera centre - vertex, object axes
            cos = np.einsum("ij,ij->i", N[idx], to_camera) / np.maximum(
                np.linalg.norm(to_camera, axis=1), 1e-12)
            ok &= cos > min_cos
            weight = np.clip(cos, 0.0, 1.0)
        idx, uv, weight = idx[ok], uv[ok], weight[ok]
        if len(idx) == 0:
            continue
        rgb = _sample_surface(view.image, view.depth, uv, Xc[idx, 2], depth_tolerance)
        acc[idx] += weight[:, None] * rgb
        wsum[idx] += weight
        seen[idx] += 1
    colors = (np.full((len(V), 3), 128, np.uint8) if fallback is None
              else np.asarray(fallback, dtype=np.uint8).reshape(-1, 3)[:, :3].copy())
    if len(colors) != len(V):
        raise ValueError(f"fallback has {len(colors)} colours for {len(V)} vertices")
    has = wsum > 0
    colors[has] = np.clip(np.rint(acc[has] / wsum[has, None]), 0, 255).astype(np.uint8)
    return colors, seen


def _sample_surface(image: np.ndarray, depth: np.ndarray, uv: np.ndarray, z: np.ndarray,
                    tolerance: float) -> np.ndarray:
    """Nx3 float colours at continuous pixel coordinates ``uv`` (pixel centres at integers, as
    ``PinholeCamera.project``): bilinear over the 4 neighbours whose surface depth is within
    ``tolerance`` of ``z``, so that samples at a silhouette take nothing from the background or
    from an occluder; the nearest pixel where no neighbour qualifies."""
    H, W = image.shape[:2]
    u = np.clip(uv[:, 0], 0, W - 1)
    v = np.clip(uv[:, 1], 0, H - 1)
    u0, v0 = np.floor(u).astype(int), np.floor(v).astype(int)
    u1, v1 = np.minimum(u0 + 1, W - 1), np.minimum(v0 + 1, H - 1)
    a, b = u - u0, v - v0
    acc = np.zeros((len(uv), 3))
    wsum = np.zeros(len(uv))
    for uu, vv, w in ((u0, v0, (1 - a) * (1 - b)), (u1, v0, a * (1 - b)),
                      (u0, v1, (1 - a) * b), (u1, v1, a * b)):
        d = depth[vv, uu]
        w = w * ((d > 0) & (np.abs(d - z) <= tolerance))
        acc += w[:, None] * image[vv, uu]
        wsum += w
    nearest = image[np.rint(v).astype(int), np.rint(u).astype(int)].astype(np.float64)
    has = wsum > 1e-9
    nearest[has] = acc[has] / wsum[has, None]
    return nearest


def _nearest(reference: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy.spatial import cKDTree
    return cKDTree(reference).query(queries, k=1)
