"""What a reconstruction leaves on disk: ``result.json``, ``mesh.glb``, ``mesh.obj`` and
``overview.png``.

``overview.png`` is for a person checking the result by looking: with the input frames (the CLI
passes them), one row per view — the frame (``OVERVIEW_VIEW_WIDTH`` px wide) with the object's mask
outline (yellow), the mesh's outline at the view's estimated pose (magenta) and the object frame's
axes (x red, y green, z blue), and the predicted NOCS map beside it — under a caption (view, ok or
failed, inlier ratio) and a title (backend, scale and its source, the mesh's measured share).
Without the frames, a grid of the crops the model saw, upscaled to cells of at least
``OVERVIEW_MIN_CELL`` px, with the same drawings.

Both mesh files hold the same mesh in the object frame (metres) with its vertex colours: ``.glb``
for viewers and RViz, ``.obj`` (colours as ``v x y z r g b``, as MeshLab and Open3D read them) for
tools that take only OBJ, e.g. collision-object loaders.

Shared by ``sparp-ros reconstruct``, the evaluation and the demo, so all of them write the same files.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import cv2
import numpy as np

from .camera import PinholeCamera
from .reconstruction import Reconstruction

if TYPE_CHECKING:
    from .capture import Frame

log = logging.getLogger("sparp_ros.outputs")

AXIS_COLORS = ((255, 0, 0), (0, 255, 0), (0, 0, 255))   # x red, y green, z blue (RViz)
MASK_OUTLINE_COLOR = (255, 215, 0)      # yellow: the object's mask (given, else predicted)
MESH_OUTLINE_COLOR = (255, 0, 255)      # magenta: the mesh's silhouette at the estimated pose
MASK_OUTLINE_PX = 4                     # drawn under the mesh outline, so both show where they agree
MESH_OUTLINE_PX = 2
MIN_OUTLINE_AREA_PX = 12                # smaller islands and holes are not outlined
OVERVIEW_VIEW_WIDTH = 480               # each frame is shown this wide (aspect kept)
OVERVIEW_MIN_CELL = 256                 # the crop grid without frames: cells at least this large
OVERVIEW_LINE_H = 22                    # one line of text (title, legend, caption)
OVERVIEW_CAPTION_H = OVERVIEW_LINE_H + 6
AXIS_LENGTH = 0.3                       # the axes' length as a share of the scale (box diagonal)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_FONT_SCALE = 0.5
_BACKGROUND = (32, 32, 32)
_TEXT = (235, 235, 235)
_OK_TEXT = (140, 230, 140)
_FAILED_TEXT = (255, 90, 90)


def write_outputs(recon: Reconstruction, out_dir: str | Path, extra: dict | None = None,
                  frames: Sequence[Frame] | None = None) -> dict[str, Path]:
    """Write result.json, mesh.glb and mesh.obj (when there is a mesh) and overview.png into
    ``out_dir``; returns the paths by kind (``result``, ``overview``, ``mesh``, ``mesh_obj``).
    ``frames``: the input frames the reconstruction was made from, for the overview (see
    :func:`overview_image`)."""
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
    seg = (extra or {}).get("segmentation")
    source = seg.get("method") if isinstance(seg, dict) else None
    cv2.imwrite(str(paths["overview"]),
                cv2.cvtColor(overview_image(recon, frames, source), cv2.COLOR_RGB2BGR))
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
    return [None if r is None else r.rgb for r in _render_mesh(recon, cameras)]


def mesh_silhouettes(recon: Reconstruction, cameras: list[PinholeCamera | None]) -> list[np.ndarray | None]:
    """Where our mesh covers each camera's image at the view's estimated pose (HxW bool; None
    where not possible: no mesh, a failed view, no camera, a render failure)."""
    return [None if r is None else r.mask for r in _render_mesh(recon, cameras)]


def _render_mesh(recon: Reconstruction, cameras: list[PinholeCamera | None]) -> list:
    out: list = [None] * len(cameras)
    if recon.mesh is None:
        return out
    try:
        from .render import load_mesh
        from .render.capture_renderer import default_renderer
        mesh = load_mesh(recon.mesh)
        renderer = default_renderer()   # one GL context per process, reused
        for i, cam in enumerate(cameras):
            T = recon.views[i].T_camera_object if i < len(recon.views) else None
            if cam is not None and T is not None:
                out[i] = renderer.render(mesh, cam, T)
    except Exception as exc:  # the overview is a picture: a render failure must not fail the run
        log.warning("overview mesh render failed: %s", exc)
    return out


# -- the overview -----------------------------------------------------------------------------
def view_caption(recon: Reconstruction, i: int, short: bool = False) -> str:
    """The caption of view ``i``: its index, ok or failed, and the inlier ratio (or why it failed)."""
    v = recon.views[i]
    ref = " (reference)" if i == recon.reference_view and not short else ""
    if not v.ok:
        if short:
            return f"view {i}: failed"
        why = " ".join(v.message.split()) or "no pose"
        return f"view {i}: failed - {why}"
    if short:
        return f"view {i}: ok, inliers {v.inlier_ratio:.0%}"
    reproj = (f", reprojection {v.reprojection_error_px:.1f} px"
              if np.isfinite(v.reprojection_error_px) else "")
    return (f"view {i}{ref}: ok, inliers {v.inlier_ratio:.0%} of {v.num_correspondences}"
            f"{reproj}")


def overview_title(recon: Reconstruction) -> list[str]:
    """The title's parts: backend, scale and its source, views posed, and the mesh (with the share
    of its vertices measured from depth when known)."""
    ok = sum(v.ok for v in recon.views)
    parts = [f"backend {recon.backend}", f"scale {recon.scale:.3f} m ({recon.scale_source})",
             f"confidence {recon.confidence:.2f}", f"{ok}/{len(recon.views)} views posed"]
    if recon.mesh is None:
        parts.append("no mesh")
    else:
        n = len(recon.mesh.vertices)
        if recon.mesh_measured is not None and n:
            parts.append(f"mesh {n} vertices, {np.count_nonzero(recon.mesh_measured) / n:.0%} measured")
        else:
            parts.append(f"mesh {n} vertices, all inferred")
    return parts


def overview_image(recon: Reconstruction, frames: Sequence[Frame] | None = None,
                   mask_source: str | None = None) -> np.ndarray:
    """The picture a person checks the reconstruction with (RGB uint8).

    With ``frames`` (the input frames, one per view): a title, then per view a caption and a row
    of the frame, ``OVERVIEW_VIEW_WIDTH`` px wide, with the mask outline, the posed mesh's outline
    and the axes drawn over it, and the predicted NOCS map (nearest-neighbour upscaled) beside it.
    A failed view shows its frame and mask only, captioned failed. Without frames (or when they do
    not match the views): the crop grid, one column per view, rows = crop, NOCS, crop with the
    outlines and axes, the mesh rendered at the pose. ``mask_source``: how the frames' masks
    were made when nobody gave them (e.g. ``"learned"``), named in the legend.
    """
    if frames is not None and len(frames) != len(recon.views):
        log.warning("overview: %d frames for %d views; drawing the crops instead",
                    len(frames), len(recon.views))
        frames = None
    if frames is None:
        return _crop_grid(recon)
    try:
        return _frame_rows(recon, frames, mask_source)
    except Exception as exc:  # the overview is a picture: it must not fail the run
        log.warning("overview with the frames failed (%s); drawing the crops instead", exc)
        return _crop_grid(recon)


def _frame_rows(recon: Reconstruction, frames: Sequence[Frame],
                mask_source: str | None = None) -> np.ndarray:
    frames = [f.undistorted() for f in frames]   # the pipeline's poses are in the ideal camera
    cams, images, masks, mask_given = [], [], [], []
    for i, f in enumerate(frames):
        w = OVERVIEW_VIEW_WIDTH
        h = max(1, int(round(f.camera.height * w / f.camera.width)))
        cam = f.camera.resize(w, h)
        cams.append(cam)
        images.append(cv2.resize(f.image, (w, h), interpolation=cv2.INTER_AREA))
        if f.mask is not None:
            masks.append(cv2.resize(f.mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0)
            mask_given.append(True)
        else:
            masks.append(_predicted_mask(recon, i, cam))
            mask_given.append(False)
    silhouettes = mesh_silhouettes(recon, [c if recon.views[i].ok else None for i, c in enumerate(cams)])
    rows = []
    for i in range(len(frames)):
        panel = _draw_view(images[i], cams[i], masks[i], silhouettes[i], recon, i)
        h = panel.shape[0]
        nocs = _nocs_panel(recon, i, h)
        row = np.concatenate([panel, nocs], axis=1)
        color = _OK_TEXT if recon.views[i].ok else _FAILED_TEXT
        caption = _text_block([view_caption(recon, i)], row.shape[1], color)
        rows.append(np.concatenate([caption, row], axis=0))
    width = max(r.shape[1] for r in rows)
    mask_name = ("mask" if all(mask_given) else "predicted mask" if not any(mask_given)
                 else "mask (given, else predicted)")
    if mask_source and all(mask_given):
        mask_name = f"mask ({mask_source} segmentation)"
    legend = [f"yellow: {mask_name} outline", "magenta: posed mesh outline",
              "axes: x red, y green, z blue", "right: predicted NOCS"]
    header = np.concatenate([_text_block(overview_title(recon), width, _TEXT, separator=" | "),
                             _text_block(legend, width, _TEXT, separator="   ")], axis=0)
    return np.concatenate([header] + [_pad_width(r, width) for r in rows], axis=0)


def _draw_view(image: np.ndarray, camera: PinholeCamera, mask: np.ndarray | None,
               silhouette: np.ndarray | None, recon: Reconstruction, i: int) -> np.ndarray:
    """The image with the mask outline, and for a posed view the mesh outline and the axes."""
    img = np.ascontiguousarray(image).copy()
    if mask is not None and mask.any():
        cv2.drawContours(img, _contours(mask), -1, MASK_OUTLINE_COLOR, MASK_OUTLINE_PX, cv2.LINE_8)
    v = recon.views[i]
    if not v.ok or v.T_camera_object is None:
        return img
    if silhouette is not None and silhouette.any():
        cv2.drawContours(img, _contours(silhouette), -1, MESH_OUTLINE_COLOR, MESH_OUTLINE_PX, cv2.LINE_8)
    return draw_axes(img, camera, v.T_camera_object, AXIS_LENGTH * recon.scale)


def _contours(mask: np.ndarray) -> list[np.ndarray]:
    """The boundaries of ``mask`` (outer ones and holes), less specks: a pin-hole in a fused mesh
    is not what a person checks the pose with."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    return [c for c in contours if cv2.contourArea(c) >= MIN_OUTLINE_AREA_PX]


