"""Headless OpenGL rendering of meshes through an OpenCV camera: RGB, mask, z-depth and surface xyz.

Why moderngl + EGL: it is the fastest option measured on CPU-only machines (Mesa llvmpipe, ~229
renders/s at 320×320, DESIGN.md §7) and needs no display.

Projection is the OpenCV pinhole model exactly (x right, y down, z forward; integer pixel
coordinates are pixel centres). GL samples a pixel at window coordinate ``i + 0.5``, so the clip
matrix maps ``u = fx·X/Z + s·Y/Z + cx`` to window ``x = u + 0.5`` and ``v`` to window
``y = v + 0.5``: GL's bottom row 0 *is* image row 0, so the buffer read back is already top-down
(the usual "flip rows after fbo.read", done in the matrix instead of copying every image).
Distortion is ignored: renders are ideal pinhole images.

Two render targets: colour (RGBA8) and geometry (RGBA32F: mesh-frame xyz, camera z). Depth and
xyz are interpolated perspective-correctly, so they are the exact surface point seen through each
pixel centre. Back faces are drawn (scans have holes); shading is Lambert + ambient with the
normal turned towards the viewer.
"""
from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import cv2
import moderngl
import numpy as np

from ..camera import PinholeCamera
from .mesh_io import TexturedMesh


class RenderError(RuntimeError):
    """The GL context cannot be created or a render request is invalid."""


DEFAULT_LIGHT_DIR_CAMERA = (-0.3, -0.6, -1.0)
"""Towards the light, in the camera frame: up-left of and behind the camera."""
DEFAULT_AMBIENT = 0.35
UNTEXTURED_GREY = 0.7
MAX_FRAMEBUFFERS = 4
"""Framebuffers kept for recently used image sizes (captures mix a few sizes)."""

_VERTEX_SHADER = """
#version 330
uniform mat4 mvp;
uniform mat4 camera_from_mesh;
in vec3 in_pos;
in vec3 in_normal;
in vec2 in_uv;
in vec3 in_color;
out vec3 v_mesh;
out vec3 v_cam;
out vec3 v_normal;
out vec2 v_uv;
out vec3 v_color;
void main() {
    v_mesh = in_pos;
    v_cam = (camera_from_mesh * vec4(in_pos, 1.0)).xyz;
    v_normal = mat3(camera_from_mesh) * in_normal;
    v_uv = in_uv;
    v_color = in_color;
    gl_Position = mvp * vec4(in_pos, 1.0);
}
"""

_FRAGMENT_SHADER = """
#version 330
uniform int color_mode;      // 0 grey, 1 texture, 2 vertex colours
uniform sampler2D tex;
uniform vec3 light_dir;      // unit, towards the light, camera frame
uniform float ambient;
uniform float grey;
in vec3 v_mesh;
in vec3 v_cam;
in vec3 v_normal;
in vec2 v_uv;
in vec3 v_color;
layout(location = 0) out vec4 out_color;
layout(location = 1) out vec4 out_geom;
void main() {
    vec3 n = v_normal;
    if (dot(n, n) < 1e-12) n = cross(dFdx(v_cam), dFdy(v_cam));   // no vertex normal: flat
    n = normalize(n);
    if (dot(n, -v_cam) < 0.0) n = -n;                             // two-sided: face the viewer
    float shade = ambient + (1.0 - ambient) * max(dot(n, light_dir), 0.0);
    vec3 albedo = vec3(grey);
    if (color_mode == 1) albedo = texture(tex, vec2(v_uv.x, 1.0 - v_uv.y)).rgb;
    else if (color_mode == 2) albedo = v_color;
    out_color = vec4(clamp(albedo * shade, 0.0, 1.0), 1.0);
    out_geom = vec4(v_mesh, v_cam.z);
}
"""


@dataclass
class RenderOutput:
    """One render. ``depth`` is the z coordinate in the camera frame (0 = background); ``xyz`` the
    mesh-frame surface point seen through each pixel centre (0 = background)."""

    rgb: np.ndarray       # HxWx3 uint8
    mask: np.ndarray      # HxW bool
    depth: np.ndarray     # HxW float32 metres
    xyz: np.ndarray       # HxWx3 float32 mesh frame, metres

    # ``depth`` and ``xyz`` are views into one HxWx4 array (no strided copies); use
    # np.ascontiguousarray before handing them to OpenCV.


@dataclass
class _GpuMesh:
    vbo: moderngl.Buffer
    ibo: moderngl.Buffer
    vao: moderngl.VertexArray
    texture: moderngl.Texture | None
    color_mode: int
    center: np.ndarray
    radius: float

    def release(self) -> None:
        for obj in (self.vao, self.vbo, self.ibo, self.texture):
            if obj is not None:
                obj.release()


