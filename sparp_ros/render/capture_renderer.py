"""Synthetic captures: render a mesh from a few random views into the capture format (DESIGN §4).

A capture mimics what the robot will see: one camera (random size, focal length and off-centre
principal point, shared by all views), the object at random azimuths and elevations, not always
centred but always fully inside the image, random lighting fixed in the world, cluttered-looking
backgrounds. It also carries what only a renderer knows: per-view masks, metric depth, NOCS in the
canonical frame of view 0 (``conventions.canonical_frame``) and the true poses.

The mesh frame serves as world: ``T_world_camera = inv(T_camera_mesh)``, and ``gt.T_camera_object``
holds ``T_camera_mesh`` (gt.json allows any rigid object frame).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..camera import PinholeCamera
from ..capture import Capture, Frame, GroundTruth, save_capture
from ..conventions import canonical_frame, invert_rigid, unit_direction
from .depth_noise import DepthNoise, apply_depth_noise
from .gl_renderer import MeshRenderer, RenderOutput
from .mesh_io import TexturedMesh, load_mesh

IMAGE_SIZES = ((640, 480), (512, 384), (800, 600), (480, 480))
FOCAL_RANGE = (0.8, 1.4)              # × image width
PRINCIPAL_JITTER = 0.05               # ± fraction of the image size
ELEVATION_RANGE_DEG = (-20.0, 50.0)
ROLL_RANGE_DEG = 10.0
FILL_RANGE = (0.3, 0.7)               # object bbox side / image side (the larger ratio)
MIN_AZIMUTH_GAP_DEG = 30.0
BORDER_MARGIN_PX = 2                  # the mask must stay this far from the image border
AMBIENT_RANGE = (0.25, 0.6)
STAMP_STEP_S = 0.5
MAX_TRIES = 8
MESH_CACHE_SIZE = 8
# The depth noise draws from its own stream of the capture seed: the capture's other random draws
# (camera, views, backgrounds) stay those of the clean capture, whatever the noise parameters.
DEPTH_NOISE_STREAM = 0x6E6F6973


class CaptureRenderError(RuntimeError):
    """No view could be placed with the object fully inside the image."""


@dataclass
class _View:
    T_camera_mesh: np.ndarray
    render: RenderOutput


def render_capture(mesh_path: str | Path, out_dir: str | Path | None = None, views: int = 4,
                   seed: int = 0, width: int | None = None, height: int | None = None,
                   azimuths_deg: Sequence[float] | None = None,
                   elevations_deg: Sequence[float] | None = None,
                   renderer: MeshRenderer | None = None,
                   depth_noise: DepthNoise | None = None, realism=None,
                   distractors: Sequence[str | Path] = ()) -> Capture:
    """Render ``views`` views of the mesh into a Capture (saved to ``out_dir`` when given).

    Everything random derives from ``seed``. ``width``/``height`` (both or neither) fix the image
    size; ``azimuths_deg``/``elevations_deg`` (one per view) replace the random view directions,
    e.g. for dense captures. Without a ``renderer`` the process-wide ``default_renderer()`` is used.
    ``depth_noise`` makes each frame's depth look like a stereo sensor's (``depth_noise.py``; its
    parameters go to ``gt.extra["depth_noise"]``); images, masks, NOCS and poses stay those of
    the clean capture of the same seed.
    ``realism`` (an ``object_realism.ObjectRealism``) renders the views as photographs would show
    them: wider intrinsics and elevations, size in frame and truncation, a support plane with
    shadows, light types, backgrounds, camera effects and some of the ``distractors`` (mesh files)
    around the object; masks and NOCS are the object's visible pixels, depth the nearest surface.
    Without it the capture is exactly that of before the option existed.
    """
    # 1. Check inputs.
    if views < 1:
        raise ValueError(f"views must be >= 1, got {views}")
    if (width is None) != (height is None):
        raise ValueError(f"give width and height together, got width={width}, height={height}")
    for name, seq in (("azimuths_deg", azimuths_deg), ("elevations_deg", elevations_deg)):
        if seq is not None and len(seq) != views:
            raise ValueError(f"{name} needs {views} values (one per view), got {len(seq)}")
    mesh_path = Path(mesh_path).resolve()
    mesh = _cached_mesh(mesh_path, mesh_path.stat().st_mtime if mesh_path.exists() else 0.0)
    rng = np.random.default_rng(seed)
    renderer = renderer or default_renderer()
    if realism is not None:
        return _render_capture_realism(mesh_path, mesh, out_dir, views, seed, width, height,
                                       azimuths_deg, elevations_deg, renderer, depth_noise,
                                       realism, distractors)
    # 2. One camera for the whole capture.
    camera = random_camera(rng, width, height)
    # 3. View directions, and lighting fixed in the world for the whole capture.
    az = np.radians(azimuths_deg) if azimuths_deg is not None else spread_azimuths(rng, views)
    el = (np.radians(elevations_deg) if elevations_deg is not None
          else np.radians(rng.uniform(*ELEVATION_RANGE_DEG, size=views)))
    light_mesh = random_light(rng)
    ambient = float(rng.uniform(*AMBIENT_RANGE))
    # 4. Place and render every view.
    placed = [_place_view(renderer, mesh, camera, float(a), float(e), light_mesh, ambient, rng)
              for a, e in zip(az, el)]
    # 5. Ground truth: NOCS in view 0's canonical frame.
    frame0 = canonical_frame(mesh.vertices.astype(np.float64), placed[0].T_camera_mesh)
    noise_rng = (np.random.default_rng([seed, DEPTH_NOISE_STREAM]) if depth_noise is not None
                 else None)
    frames = []
    for i, v in enumerate(placed):
        r = v.render
        nocs = np.zeros(r.xyz.shape, np.float32)
        nocs[r.mask] = frame0.mesh_to_nocs(r.xyz[r.mask].astype(np.float64))
        image = np.where(r.mask[..., None], r.rgb, random_background(rng, camera.width,
                                                                     camera.height))
        image = image.astype(np.uint8)
        depth = np.ascontiguousarray(r.depth)
        if depth_noise is not None:
            depth = apply_depth_noise(depth, image, float(camera.K[0, 0]), depth_noise, noise_rng)
        frames.append(Frame(image=image, camera=camera,
                            depth=depth, mask=r.mask, nocs=nocs,
                            stamp=i * STAMP_STEP_S,
                            T_world_camera=invert_rigid(v.T_camera_mesh)))
    gt = GroundTruth(T_camera_object=[v.T_camera_mesh for v in placed], metric=True,
                     mesh=str(mesh_path), object=mesh_path.stem,
                     extra={"canonical": {"center": frame0.center.tolist(),
                                          "diagonal": frame0.diagonal,
                                          "azimuth": frame0.azimuth}})
    return _finish_capture(frames, gt, depth_noise, out_dir)


REALISM_STREAM = 0x7265616C            # a realistic capture draws from its own stream of the seed


def _render_capture_realism(mesh_path: Path, mesh: TexturedMesh, out_dir, views: int, seed: int,
                            width: int | None, height: int | None, azimuths_deg, elevations_deg,
                            renderer: MeshRenderer, depth_noise: DepthNoise | None, realism,
                            distractors: Sequence[str | Path]) -> Capture:
    """``render_capture`` with ``realism`` (see there)."""
    from scipy.spatial import ConvexHull, QhullError

    from .object_realism import ObjectScene, place_view, realism_camera
    rng = np.random.default_rng([seed, REALISM_STREAM])
    p = realism
    if width is None or height is None:
        width, height = IMAGE_SIZES[rng.integers(len(IMAGE_SIZES))]
    camera = realism_camera(rng, p, int(width), int(height))
    az = np.radians(azimuths_deg) if azimuths_deg is not None else spread_azimuths(rng, views)
    el = (np.radians(elevations_deg) if elevations_deg is not None
          else np.radians(rng.uniform(*p.elevation_deg, size=views)))
    v = mesh.vertices.astype(np.float64)
    try:
        hull = v[ConvexHull(v).vertices]
    except (QhullError, ValueError):
        hull = v
    lo, hi = v.min(axis=0), v.max(axis=0)
    center = (lo + hi) / 2.0
    radius = float(np.linalg.norm(v - center, axis=1).max())
    Ts, truncations = [], []
    for a, e in zip(az, el):
        for _ in range(MAX_TRIES):
            trunc = float(rng.uniform(*p.truncation_range)) if rng.random() < p.truncation_prob else 0.0
            T = place_view(rng, hull, center, radius, camera, float(a), float(e),
                           float(rng.uniform(*p.fill_range)), trunc)
            if T is not None:
                break
        else:
            raise CaptureRenderError(f"could not place {mesh.name} at elevation "
                                     f"{np.degrees(e):.0f}° in a {camera.width}x{camera.height} image")
        Ts.append(T)
        truncations.append(trunc)
    others = [Path(d).resolve() for d in distractors if Path(d).resolve() != mesh_path]
    count = min(p.scene.distractor_count[1], len(others))
    picked = [others[int(i)] for i in rng.choice(len(others), count, replace=False)] if count else []
    extra = [_cached_mesh(q, q.stat().st_mtime) for q in picked]
    scene = ObjectScene(rng, p, mesh, [invert_rigid(T)[:3, 3] for T in Ts], extra,
                        [m.texture for m in extra])
    frame0 = canonical_frame(v, Ts[0])
    noise_rng = (np.random.default_rng([seed, DEPTH_NOISE_STREAM]) if depth_noise is not None
                 else None)
    frames = []
    for i, T in enumerate(Ts):
        view = scene.render(renderer, camera, T)
        nocs = np.zeros(view.render.xyz.shape, np.float32)
        nocs[view.mask] = frame0.mesh_to_nocs(view.render.xyz[view.mask].astype(np.float64))
        depth = np.ascontiguousarray(view.depth)
        if depth_noise is not None:
            depth = apply_depth_noise(depth, view.image, float(camera.K[0, 0]), depth_noise, noise_rng)
        frames.append(Frame(image=view.image, camera=camera, depth=depth, mask=view.mask,
                            nocs=nocs, stamp=i * STAMP_STEP_S, T_world_camera=invert_rigid(T)))
    gt = GroundTruth(T_camera_object=Ts, metric=True, mesh=str(mesh_path), object=mesh_path.stem,
                     extra={"canonical": {"center": frame0.center.tolist(),
                                          "diagonal": frame0.diagonal,
                                          "azimuth": frame0.azimuth},
                            "realism": {"plane": scene.plane, "light": scene.lighting.kind,
                                        "distractors": scene.distractor_count,
                                        "truncation": truncations,
                                        "elevation_deg": np.degrees(el).tolist()}})
    return _finish_capture(frames, gt, depth_noise, out_dir)


def _finish_capture(frames: list[Frame], gt: GroundTruth, depth_noise: DepthNoise | None,
                    out_dir: str | Path | None) -> Capture:
    """The capture of ``frames`` and ``gt`` (the depth noise recorded in it), saved to
    ``out_dir`` when given."""
    if depth_noise is not None:
        gt.extra["depth_noise"] = asdict(depth_noise)
    capture = Capture(frames=frames, gt=gt)
    if out_dir is not None:
        capture.root = save_capture(capture, out_dir)
    return capture


_DEFAULT_RENDERER: tuple[int, MeshRenderer] | None = None


def default_renderer() -> MeshRenderer:
    """One renderer per process, created on first use: a GL context costs more than a capture's
    renders, and a context inherited through fork() is unusable, hence the pid check."""
    global _DEFAULT_RENDERER
    if _DEFAULT_RENDERER is None or _DEFAULT_RENDERER[0] != os.getpid():
        _DEFAULT_RENDERER = (os.getpid(), MeshRenderer())
    return _DEFAULT_RENDERER[1]


@lru_cache(maxsize=MESH_CACHE_SIZE)
def _cached_mesh(path: Path, mtime: float) -> TexturedMesh:
    """Loading a .glb costs more than rendering it; keeping the mesh alive also keeps its GPU
    buffers in the renderer's cache across captures of the same object."""
    return load_mesh(path)


