"""Load meshes for rendering: textured ``.glb``/``.obj`` files and vertex-coloured ``trimesh`` meshes.

Everything the renderer needs is flattened into one small dataclass so the GL code never touches
trimesh's scene graph or material classes.

Axes and UVs (checked on the 25 shared GSO meshes): trimesh applies **no** axis change on load —
the files are stored +Z up in metres and not rotated to glTF's +Y up, and trimesh keeps the stored
coordinates (its extents match the table in ``data/objects/README.md``). trimesh flips glTF's V on
load, so ``uv`` here always has OBJ's convention (v up, origin bottom-left) for both formats: the
texel of ``(u, v)`` is at column ``u·W``, row ``(1 − v)·H`` of ``texture``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh


class MeshFileError(ValueError):
    """A mesh file is missing, unreadable, empty or (when required) untextured; names the file."""


@dataclass(eq=False)
class TexturedMesh:
    """A triangle mesh ready to render, in the mesh's own frame (metres).

    ``eq=False`` keeps identity hashing: the renderer caches GPU buffers per mesh object.
    At most one of ``texture`` (with ``uv``) and ``vertex_colors`` is used; with neither the
    mesh renders grey.
    """

    vertices: np.ndarray                        # Nx3 float32, mesh frame, metres
    faces: np.ndarray                           # Mx3 int32
    uv: np.ndarray | None = None                # Nx2 float32, v up (texture row = (1 - v)·H)
    texture: np.ndarray | None = None           # HxWx3 uint8 RGB
    vertex_colors: np.ndarray | None = None     # Nx3 uint8 RGB
    normals: np.ndarray | None = None           # Nx3 float32 unit vertex normals (for shading)
    name: str = ""

    def __post_init__(self) -> None:
        self.vertices = np.ascontiguousarray(self.vertices, dtype=np.float32).reshape(-1, 3)
        self.faces = np.ascontiguousarray(self.faces, dtype=np.int32).reshape(-1, 3)
        n = len(self.vertices)
        if n == 0 or len(self.faces) == 0:
            raise MeshFileError(f"mesh {self.name or '<unnamed>'} has no vertices or faces")
        if self.faces.min() < 0 or self.faces.max() >= n:
            raise MeshFileError(f"mesh {self.name or '<unnamed>'}: face index out of range [0, {n})")
        if (self.uv is None) != (self.texture is None):
            self.uv, self.texture = None, None          # half a texture is no texture
        if self.uv is not None:
            self.uv = np.ascontiguousarray(self.uv, dtype=np.float32).reshape(n, 2)
            self.texture = np.ascontiguousarray(self.texture[..., :3], dtype=np.uint8)
        if self.vertex_colors is not None:
            self.vertex_colors = np.ascontiguousarray(self.vertex_colors, dtype=np.uint8)[:, :3]
            if len(self.vertex_colors) != n:
                raise MeshFileError(f"mesh {self.name or '<unnamed>'}: {len(self.vertex_colors)} "
                                f"vertex colours for {n} vertices")
        if self.normals is None:
            self.normals = vertex_normals(self.vertices, self.faces)
        self.normals = np.ascontiguousarray(self.normals, dtype=np.float32).reshape(n, 3)

    @property
    def is_textured(self) -> bool:
        return self.texture is not None

    @property
    def bounds(self) -> np.ndarray:
        """2x3 axis-aligned bounding box (min, max) in the mesh frame."""
        return np.stack([self.vertices.min(axis=0), self.vertices.max(axis=0)])


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (zero for unused or degenerate vertices)."""
    v = vertices.astype(np.float64)
    fn = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    out = np.zeros_like(v)
    for k in range(3):
        np.add.at(out, faces[:, k], fn)
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return (out / np.where(norm > 0, norm, 1.0)).astype(np.float32)


