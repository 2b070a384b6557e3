"""The GL renderer reproduces the OpenCV camera exactly: pixel centres, z-depth, surface xyz."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from sparp_ros.camera import PinholeCamera
from sparp_ros.conventions import transform_points
from sparp_ros.render import MeshRenderer, RenderError, TexturedMesh, load_mesh
from sparp_ros.render.capture_renderer import look_at

MUG = "ACE_Coffee_Mug_Kristen_16_oz_cup.glb"
# Non-square pixels, skew-free, principal point well off centre: catches swapped or dropped terms.
CAMERA = PinholeCamera(width=320, height=240,
                       K=np.array([[290.0, 0.0, 171.3], [0.0, 305.0, 108.6], [0.0, 0.0, 1.0]]))


@pytest.fixture(scope="module")
def renderer() -> MeshRenderer:
    r = MeshRenderer()
    yield r
    r.release()


@pytest.fixture(scope="module")
def mug(objects_dir: Path) -> TexturedMesh:
    return load_mesh(objects_dir / MUG)


def _pose(distance: float = 0.45) -> np.ndarray:
    eye = np.array([distance * 0.8, distance * 0.35, 0.2])
    return look_at(eye, np.array([0.0, 0.0, 0.06]), roll=0.1)


def test_surface_points_project_to_their_pixel_centres(renderer: MeshRenderer,
                                                       mug: TexturedMesh) -> None:
    T = _pose()
    out = renderer.render(mug, CAMERA, T)
    assert out.mask.sum() > 2000
    p_cam = transform_points(T, out.xyz[out.mask].astype(np.float64))
    uv = CAMERA.project(p_cam)
    np.testing.assert_allclose(uv, CAMERA.pixel_grid()[out.mask], atol=0.01)
    # depth is the camera z of the same point, and unprojecting it gives the point back
    np.testing.assert_allclose(out.depth[out.mask], p_cam[:, 2], atol=1e-5)
    back = CAMERA.unproject(CAMERA.pixel_grid()[out.mask], out.depth[out.mask])
    np.testing.assert_allclose(back, p_cam, atol=1e-5)
    assert (out.depth[~out.mask] == 0).all() and (out.xyz[~out.mask] == 0).all()


def test_quad_covers_exactly_the_pixel_centres_inside(renderer: MeshRenderer) -> None:
    """A fronto-parallel rectangle whose corners project to (10.3, 20.6)–(50.7, 60.2) must cover
    the pixel centres u = 11..50, v = 21..60 and nothing else."""
    z = 0.5
    corners_uv = np.array([[10.3, 20.6], [50.7, 20.6], [50.7, 60.2], [10.3, 60.2]])
    verts = CAMERA.unproject(corners_uv, np.full(4, z))
    quad = TexturedMesh(vertices=verts, faces=[[0, 1, 2], [0, 2, 3]])
    out = renderer.render(quad, CAMERA, np.eye(4))
    expected = np.zeros_like(out.mask)
    expected[21:61, 11:51] = True
    assert (out.mask == expected).all()
    np.testing.assert_allclose(out.depth[out.mask], z, atol=1e-6)


def test_projected_vertices_land_on_rendered_surface(renderer: MeshRenderer,
                                                     mug: TexturedMesh) -> None:
    T = _pose()
    out = renderer.render(mug, CAMERA, T)
    p_cam = transform_points(T, mug.vertices.astype(np.float64))
    uv = CAMERA.project(p_cam)
    iu = np.round(uv).astype(int)
    visible = np.abs(out.depth[iu[:, 1], iu[:, 0]] - p_cam[:, 2]) < 5e-4
    assert visible.sum() > 500
    # the surface seen at the vertex's pixel is within one pixel footprint of the vertex
    footprint = p_cam[visible, 2] / CAMERA.K[0, 0]
    dist = np.linalg.norm(out.xyz[iu[visible, 1], iu[visible, 0]] - mug.vertices[visible], axis=1)
    assert np.median(dist / footprint) < 0.5


def test_texture_orientation_matches_uv_convention(renderer: MeshRenderer, mug: TexturedMesh) -> None:
    """With ambient 1 the colour at a visible vertex is its texel at row (1 - v)·H."""
    cam = PinholeCamera(width=640, height=640, K=np.array([[1600.0, 0, 320], [0, 1600.0, 320], [0, 0, 1]]))
    T = _pose(0.5)
    out = renderer.render(mug, cam, T, ambient=1.0)
    p_cam = transform_points(T, mug.vertices.astype(np.float64))
    iu = np.round(cam.project(p_cam)).astype(int)
    inside = (iu >= 0).all(1) & (iu[:, 0] < 640) & (iu[:, 1] < 640)
    iu, p_cam, uv = iu[inside], p_cam[inside], mug.uv[inside]
    visible = np.abs(out.depth[iu[:, 1], iu[:, 0]] - p_cam[:, 2]) < 5e-4
    h, w = mug.texture.shape[:2]
    texel = mug.texture[((1 - uv[visible, 1]) * h).astype(int).clip(0, h - 1),
                        (uv[visible, 0] * w).astype(int).clip(0, w - 1)]
    rendered = out.rgb[iu[visible, 1], iu[visible, 0]]
    assert np.median(np.abs(rendered.astype(int) - texel).mean(axis=1)) < 8


def test_vertex_coloured_mesh_and_background(renderer: MeshRenderer) -> None:
    box = trimesh.creation.box(extents=(0.1, 0.1, 0.1))
    box.visual.vertex_colors = np.tile([0, 200, 0, 255], (len(box.vertices), 1))
    mesh = load_mesh(box)
    T = np.eye(4)
    T[2, 3] = 0.5
    out = renderer.render(mesh, CAMERA, T, ambient=1.0, background=(10, 20, 30))
    assert out.mask.sum() > 1000
    np.testing.assert_array_equal(out.rgb[out.mask][:, [0, 2]], 0)
    assert (np.abs(out.rgb[out.mask][:, 1].astype(int) - 200) <= 1).all()
    assert (out.rgb[~out.mask] == [10, 20, 30]).all()


def test_shared_objects_render_textured(renderer: MeshRenderer, objects_dir: Path) -> None:
    cam = PinholeCamera(width=320, height=320, K=np.array([[320.0, 0, 159.5], [0, 320.0, 159.5], [0, 0, 1]]))
    files = sorted(objects_dir.glob("*.glb"))[::4]          # 7 different objects
    assert len(files) >= 5
    for f in files:
        mesh = load_mesh(f)
        lo, hi = mesh.bounds
        center, radius = (lo + hi) / 2, np.linalg.norm(hi - lo) / 2
        T = look_at(center + 3.0 * radius * np.array([0.8, -0.4, 0.45]), center)
        out = renderer.render(mesh, cam, T)
        assert out.mask.sum() > 0.01 * cam.width * cam.height, f.name   # scissors are thin
        assert not (out.mask[0].any() or out.mask[-1].any() or out.mask[:, 0].any()), f.name
        assert out.rgb[out.mask].astype(float).std(axis=0).max() > 8.0, f"{f.name} looks flat"


def test_repeated_render_reuses_gpu_buffers(renderer: MeshRenderer, mug: TexturedMesh) -> None:
    a = renderer.render(mug, CAMERA, _pose())
    n_cached = len(renderer._meshes)
    b = renderer.render(mug, CAMERA, _pose())
    assert len(renderer._meshes) == n_cached
    np.testing.assert_array_equal(a.rgb, b.rgb)
    np.testing.assert_array_equal(a.xyz, b.xyz)


def test_invalid_requests_raise(renderer: MeshRenderer, mug: TexturedMesh) -> None:
    with pytest.raises(RenderError, match="4x4"):
        renderer.render(mug, CAMERA, np.eye(3))
    with pytest.raises(RenderError, match="TexturedMesh"):
        renderer.render("mug.glb", CAMERA, np.eye(4))
    with pytest.raises(RenderError, match="ambient"):
        renderer.render(mug, CAMERA, _pose(), ambient=2.0)


def test_camera_inside_bounding_sphere_still_renders(renderer: MeshRenderer, mug: TexturedMesh) -> None:
    """Near/far planes hug the bounding sphere; a camera inside it (but outside the mug) must not
    clip the surface away."""
    lo, hi = mug.bounds
    center = (lo + hi) / 2
    eye = center + np.array([0.0, -0.09, 0.0])           # sphere radius ≈ 0.103, mug half-depth 0.046
    assert np.linalg.norm(eye - center) < np.linalg.norm(hi - lo) / 2
    out = renderer.render(mug, CAMERA, look_at(eye, center))
    assert out.mask.mean() > 0.3
    assert 0.03 < out.depth[out.mask].min() < 0.05


def test_two_renderers_in_one_process_do_not_mix(renderer: MeshRenderer, mug: TexturedMesh) -> None:
    """Each renderer makes its own GL context current: creating and releasing a second one must
    not redirect the first one's draws (this broke every render after a test's renderer)."""
    cam = PinholeCamera(160, 120, [[150.0, 0, 80], [0, 150.0, 60], [0, 0, 1]])
    before = renderer.render(mug, cam, _pose())
    with MeshRenderer() as other:
        other.render(mug, cam, _pose(0.6))
    after = renderer.render(mug, cam, _pose())
    assert before.mask.sum() > 100
    np.testing.assert_array_equal(before.rgb, after.rgb)
    np.testing.assert_array_equal(before.depth, after.depth)