def random_camera(rng: np.random.Generator, width: int | None = None,
                  height: int | None = None) -> PinholeCamera:
    """Random intrinsics: size from IMAGE_SIZES (unless given), focal 0.8–1.4 × width, principal
    point up to 5 % off centre — real cameras are never exactly centred."""
    if width is None or height is None:
        width, height = IMAGE_SIZES[rng.integers(len(IMAGE_SIZES))]
    f = rng.uniform(*FOCAL_RANGE) * width
    cx = (width - 1) / 2.0 + rng.uniform(-PRINCIPAL_JITTER, PRINCIPAL_JITTER) * width
    cy = (height - 1) / 2.0 + rng.uniform(-PRINCIPAL_JITTER, PRINCIPAL_JITTER) * height
    K = np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])
    return PinholeCamera(width=int(width), height=int(height), K=K, frame_id="camera")


def spread_azimuths(rng: np.random.Generator, views: int) -> np.ndarray:
    """Random azimuths (radians) at least MIN_AZIMUTH_GAP_DEG apart (less when many views)."""
    gap = np.radians(min(MIN_AZIMUTH_GAP_DEG, 0.8 * 360.0 / views))
    out: list[float] = []
    while len(out) < views:
        a = float(rng.uniform(0.0, 2 * np.pi))
        if all(abs((a - b + np.pi) % (2 * np.pi) - np.pi) >= gap for b in out):
            out.append(a)
    return np.asarray(out)