def projection_matrix(camera: PinholeCamera, near: float, far: float) -> np.ndarray:
    """4x4 clip matrix for camera-frame points, reproducing ``camera.project`` (no distortion).

    Window coordinates come out as (u + 0.5, v + 0.5): image rows map to GL rows top-down.
    """
    if not 0 < near < far:
        raise RenderError(f"need 0 < near < far, got near={near}, far={far}")
    K, W, H = camera.K, float(camera.width), float(camera.height)
    P = np.zeros((4, 4))
    P[0] = [2 * K[0, 0] / W, 2 * K[0, 1] / W, 2 * (K[0, 2] + 0.5) / W - 1.0, 0.0]
    P[1] = [0.0, 2 * K[1, 1] / H, 2 * (K[1, 2] + 0.5) / H - 1.0, 0.0]
    P[2] = [0.0, 0.0, (far + near) / (far - near), -2 * far * near / (far - near)]
    P[3] = [0.0, 0.0, 1.0, 0.0]
    return P


class MeshRenderer:
    """Renders meshes headlessly. Create one per process and reuse it: the GL context, the
    framebuffers of recent image sizes and each mesh's GPU buffers are kept between calls.

    GPU buffers are cached per ``TexturedMesh`` object and released when that object is garbage
    collected, so render the same object many times rather than reloading the file, and treat a
    mesh as immutable once rendered (edit a copy). Not thread-safe: one renderer per thread.
    """

    def __init__(self) -> None:
        try:
            self.ctx = moderngl.create_standalone_context(backend="egl", libgl="libGL.so.1",
                                                          libegl="libEGL.so.1")
        except Exception as exc:  # moderngl raises plain Exception for EGL failures
            raise RenderError("cannot create a headless EGL OpenGL context (install Mesa EGL: "
                              f"libegl1 libgl1 libgl1-mesa-dri): {exc}") from exc
        self.program = self.ctx.program(vertex_shader=_VERTEX_SHADER,
                                        fragment_shader=_FRAGMENT_SHADER)
        self._meshes: dict[int, _GpuMesh] = {}
        self._fbos: OrderedDict[tuple[int, int], moderngl.Framebuffer] = OrderedDict()

    # -- resources ----------------------------------------------------------------------------
    def _gpu_mesh(self, mesh: TexturedMesh) -> _GpuMesh:
        key = id(mesh)
        cached = self._meshes.get(key)
        if cached is not None:
            return cached
        n = len(mesh.vertices)
        uv = mesh.uv if mesh.uv is not None else np.zeros((n, 2), np.float32)
        colors = (mesh.vertex_colors.astype(np.float32) / 255.0 if mesh.vertex_colors is not None
                  else np.zeros((n, 3), np.float32))
        interleaved = np.hstack([mesh.vertices, mesh.normals, uv, colors]).astype("f4")
        vbo = self.ctx.buffer(interleaved.tobytes())
        ibo = self.ctx.buffer(mesh.faces.astype("i4").tobytes())
        vao = self.ctx.vertex_array(self.program,
                                    [(vbo, "3f 3f 2f 3f", "in_pos", "in_normal", "in_uv", "in_color")],
                                    index_buffer=ibo, index_element_size=4)
        texture = None
        color_mode = 0
        if mesh.texture is not None:
            img = np.ascontiguousarray(mesh.texture)
            texture = self.ctx.texture((img.shape[1], img.shape[0]), 3, img.tobytes(), alignment=1)
            texture.build_mipmaps()
            texture.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
            texture.repeat_x = texture.repeat_y = True
            color_mode = 1
        elif mesh.vertex_colors is not None:
            color_mode = 2
        lo, hi = mesh.bounds
        center = (lo + hi) / 2.0
        radius = float(np.linalg.norm(mesh.vertices - center, axis=1).max())
        gpu = _GpuMesh(vbo, ibo, vao, texture, color_mode, center.astype(np.float64), radius)
        self._meshes[key] = gpu
        weakref.finalize(mesh, self._forget, key)
        return gpu

    def _forget(self, key: int) -> None:
        gpu = self._meshes.pop(key, None)
        if gpu is not None and self.ctx is not None:
            with self.ctx:
                gpu.release()

    def _framebuffer(self, width: int, height: int) -> moderngl.Framebuffer:
        key = (width, height)
        fbo = self._fbos.pop(key, None)
        if fbo is None:
            fbo = self.ctx.framebuffer(
                color_attachments=[self.ctx.renderbuffer((width, height), 4),
                                   self.ctx.renderbuffer((width, height), 4, dtype="f4")],
                depth_attachment=self.ctx.depth_renderbuffer((width, height)))
            while len(self._fbos) >= MAX_FRAMEBUFFERS:
                _, old = self._fbos.popitem(last=False)
                _release_framebuffer(old)
        self._fbos[key] = fbo
        return fbo

    def release(self) -> None:
        """Free every GL object and the context (the renderer is unusable afterwards)."""
        if self.ctx is None:
            return
        with self.ctx:
            for gpu in self._meshes.values():
                gpu.release()
            self._meshes.clear()
            for fbo in self._fbos.values():
                _release_framebuffer(fbo)
            self._fbos.clear()
            self.program.release()
        self.ctx.release()
        self.ctx = None

    def __enter__(self) -> "MeshRenderer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- rendering ----------------------------------------------------------------------------
    def render(self, mesh: TexturedMesh, camera: PinholeCamera, T_camera_mesh: np.ndarray,
               light_dir: Sequence[float] = DEFAULT_LIGHT_DIR_CAMERA,
               ambient: float = DEFAULT_AMBIENT,
               background: Sequence[float] | np.ndarray | None = None) -> RenderOutput:
        """Render ``mesh`` seen by ``camera`` at pose ``T_camera_mesh`` (4x4, mesh → camera).

        ``light_dir`` points towards a directional light, in the *camera* frame (callers wanting a
        world-fixed light rotate it per view); ``ambient`` in [0, 1] is the unlit fraction.
        ``background``: an RGB triple or an HxWx3 uint8 image placed behind the object
        (default black).
        """
        if not isinstance(mesh, TexturedMesh):
            raise RenderError(f"mesh must be a TexturedMesh (see load_mesh), got {type(mesh).__name__}")
        if self.ctx is None:
            raise RenderError("renderer was released")
        T = np.asarray(T_camera_mesh, dtype=np.float64)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise RenderError(f"T_camera_mesh must be a finite 4x4 matrix, got shape {T.shape}")
        light = np.asarray(light_dir, dtype=np.float64).reshape(3)
        if np.linalg.norm(light) == 0:
            raise RenderError("light_dir must be non-zero")
        if not 0.0 <= ambient <= 1.0:
            raise RenderError(f"ambient must be in [0, 1], got {ambient}")
        # Several renderers (GL contexts) may live in one process: make ours current for the
        # whole draw, or the calls would land in whichever context was created last.
        with self.ctx:
            W, H = camera.width, camera.height
            gpu = self._gpu_mesh(mesh)
            near, far = _near_far(T, gpu.center, gpu.radius)
            mvp = projection_matrix(camera, near, far) @ T

            fbo = self._framebuffer(W, H)
            fbo.use()
            fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
            self.ctx.enable(moderngl.DEPTH_TEST)
            self.ctx.disable(moderngl.CULL_FACE)
            prog = self.program
            prog["mvp"].write(mvp.T.astype("f4").tobytes())          # GL matrices are column-major
            prog["camera_from_mesh"].write(T.T.astype("f4").tobytes())
            prog["light_dir"].value = tuple(light / np.linalg.norm(light))
            prog["ambient"].value = float(ambient)
            prog["grey"].value = UNTEXTURED_GREY
            prog["color_mode"].value = gpu.color_mode
            if gpu.texture is not None:
                gpu.texture.use(location=0)
                prog["tex"].value = 0
            gpu.vao.render(moderngl.TRIANGLES)

            # Both targets were cleared to 0, so background already reads as depth 0 and xyz 0.
            # Channel slices of the read buffers are views: strided copies would cost more than the draw.
            rgba = np.empty((H, W, 4), np.uint8)
            geom = np.empty((H, W, 4), np.float32)
            fbo.read_into(rgba, components=4, attachment=0)
            fbo.read_into(geom, components=4, attachment=1, dtype="f4")
        rgb = cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB)
        mask = rgba[..., 3] > 0
        if background is not None:
            rgb = composite(rgb, mask, background)
        depth, xyz = geom[..., 3], geom[..., :3]
        return RenderOutput(rgb=rgb, mask=mask, depth=depth, xyz=xyz)


