"""Data engine: meshes → RGB, mask, depth, xyz/NOCS renders and whole capture folders."""
from .capture_renderer import CaptureRenderError, render_capture
from .gl_renderer import MeshRenderer, RenderError, RenderOutput
from .mesh_io import MeshFileError, TexturedMesh, load_mesh

__all__ = ["render_capture", "CaptureRenderError", "MeshRenderer", "RenderOutput", "RenderError",
           "load_mesh", "TexturedMesh", "MeshFileError"]