def look_at(eye: np.ndarray, target: np.ndarray, roll: float = 0.0,
            up: Sequence[float] = (0.0, 0.0, 1.0)) -> np.ndarray:
    """T_camera_world of an OpenCV camera at ``eye`` looking at ``target``, image up ≈ ``up``,
    then rolled by ``roll`` radians about its optical axis."""
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, float))
    if np.linalg.norm(x) < 1e-9:                      # looking straight along up
        x = np.cross(z, [1.0, 0.0, 0.0])
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    c, s = np.cos(roll), np.sin(roll)
    R_world_camera = np.stack([x, y, z], axis=1) @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    T_world_camera = np.eye(4)
    T_world_camera[:3, :3] = R_world_camera
    T_world_camera[:3, 3] = eye
    return invert_rigid(T_world_camera)


def _place_view(renderer: MeshRenderer, mesh: TexturedMesh, camera: PinholeCamera,
                azimuth: float, elevation: float, light_mesh: np.ndarray, ambient: float,
                rng: np.random.Generator) -> _View:
    """Pick distance (target fill), roll and an in-plane offset; re-sample until the mask stays
    clear of the border. The first render measures the real fill so the distance can be corrected
    for the object's shape (a bounding sphere overestimates it)."""
    lo, hi = mesh.bounds.astype(np.float64)
    center = (lo + hi) / 2.0
    radius = float(np.linalg.norm(hi - lo)) / 2.0
    direction = unit_direction(azimuth, elevation)
    f = float(camera.K[0, 0])
    short_side = min(camera.width, camera.height)
    fill = rng.uniform(*FILL_RANGE)
    roll = np.radians(rng.uniform(-ROLL_RANGE_DEG, ROLL_RANGE_DEG))
    distance = 2.0 * f * radius / (fill * short_side)

    def render(dist: float, offset_px: np.ndarray) -> tuple[np.ndarray, RenderOutput]:
        eye = center + max(dist, 1.05 * radius) * direction
        T0 = look_at(eye, center, roll)
        # Move the look-at point so the centre lands offset_px away from the principal point.
        shift_camera = np.array([offset_px[0], offset_px[1], 0.0]) * dist / f
        T = look_at(eye, center - T0[:3, :3].T @ shift_camera, roll)
        light = T[:3, :3] @ light_mesh
        return T, renderer.render(mesh, camera, T, light_dir=light, ambient=ambient)

    _, centred = render(distance, np.zeros(2))
    measured = _fill(centred.mask, camera)
    if measured > 0:
        distance *= measured / fill
    for _ in range(MAX_TRIES):
        T_centred, centred = render(distance, np.zeros(2))
        box = _mask_box(centred.mask)
        if box is None or _touches_border(centred.mask):
            distance *= 1.25                          # too close (or behind): back off and retry
            continue
        offset = _random_offset(rng, box, camera)
        for scale in (1.0, 0.5, 0.25):               # perspective can push an edge out: shrink
            T, out = render(distance, offset * scale)
            if out.mask.any() and not _touches_border(out.mask):
                return _View(T, out)
        return _View(T_centred, centred)
    raise CaptureRenderError(f"could not fit {mesh.name} inside a {camera.width}x{camera.height} "
                             f"image at azimuth {np.degrees(azimuth):.0f}°, "
                             f"elevation {np.degrees(elevation):.0f}°")