def composite(rgb: np.ndarray, mask: np.ndarray,
              background: Sequence[float] | np.ndarray) -> np.ndarray:
    """Object pixels from ``rgb`` over ``background`` (an RGB triple or an HxWx3 image)."""
    bg = np.asarray(background)
    if bg.ndim == 1:
        bg = np.broadcast_to(np.clip(bg, 0, 255).astype(np.uint8), rgb.shape)
    elif bg.shape != rgb.shape:
        raise RenderError(f"background image is {bg.shape}, render is {rgb.shape}")
    return np.where(mask[..., None], rgb, bg).astype(np.uint8)


def _near_far(T_camera_mesh: np.ndarray, center: np.ndarray, radius: float) -> tuple[float, float]:
    """Clip planes hugging the mesh's bounding sphere, for the best depth-buffer precision."""
    z = float(T_camera_mesh[:3, :3][2] @ center + T_camera_mesh[2, 3])
    r = max(radius, 1e-6)
    far = max(z + 1.05 * r, 2e-3 * r + 1e-6)
    near = max(z - 1.05 * r, far * 1e-4)
    return near, far


def _release_framebuffer(fbo: moderngl.Framebuffer) -> None:
    for att in (*fbo.color_attachments, fbo.depth_attachment):
        if att is not None:
            att.release()
    fbo.release()
