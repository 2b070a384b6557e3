"""Photo realism for views of *one* object: the data engine's and the realistic eval captures' look.

``ObjectRealism`` (one frozen dataclass, every parameter) drives both the per-view NOCS training data
(``training/dataset.py``, ``DatasetConfig.realism``) and ``render_capture(..., realism=...)``:

- **wider cameras**: focal length 35–85 mm (35 mm equivalent: ``f = focal_mm / 36 mm`` × the long
  image side), principal point up to ±10 % of the image off centre;
- **views**: elevations −10…70°, the object's box 20–90 % of the image (larger of the two ratios),
  roll ±10°, and with some probability **partial truncation** (a share of the object's box pushed
  past one image border);
- **the scene** (the tabletop pieces of ``scene.py`` / ``scene_realism.py``, ``ObjectRealism.scene``):
  the object standing on a textured **support plane** (procedural or photo-like table top) with
  **contact and cast shadows**, **light types** (directional, point, overcast), **backgrounds**
  where the view passes the plane (plain, room, fractal noise, photo-like collages of the *other*
  objects' textures), **distractor objects** standing around it (they may occlude it: the object's
  mask is what stays visible), and **camera effects** (noise, blur, JPEG, exposure, white balance,
  vignetting; ``camera_effects.py``) on the whole image before any crop, as a camera would.

A view whose camera is below the plane (negative elevations from afar) cannot see an object on a
table: such a sample has no plane (the object over a background, as before) and no distractors.

World frame of a scene: the mesh shifted so that its footprint centre sits at the origin of the
plane z = 0 (``ObjectScene.T_world_mesh``, a translation: directions are the mesh's).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from ..camera import PinholeCamera
from ..conventions import invert_rigid, unit_direction
from .camera_effects import CameraEffects, apply_camera_effects
from .capture_renderer import look_at, random_background, random_light
from .gl_renderer import MeshRenderer, RenderOutput
from .mesh_io import TexturedMesh
from .scene import _world_points, table_mesh
from .scene_realism import (SceneRealism, TableShading, draw_background, draw_lighting,
                            photo_table_texture, place_distractors, shade_view)

ROLL_RANGE_DEG = 10.0
BORDER_MARGIN_PX = 2
SENSOR_MM = 36.0                      # 35 mm film's long side: "35 mm equivalent" focal lengths
PLANE_CLEARANCE = 0.05                # cameras must be this many object radii above the plane
MIN_VISIBLE_BOX = 0.45                # a truncated view keeps this share of its box in the image


def _default_scene() -> SceneRealism:
    # the view ranges are ObjectRealism's; up to three distractors around one object
    return SceneRealism(elevation_deg=None, fill_range=None, distractor_count=(0, 3))


def _tuples(x: Any) -> Any:
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


@dataclass(frozen=True)
class ObjectRealism:
    """Every realism parameter of a single-object view (module docstring). Ranges ``(low, high)``
    are drawn uniformly; ``*_prob`` are chances per view (truncation) or per sample (plane)."""

    focal_mm: tuple[float, float] = (35.0, 85.0)
    principal_offset: float = 0.10    # ± fraction of the image size
    elevation_deg: tuple[float, float] = (-10.0, 70.0)
    fill_range: tuple[float, float] = (0.2, 0.9)
    fill_spread: float = 0.25         # per view: the sample's fill × exp(U(−a, a)), kept in range
    object_cells: tuple[float, float] = (1.5, 3.5)
    """Data engine: the object's box side in render pixels / cell side; sets the render size, so
    that a small object in a large image is still seen at a resolution the cell can use."""
    max_render_cells: float = 12.0    # data engine: render short side at most this × the cell
    truncation_prob: float = 0.2
    truncation_range: tuple[float, float] = (0.05, 0.35)   # share of the box past the border
    support_plane_prob: float = 0.8
    scene: SceneRealism = field(default_factory=_default_scene)

    def __post_init__(self) -> None:
        for name in ("focal_mm", "elevation_deg", "fill_range", "object_cells", "truncation_range"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"ObjectRealism.{name} must be (low, high), got {(lo, hi)}")
        if not (0 < self.fill_range[0] and self.fill_range[1] <= 1.0):
            raise ValueError(f"ObjectRealism.fill_range must lie in (0, 1], got {self.fill_range}")
        if not -89.0 <= self.elevation_deg[0] and self.elevation_deg[1] <= 89.0:
            raise ValueError(f"ObjectRealism.elevation_deg must lie in [-89, 89], got "
                             f"{self.elevation_deg}")
        for name in ("truncation_prob", "support_plane_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"ObjectRealism.{name} must be in [0, 1]")
        if not 0.0 <= self.truncation_range[0] and self.truncation_range[1] < 1.0 - MIN_VISIBLE_BOX:
            raise ValueError(f"ObjectRealism.truncation_range must lie in [0, "
                             f"{1 - MIN_VISIBLE_BOX}), got {self.truncation_range}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ObjectRealism":
        d = dict(d)
        s = dict(d.pop("scene"))
        effects = s.pop("camera_effects", None)
        scene = SceneRealism(**{k: _tuples(v) for k, v in s.items()},
                             camera_effects=None if effects is None else
                             CameraEffects(**{k: _tuples(v) for k, v in effects.items()}))
        return cls(**{k: _tuples(v) for k, v in d.items()}, scene=scene)


def realism_camera(rng: np.random.Generator, p: ObjectRealism, width: int,
                   height: int) -> PinholeCamera:
    """Intrinsics with a 35 mm-equivalent focal length from ``p.focal_mm`` (across the long side)
    and the principal point up to ``p.principal_offset`` of the image off centre."""
    f = rng.uniform(*p.focal_mm) / SENSOR_MM * max(width, height)
    cx = (width - 1) / 2.0 + rng.uniform(-p.principal_offset, p.principal_offset) * width
    cy = (height - 1) / 2.0 + rng.uniform(-p.principal_offset, p.principal_offset) * height
    K = np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])
    return PinholeCamera(width=int(width), height=int(height), K=K, frame_id="camera")


def view_fill(rng: np.random.Generator, p: ObjectRealism, base: float) -> float:
    """One view's fill around the sample's ``base``, inside ``p.fill_range``."""
    return float(np.clip(base * np.exp(rng.uniform(-p.fill_spread, p.fill_spread)), *p.fill_range))


def _box(hull: np.ndarray, camera: PinholeCamera, T: np.ndarray) -> np.ndarray | None:
    p = hull @ T[:3, :3].T + T[:3, 3]
    if p[:, 2].min() <= 1e-6:
        return None
    uv = camera.project(p)
    return np.array([uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max()])


def place_view(rng: np.random.Generator, hull: np.ndarray, center: np.ndarray, radius: float,
               camera: PinholeCamera, azimuth: float, elevation: float, fill: float,
               truncation: float = 0.0) -> np.ndarray | None:
    """T_camera_mesh of a camera at (``azimuth``, ``elevation``) from ``center`` (mesh frame, the
    eye exactly on that ray), the projected ``hull`` filling ``fill`` of the image, rolled ±10°,
    shifted off centre; with ``truncation`` > 0 that share of the box is pushed past a random
    border (else the box stays inside). None when no such view is found."""
    W, H, f = camera.width, camera.height, float(camera.K[0, 0])
    direction = unit_direction(azimuth, elevation)
    roll = float(np.radians(rng.uniform(-ROLL_RANGE_DEG, ROLL_RANGE_DEG)))
    distance = 2.0 * f * radius / (fill * min(W, H))
    for _ in range(3):                        # the sphere overestimates the silhouette: correct it
        box = _box(hull, camera, look_at(center + distance * direction, center, roll))
        if box is None:
            return None
        measured = max((box[2] - box[0]) / W, (box[3] - box[1]) / H)
        distance = max(distance * measured / fill, 1.05 * radius)
    eye = center + distance * direction
    T0 = look_at(eye, center, roll)
    box = _box(hull, camera, T0)
    if box is None:
        return None
    m = BORDER_MARGIN_PX + 1
    rooms = ((box[0] - m, W - 1 - m - box[2]), (box[1] - m, H - 1 - m - box[3]))
    shift = [rng.uniform(-lo, hi) if lo > 0 and hi > 0 else 0.0 for lo, hi in rooms]
    if truncation > 0:
        axis = int(rng.integers(2))
        size = box[2 + axis] - box[axis]
        lo, hi = rooms[axis]
        shift[axis] = (hi + m + truncation * size) if rng.random() < 0.5 else -(lo + m + truncation * size)
    for scale in (1.0, 0.8, 0.6, 0.4, 0.2, 0.0):   # perspective can push an edge: shrink the shift
        s = np.array([shift[0], shift[1], 0.0]) * scale * distance / f
        T = look_at(eye, center - T0[:3, :3].T @ s, roll)
        b = _box(hull, camera, T)
        if b is None:
            continue
        if truncation > 0:
            inside = ((min(b[2], W - 1) - max(b[0], 0)) * (min(b[3], H - 1) - max(b[1], 0))
                      / max((b[2] - b[0]) * (b[3] - b[1]), 1e-9))
            if inside >= MIN_VISIBLE_BOX and min(b[2], W - 1) > max(b[0], 0) and \
                    min(b[3], H - 1) > max(b[1], 0):
                return T
        elif b[0] >= m and b[1] >= m and b[2] <= W - 1 - m and b[3] <= H - 1 - m:
            return T
    return None


@dataclass
class RealisticView:
    image: np.ndarray                 # HxWx3 uint8, camera effects applied
    mask: np.ndarray                  # HxW bool: the object's visible pixels
    depth: np.ndarray                 # HxW float32, nearest surface (object, plane, distractors)
    render: RenderOutput              # the object's own render (xyz of every pixel it covers)


class ObjectScene:
    """One object in a realistic setting, shared by all views of a sample or capture: the plane
    (or none), distractors, light and shadows, background textures. ``render`` draws a view."""

    def __init__(self, rng: np.random.Generator, p: ObjectRealism, mesh: TexturedMesh,
                 eyes_mesh: Sequence[np.ndarray], distractors: Sequence[TexturedMesh] = (),
                 textures: Sequence[np.ndarray] = ()) -> None:
        self.p, self.mesh = p, mesh
        v = np.asarray(mesh.vertices, np.float64)
        lo, hi = v.min(axis=0), v.max(axis=0)
        c = (lo + hi) / 2.0
        self.T_world_mesh = np.eye(4)
        self.T_world_mesh[:3, 3] = [-c[0], -c[1], -lo[2]]
        self.T_mesh_world = invert_rigid(self.T_world_mesh)
        sphere = float(np.linalg.norm(v - c, axis=1).max())
        footprint = float(np.linalg.norm(v[:, :2] - c[:2], axis=1).max())
        self.center = np.array([0.0, 0.0, (hi[2] - lo[2]) / 2.0])
        above = all(float(e[2]) > lo[2] + PLANE_CLEARANCE * sphere for e in eyes_mesh)
        # every draw is made whether used or not, so one switch does not move the others
        want_plane = rng.random() < p.support_plane_prob
        self.plane = bool(want_plane and above)
        s = p.scene
        table_size = float(rng.uniform(*s.table_size_m))
        table_size = max(table_size, 4.0 * footprint + 0.2)
        table = table_mesh(rng, table_size)
        n_extra = int(rng.integers(s.distractor_count[0], s.distractor_count[1] + 1))
        picked = list(distractors)[:n_extra] if self.plane else []
        poses = place_distractors(rng, picked, [(np.zeros(2), footprint)], self.center,
                                  footprint, s, table_size) if picked else []
        self.extra = [(m, T) for m, T in zip(picked, poses) if T is not None]
        self.textures = [t for t in textures if t is not None]
        self.textures += [m.texture for m, _ in self.extra if m.texture is not None]
        table_kind = s.table_kinds[int(rng.integers(len(s.table_kinds)))]
        if table_kind == "photo":
            photo = photo_table_texture(rng, self.textures)
            if photo is not None:
                table.texture = photo
        self.table = table if self.plane else None
        self.lighting = draw_lighting(rng, s, self.center, random_light(rng))
        self.shading = (TableShading([mesh, *(m for m, _ in self.extra)],
                                     [self.T_world_mesh, *(T for _, T in self.extra)],
                                     self.lighting, table_size, rng) if self.plane else None)
        self.rng = rng

    @property
    def distractor_count(self) -> int:
        return len(self.extra)

    def render(self, renderer: MeshRenderer, camera: PinholeCamera,
               T_camera_mesh: np.ndarray) -> RealisticView:
        """The composited, shaded view over its background, with camera effects."""
        rng, L = self.rng, self.lighting
        T_cw = T_camera_mesh @ self.T_mesh_world
        light = T_camera_mesh[:3, :3] @ L.direction          # world axes are the mesh's
        obj = renderer.render(self.mesh, camera, T_camera_mesh, light_dir=light, ambient=L.ambient)
        layers = [obj]
        if self.table is not None:
            layers.append(renderer.render(self.table, camera, T_cw, light_dir=light,
                                          ambient=L.ambient))
        layers += [renderer.render(m, camera, T_cw @ T, light_dir=light, ambient=L.ambient)
                   for m, T in self.extra]
        z = np.stack([np.where(o.mask, o.depth, np.inf) for o in layers])
        nearest = np.argmin(z, axis=0)
        zmin = np.take_along_axis(z, nearest[None], axis=0)[0]
        has = np.isfinite(zmin)
        rgb = np.take_along_axis(np.stack([o.rgb for o in layers]), nearest[None, ..., None],
                                 axis=0)[0]
        depth = np.where(has, zmin, 0.0).astype(np.float32)
        mask = has & (nearest == 0)
        if self.table is not None or L.position is not None:
            world = _world_points(camera, depth, T_cw)
            table_px = has & (nearest == 1) if self.table is not None else np.zeros_like(has)
            rgb = shade_view(rgb, world, table_px, has, L, self.shading, self.center)
        background = draw_background(rng, self.p.scene, camera.width, camera.height,
                                     self.textures, lambda w, h: random_background(rng, w, h))
        image = np.where(has[..., None], rgb, background).astype(np.uint8)
        if self.p.scene.camera_effects is not None:
            image = apply_camera_effects(image, rng, self.p.scene.camera_effects)
        return RealisticView(image, mask, depth, obj)

    def occluded(self, renderer: MeshRenderer, camera: PinholeCamera, T_camera_mesh: np.ndarray,
                 depth: np.ndarray) -> np.ndarray:
        """HxW bool: pixels of an object render at ``depth`` that a distractor hides."""
        out = np.zeros(depth.shape, bool)
        T_cw = T_camera_mesh @ self.T_mesh_world
        for m, T in self.extra:
            r = renderer.render(m, camera, T_cw @ T)
            out |= r.mask & (r.depth < depth - 1e-5)
        return out


__all__ = ["ObjectRealism", "ObjectScene", "RealisticView", "realism_camera", "place_view",
           "view_fill"]