def load_mesh(source: str | Path | trimesh.Trimesh | trimesh.Scene,
              require_texture: bool = False) -> TexturedMesh:
    """Load a ``.glb``/``.gltf``/``.obj``/... file or convert a trimesh object.

    Untextured meshes without vertex colours load and render grey, unless ``require_texture``
    (then MeshFileError). Raises MeshFileError naming the file when it is missing, unreadable or empty.
    """
    name = str(source) if isinstance(source, (str, Path)) else getattr(source, "metadata", {}).get(
        "file_name", type(source).__name__)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise MeshFileError(f"mesh file {path} does not exist")
        try:
            loaded = trimesh.load(str(path), process=False)
        except Exception as exc:  # trimesh raises many types for bad files
            raise MeshFileError(f"cannot read mesh file {path}: {exc}") from exc
    else:
        loaded = source
    mesh = _single_trimesh(loaded, name)
    out = _from_trimesh(mesh, name)
    if require_texture and not out.is_textured:
        raise MeshFileError(f"mesh {name} has no texture (UVs + base-colour image)")
    return out


def _single_trimesh(loaded: object, name: str) -> trimesh.Trimesh:
    """One Trimesh in the file's frame: scene-graph transforms applied, several geometries merged."""
    if isinstance(loaded, trimesh.Trimesh):
        mesh = loaded
    elif isinstance(loaded, trimesh.Scene):
        nodes = [n for n in loaded.graph.nodes_geometry
                 if isinstance(loaded.geometry.get(loaded.graph[n][1]), trimesh.Trimesh)]
        if len(nodes) == 1:
            T, geom_name = loaded.graph[nodes[0]]
            mesh = loaded.geometry[geom_name].copy()
            if not np.allclose(T, np.eye(4)):
                mesh.apply_transform(T)
        elif nodes:
            mesh = loaded.to_geometry()  # concatenates, packing textures into one atlas
        else:
            raise MeshFileError(f"mesh {name} contains no triangle geometry")
    else:
        raise MeshFileError(f"mesh {name}: expected a triangle mesh, got {type(loaded).__name__}")
    if len(mesh.vertices) == 0 or len(mesh.faces) == 0:
        raise MeshFileError(f"mesh {name} is empty (no vertices or faces)")
    return mesh


def _from_trimesh(mesh: trimesh.Trimesh, name: str) -> TexturedMesh:
    vertices = np.asarray(mesh.vertices)
    faces = np.asarray(mesh.faces)
    normals = np.asarray(mesh.vertex_normals) if len(vertices) else None
    visual = mesh.visual
    if isinstance(visual, trimesh.visual.TextureVisuals):
        texture = _texture_image(visual.material)
        uv = None if visual.uv is None else np.asarray(visual.uv)
        if texture is not None and uv is not None and len(uv) == len(vertices):
            return TexturedMesh(vertices, faces, uv=uv, texture=texture, normals=normals, name=name)
        return TexturedMesh(vertices, faces, normals=normals, name=name)
    kind = getattr(visual, "kind", None)
    if kind == "vertex":
        return TexturedMesh(vertices, faces, vertex_colors=np.asarray(visual.vertex_colors)[:, :3],
                            normals=normals, name=name)
    if kind == "face":
        # One colour per face: give every face its own three vertices so colours do not bleed.
        colors = np.repeat(np.asarray(visual.face_colors)[:, :3], 3, axis=0)
        flat = vertices[faces].reshape(-1, 3)
        return TexturedMesh(flat, np.arange(len(flat)).reshape(-1, 3), vertex_colors=colors,
                            name=name)
    return TexturedMesh(vertices, faces, normals=normals, name=name)


def _texture_image(material: object) -> np.ndarray | None:
    """The base-colour image of a PBR (glTF) or simple (OBJ/MTL) material as HxWx3 uint8."""
    image = getattr(material, "baseColorTexture", None)
    if image is None:
        image = getattr(material, "image", None)
    if image is None:
        return None
    arr = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.dtype != np.uint8:
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    factor = getattr(material, "baseColorFactor", None)
    if factor is not None:
        f = np.asarray(factor, dtype=np.float64)[:3]
        f = f / 255.0 if f.max() > 1.0 else f
        if not np.allclose(f, 1.0):
            arr = np.clip(arr * f, 0, 255).astype(np.uint8)
    return arr[..., :3]