def _predicted_mask(recon: Reconstruction, i: int, camera: PinholeCamera) -> np.ndarray | None:
    """The model's mask of view ``i`` (crop size) mapped into ``camera``'s image: the crop's camera
    is the frame's camera cropped and resized, so the map is a scale and a shift per axis."""
    Ks = recon.extra.get("cell_cameras", [])
    if i >= len(recon.nocs_masks) or i >= len(Ks):
        return None
    Kc, K = np.asarray(Ks[i], float), camera.K
    sx, sy = Kc[0, 0] / K[0, 0], Kc[1, 1] / K[1, 1]
    M = np.array([[sx, 0.0, Kc[0, 2] - sx * K[0, 2]], [0.0, sy, Kc[1, 2] - sy * K[1, 2]]])
    warped = cv2.warpAffine(recon.nocs_masks[i].astype(np.uint8), M, (camera.width, camera.height),
                            flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return warped > 0


def _nocs_panel(recon: Reconstruction, i: int, height: int) -> np.ndarray:
    """View ``i``'s predicted NOCS map, nearest-neighbour upscaled to ``height`` (black if none)."""
    if i >= len(recon.nocs) or i >= len(recon.nocs_masks):
        return np.zeros((height, height, 3), np.uint8)
    nocs = nocs_to_rgb(recon.nocs[i], recon.nocs_masks[i])
    w = max(1, int(round(nocs.shape[1] * height / nocs.shape[0])))
    return cv2.resize(nocs, (w, height), interpolation=cv2.INTER_NEAREST)


def _text_block(parts: list[str], width: int, color: tuple[int, int, int],
                separator: str = " | ") -> np.ndarray:
    """Lines of text on a dark strip ``width`` wide: the parts joined by ``separator`` while they
    fit, a new line where they do not, a smaller font for a part too wide alone."""
    margin = 8
    avail = max(1, width - 2 * margin)

    def text_width(text: str) -> int:
        return cv2.getTextSize(text, _FONT, _FONT_SCALE, 1)[0][0]

    lines: list[str] = []
    for part in parts:
        if lines and text_width(lines[-1] + separator + part) <= avail:
            lines[-1] += separator + part
        else:
            lines.append(part)
    lines = lines or [""]
    strip = np.full((len(lines) * OVERVIEW_LINE_H + 6, width, 3), _BACKGROUND, np.uint8)
    for k, line in enumerate(lines):
        scale = _FONT_SCALE * min(1.0, avail / max(1, text_width(line)))
        cv2.putText(strip, line, (margin, 3 + (k + 1) * OVERVIEW_LINE_H - 6), _FONT, scale, color,
                    1, cv2.LINE_AA)
    return strip


def _pad_width(img: np.ndarray, width: int) -> np.ndarray:
    if img.shape[1] >= width:
        return img
    pad = np.full((img.shape[0], width - img.shape[1], 3), _BACKGROUND, np.uint8)
    return np.concatenate([img, pad], axis=1)


def _crop_grid(recon: Reconstruction) -> np.ndarray:
    """Without the frames: one column per view; rows = the crop, the predicted NOCS, the crop with
    the mask and mesh outlines and the axes, the mesh rendered at the pose; every cell upscaled by
    a whole factor to at least ``OVERVIEW_MIN_CELL`` px."""
    Ks = recon.extra.get("cell_cameras", [])
    n = min(len(recon.crops), len(recon.views))
    crops, cams = [], []
    for i in range(n):
        crop = recon.crops[i]
        f = max(1, math.ceil(OVERVIEW_MIN_CELL / max(1, min(crop.shape[:2]))))
        h, w = crop.shape[0] * f, crop.shape[1] * f
        crops.append(cv2.resize(crop, (w, h), interpolation=cv2.INTER_CUBIC))
        cams.append(PinholeCamera(crop.shape[1], crop.shape[0], Ks[i]).scaled(f, f, w, h)
                    if i < len(Ks) else None)
    renders = _render_mesh(recon, [c if recon.views[i].ok else None for i, c in enumerate(cams)])
    cols = []
    for i in range(n):
        crop, cam = crops[i], cams[i]
        h, w = crop.shape[:2]
        blank = np.zeros_like(crop)
        mask = None
        if i < len(recon.nocs_masks):
            mask = cv2.resize(recon.nocs_masks[i].astype(np.uint8), (w, h),
                              interpolation=cv2.INTER_NEAREST) > 0
        nocs = _nocs_panel(recon, i, h)
        nocs = cv2.resize(nocs, (w, h), interpolation=cv2.INTER_NEAREST) if nocs.shape[1] != w else nocs
        overlay, mesh_img = crop, blank
        if cam is not None:
            r = renders[i]
            overlay = _draw_view(crop, cam, mask, None if r is None else r.mask, recon, i)
            mesh_img = r.rgb if r is not None else blank
        color = _OK_TEXT if recon.views[i].ok else _FAILED_TEXT
        caption = _text_block([view_caption(recon, i, short=True)], w, color)
        cols.append(np.concatenate([caption, crop, nocs, overlay, mesh_img], axis=0))
    height = max((c.shape[0] for c in cols), default=0)
    cols = [np.pad(c, ((0, height - c.shape[0]), (0, 0), (0, 0))) for c in cols]
    body = np.concatenate(cols, axis=1) if cols else np.zeros((0, OVERVIEW_MIN_CELL, 3), np.uint8)
    width = body.shape[1]
    legend = ["rows: crop, NOCS, outlines (yellow predicted mask, magenta mesh) and axes, mesh"]
    header = np.concatenate([_text_block(overview_title(recon), width, _TEXT),
                             _text_block(legend, width, _TEXT)], axis=0)
    return np.concatenate([header, body], axis=0)
