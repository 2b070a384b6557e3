"""Vertex colours from the views (``color_vertices_from_views``) on analytically ray-cast spheres:
exact images and depths, so every check has a known answer."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh

from sparp_ros.camera import PinholeCamera
from sparp_ros.conventions import invert_rigid
from sparp_ros.geometry.mesh import ColorView, color_vertices_from_views, surface_depth

CAMERA = PinholeCamera(96, 96, np.array([[110.0, 0, 47.5], [0, 110.0, 47.5], [0, 0, 1]]))
FRONT_C, FRONT_R = np.array([0.0, 0.0, 0.0]), 0.05        # object frame, metres
BACK_C, BACK_R = np.array([0.03, 0.0, -0.3]), 0.08
BLUE = np.array([0, 0, 255])


def _front_color(p_object: np.ndarray) -> np.ndarray:
    """The front sphere's paint: red follows the object-frame y, so misplaced samples show."""
    red = 128 + 127 * np.clip(p_object[..., 1] / FRONT_R, -1, 1)
    return np.stack([red, np.full_like(red, 40.0), np.full_like(red, 60.0)], -1)


def _camera_at(eye: np.ndarray) -> np.ndarray:
    """T_camera_object of a camera at ``eye`` (object frame) looking at the front sphere."""
    z = (FRONT_C - eye) / np.linalg.norm(FRONT_C - eye)
    x = np.cross(z, [0.0, 1.0, 0.0])
    x /= np.linalg.norm(x)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, np.cross(z, x), z], axis=1)
    T[:3, 3] = eye
    return invert_rigid(T)


def _ray_cast(T_camera_object: np.ndarray) -> ColorView:
    """Exact image and depth of the two spheres (nearest hit per pixel, black background)."""
    v, u = np.mgrid[0:CAMERA.height, 0:CAMERA.width]
    rays = CAMERA.normalized_rays(np.stack([u.ravel(), v.ravel()], 1).astype(float))   # z = 1
    depth = np.full(len(rays), np.inf)
    image = np.zeros((len(rays), 3))
    T_object_camera = invert_rigid(T_camera_object)
    for center, radius in ((FRONT_C, FRONT_R), (BACK_C, BACK_R)):
        c = T_camera_object[:3, :3] @ center + T_camera_object[:3, 3]
        a, b, cc = np.sum(rays ** 2, 1), -2 * rays @ c, c @ c - radius ** 2
        disc = b ** 2 - 4 * a * cc
        t = np.where(disc >= 0, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), np.inf)
        nearer = t < depth
        depth[nearer] = t[nearer]
        hits = (rays[nearer] * t[nearer, None]) @ T_object_camera[:3, :3].T + T_object_camera[:3, 3]
        image[nearer] = _front_color(hits) if radius == FRONT_R else BLUE
    depth[~np.isfinite(depth)] = 0.0
    shape = (CAMERA.height, CAMERA.width)
    return ColorView(np.clip(np.rint(image), 0, 255).astype(np.uint8).reshape(*shape, 3),
                     CAMERA, T_camera_object, depth.reshape(shape))


def _spheres() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices, outward normals and a front/back label of the two spheres."""
    s = trimesh.creation.icosphere(subdivisions=4)
    V = np.concatenate([FRONT_C + FRONT_R * s.vertices, BACK_C + BACK_R * s.vertices])
    N = np.concatenate([s.vertices, s.vertices])
    front = np.arange(len(V)) < len(s.vertices)
    return V, N, front


def test_colors_come_from_the_view_that_sees_the_vertex():
    V, N, front = _spheres()
    T = _camera_at(np.array([0.0, 0.0, 0.45]))             # looks down -z: front hides back
    view = _ray_cast(T)
    grey = np.full((len(V), 3), 128, np.uint8)
    colors, seen = color_vertices_from_views(V, N, [view], depth_tolerance=0.008, fallback=grey)
    to_cam = invert_rigid(T)[:3, 3] - V
    cos = np.einsum("ij,ij->i", N, to_cam) / np.linalg.norm(to_cam, axis=1)
    # the front sphere's clearly visible half: its own paint, sampled at the right place
    facing = front & (cos > 0.3)
    assert seen[facing].min() == 1
    err = np.abs(colors[facing].astype(float) - _front_color(V[facing])).max(1)
    assert np.median(err) < 2 and np.percentile(err, 95) < 6
    # its far side is not seen (normals, z-buffer) and keeps the fallback
    assert seen[front & (cos < 0)].max() == 0
    assert np.all(colors[front & (cos < 0)] == 128)
    # the back sphere: what shows around the front sphere is blue; what hides behind the front
    # sphere fails the depth test, so it never takes the front sphere's red
    back_seen = ~front & (seen > 0)
    assert back_seen.sum() > 100 and np.all(colors[back_seen] == BLUE)
    xc = V @ T[:3, :3].T + T[:3, 3]
    uv = CAMERA.project(xc)
    behind_front = ~front & (np.linalg.norm(uv - CAMERA.project(
        (T[:3, :3] @ FRONT_C + T[:3, 3])[None]), axis=1) < 0.8 * 110 * FRONT_R / 0.45)
    assert behind_front.sum() > 50 and seen[behind_front].max() == 0
    assert np.all(colors[behind_front] == 128)


def test_views_are_averaged_and_surface_depth_is_the_z_buffer():
    V, N, front = _spheres()
    views = [_ray_cast(_camera_at(eye)) for eye in
             (np.array([0.0, 0.0, 0.45]), np.array([0.25, 0.1, 0.35]), np.array([-0.3, 0.0, 0.3]))]
    colors, seen = color_vertices_from_views(V, N, views, depth_tolerance=0.008)
    assert seen.max() == 3
    multi = front & (seen >= 2)
    err = np.abs(colors[multi].astype(float) - _front_color(V[multi])).max(1)
    assert multi.sum() > 200 and np.median(err) < 2 and np.percentile(err, 95) < 6
    # the z-buffer of a view's own surface points is its depth where they land
    view = views[1]
    T = view.T_camera_object
    xc = V[front] @ T[:3, :3].T + T[:3, 3]
    D = surface_depth(V[front], CAMERA.project(xc), T, CAMERA.height, CAMERA.width)
    hit = (D > 0) & (view.depth > 0) & (np.abs(view.depth - D) < 0.003)
    assert hit.sum() > 0.7 * (D > 0).sum()                 # nearest points: the visible side
    with pytest.raises(ValueError, match="depth_tolerance"):
        color_vertices_from_views(V, N, views, depth_tolerance=0.0)
