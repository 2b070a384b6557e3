"""What a reconstruction leaves on disk: ``result.json``, ``mesh.glb``, ``mesh.obj`` and
``overview.png``.

Both mesh files hold the same mesh in the object frame (metres) with its vertex colours: ``.glb``
for viewers and RViz, ``.obj`` (colours as ``v x y z r g b``, as MeshLab and Open3D read them) for
tools that take only OBJ, e.g. collision-object loaders.

Shared by ``sparp-ros reconstruct``, the evaluation and the demo, so all of them write the same files.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np

from .camera import PinholeCamera
from .reconstruction import Reconstruction

log = logging.getLogger("sparp_ros.outputs")

AXIS_COLORS = ((255, 0, 0), (0, 255, 0), (0, 0, 255))   # x red, y green, z blue (RViz)


def write_outputs(recon: Reconstruction, out_dir: str | Path, extra: dict | None = None) -> dict[str, Path]:
    """Write result.json, mesh.glb and mesh.obj (when there is a mesh) and overview.png into
    ``out_dir``; returns the paths by kind (``result``, ``overview``, ``mesh``, ``mesh_obj``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"result": out / "result.json", "overview": out / "overview.png"}
    result = recon.to_json()
    if extra:
        result.update(extra)
    if recon.mesh is not None:
        paths["mesh"] = out / "mesh.glb"
        paths["mesh_obj"] = out / "mesh.obj"
        recon.mesh.export(paths["mesh"])
        recon.mesh.export(paths["mesh_obj"])
        result["mesh"]["file"] = paths["mesh"].name
        result["mesh"]["obj_file"] = paths["mesh_obj"].name
    paths["result"].write_text(json.dumps(result, indent=1, default=_json_default))
    cv2.imwrite(str(paths["overview"]), cv2.cvtColor(overview_image(recon), cv2.COLOR_RGB2BGR))
    return paths


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def nocs_to_rgb(nocs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    img = (np.clip(nocs, 0, 1) * 255).astype(np.uint8)
    img[~mask] = 0
    return img


def draw_axes(image: np.ndarray, camera: PinholeCamera, T_camera_object: np.ndarray,
              length_m: float) -> np.ndarray:
    """Draw the object frame's axes (x red, y green, z blue) at the estimated pose."""
    img = image.copy()
    pts = np.array([[0, 0, 0], [length_m, 0, 0], [0, length_m, 0], [0, 0, length_m]], float)
    cam_pts = pts @ T_camera_object[:3, :3].T + T_camera_object[:3, 3]
    if np.any(cam_pts[:, 2] <= 0):
        return img
    uv = camera.project(cam_pts)
    o = tuple(int(round(c)) for c in uv[0])
    thickness = max(1, img.shape[0] // 96)
    for k in range(3):
        cv2.line(img, o, tuple(int(round(c)) for c in uv[k + 1]), AXIS_COLORS[k], thickness, cv2.LINE_AA)
    return img


def render_mesh_views(recon: Reconstruction, cameras: list[PinholeCamera | None]) -> list[np.ndarray | None]:
    """Our mesh rendered from each input view's estimated pose (None where not possible)."""
    out: list[np.ndarray | None] = [None] * len(cameras)
    if recon.mesh is None:
        return out
    try:
        from .render import load_mesh
        from .render.capture_renderer import default_renderer
        mesh = load_mesh(recon.mesh)
        renderer = default_renderer()   # one GL context per process, reused
        for i, cam in enumerate(cameras):
            T = recon.views[i].T_camera_object
            if cam is not None and T is not None:
                out[i] = renderer.render(mesh, cam, T).rgb
    except Exception as exc:  # the overview is a picture: a render failure must not fail the run
        log.warning("overview mesh render failed: %s", exc)
    return out


def overview_image(recon: Reconstruction) -> np.ndarray:
    """A grid: one column per view; rows = input crop, predicted NOCS, axes at the pose, mesh."""
    cols = []
    Ks = recon.extra.get("cell_cameras", [])
    cams = [PinholeCamera(c.shape[1], c.shape[0], Ks[i]) if i < len(Ks) and recon.views[i].ok else None
            for i, c in enumerate(recon.crops)]
    meshes = render_mesh_views(recon, cams)
    for i, crop in enumerate(recon.crops):
        blank = np.zeros_like(crop)
        nocs = nocs_to_rgb(recon.nocs[i], recon.nocs_masks[i]) if i < len(recon.nocs) else blank
        v = recon.views[i]
        axes, mesh_img = blank, blank
        if cams[i] is not None:
            axes = draw_axes(crop, cams[i], v.T_camera_object, 0.3 * recon.scale)
            mesh_img = meshes[i] if meshes[i] is not None else blank
        cols.append(np.concatenate([crop, nocs, axes, mesh_img], axis=0))
    grid = np.concatenate(cols, axis=1) if cols else np.zeros((64, 64, 3), np.uint8)
    return grid