def _mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def _fill(mask: np.ndarray, camera: PinholeCamera) -> float:
    box = _mask_box(mask)
    if box is None:
        return 0.0
    u0, v0, u1, v1 = box
    return max((u1 - u0 + 1) / camera.width, (v1 - v0 + 1) / camera.height)


def _touches_border(mask: np.ndarray, margin: int = BORDER_MARGIN_PX) -> bool:
    m = margin
    return bool(mask[:m].any() or mask[-m:].any() or mask[:, :m].any() or mask[:, -m:].any())


def _random_offset(rng: np.random.Generator, box: tuple[int, int, int, int],
                   camera: PinholeCamera) -> np.ndarray:
    """A pixel shift that keeps the centred mask's box inside the image (with the margin)."""
    u0, v0, u1, v1 = box
    m = BORDER_MARGIN_PX + 1
    shift = []
    for lo_room, hi_room in ((u0 - m, camera.width - 1 - m - u1), (v0 - m, camera.height - 1 - m - v1)):
        shift.append(rng.uniform(-lo_room, hi_room) if lo_room > 0 and hi_room > 0 else 0.0)
    return 0.9 * np.asarray(shift)


def random_light(rng: np.random.Generator) -> np.ndarray:
    """Unit direction towards a light above the horizon, fixed in the world (mesh) frame."""
    return unit_direction(rng.uniform(0.0, 2 * np.pi), np.radians(rng.uniform(20.0, 80.0)))


def random_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Solid colour + smooth two-colour gradient + low-frequency blobs + pixel noise (uint8 RGB):
    enough clutter that a model cannot find the object by colour alone."""
    c0, c1 = rng.uniform(0, 255, size=(2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (np.cos(angle) * u / width + np.sin(angle) * v / height)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    strength = rng.uniform(0.0, 1.0)
    bg = c0 + strength * t[..., None] * (c1 - c0)
    blobs = rng.normal(0.0, 1.0, size=(4, 4, 3)).astype(np.float32)
    blobs = cv2.resize(blobs, (width, height), interpolation=cv2.INTER_CUBIC)
    bg += rng.uniform(0.0, 25.0) * blobs
    bg += rng.normal(0.0, rng.uniform(0.0, 6.0), size=bg.shape)
    return np.clip(bg, 0, 255).astype(np.uint8)
