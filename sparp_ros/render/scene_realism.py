"""What makes a rendered tabletop look like a photograph: shadows, light types, backgrounds beyond
the table, photo-like table tops, distractor objects and camera effects — every parameter in one
frozen dataclass, ``SceneRealism`` (``render_tabletop(..., realism=...)``; ``None`` keeps the plain
scene of before).

The renderer shades Lambert + ambient with one directional light and casts no shadows, so the
rest is done on the composited image, where the metric depth gives each pixel its world point:

- **contact shadow**: the table darkened by the blurred footprint of each object (the ambient
  occlusion a real object leaves where it stands);
- **cast shadow**: each object's vertices projected onto the table from the light (along the
  direction of a ``directional`` light, from the position of a ``point`` light), the hull filled
  and softened by a penumbra blur;
- **light types**: ``directional`` (sun-like, the renderer's light, hard shadow), ``point`` (a lamp
  above the table: the image falls off with the squared distance and the cosine on the table, the
  shadow spreads from it), ``overcast`` (a large area light: much ambient, no cast shadow, a
  stronger contact shadow);
- **backgrounds** where the view passes the table's edge: ``plain`` (the capture renderer's),
  ``room`` (a wall and floor with furniture-like boxes), ``noise`` (fractal noise), ``photo``
  (random crops of the scene's own mesh textures, out of focus);
- **table tops**: the procedural ones, or a ``photo`` crop of a mesh texture; the table's size;
- **distractors**: other meshes on the table around the objects (at the image border or behind
  them at low elevations); they are not objects of the scene (``TabletopScene.distractor_ids``).

Conventions are those of ``scene.py`` (world z up, table plane z = 0). numpy + OpenCV only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from .camera_effects import CameraEffects
from .mesh_io import TexturedMesh

LIGHT_TYPES = ("directional", "point", "overcast")
BACKGROUND_KINDS = ("plain", "room", "noise", "photo")
TABLE_KINDS = ("procedural", "photo")
SHADOW_GRID_M = 0.004                 # table-map resolution for shadows
SHADOW_VERTICES = 3000                # vertices kept per mesh for hulls
CONTACT_HEIGHT_FRACTION = 0.3         # the footprint is the hull of the lowest 30 % of the mesh


@dataclass(frozen=True)
class SceneRealism:
    """Every realism option of ``render_tabletop``. Ranges ``(low, high)`` are drawn uniformly
    per scene; a ``*_prob`` is the chance an effect is on in a scene; kinds are drawn uniformly.
    The defaults are the realistic preset used to train the segmenter; ``SceneRealism.off()``
    renders what a plain scene renders (but from the realism's random streams)."""

    # Light
    light_types: tuple[str, ...] = LIGHT_TYPES
    ambient_range: tuple[float, float] = (0.2, 0.6)           # directional / point
    overcast_ambient_range: tuple[float, float] = (0.6, 0.9)
    point_light_height_m: tuple[float, float] = (0.4, 1.5)     # above the table
    point_light_offset_m: tuple[float, float] = (0.0, 0.8)     # horizontal, from the scene centre
    # Shadows
    contact_shadow_prob: float = 0.9
    contact_shadow_strength: tuple[float, float] = (0.3, 0.75)  # darkening at the footprint
    contact_shadow_blur: tuple[float, float] = (0.08, 0.3)      # sigma / footprint radius
    cast_shadow_prob: float = 0.8                               # directional and point only
    cast_shadow_strength: tuple[float, float] = (0.2, 0.6)
    cast_shadow_blur_m: tuple[float, float] = (0.002, 0.02)     # penumbra sigma
    # Where the view passes the table's edge, and the table itself
    background_kinds: tuple[str, ...] = BACKGROUND_KINDS
    table_kinds: tuple[str, ...] = TABLE_KINDS
    table_size_m: tuple[float, float] = (1.2, 2.4)
    # Views (None: the plain scene's ranges)
    elevation_deg: tuple[float, float] | None = (5.0, 70.0)
    fill_range: tuple[float, float] | None = (0.35, 1.0)        # scene diameter / short side
    # Distractor meshes (given to render_tabletop) placed around the objects
    distractor_count: tuple[int, int] = (0, 4)
    distractor_gap_m: tuple[float, float] = (0.03, 0.5)         # beyond the objects' circle
    # Camera (None: a clean image)
    camera_effects: CameraEffects | None = field(default_factory=CameraEffects)

    def __post_init__(self) -> None:
        for name, kinds, known in (("light_types", self.light_types, LIGHT_TYPES),
                                   ("background_kinds", self.background_kinds, BACKGROUND_KINDS),
                                   ("table_kinds", self.table_kinds, TABLE_KINDS)):
            bad = [k for k in kinds if k not in known]
            if not kinds or bad:
                raise ValueError(f"SceneRealism.{name} must be a non-empty subset of {known}, "
                                 f"got {kinds}")
        for name in ("contact_shadow_prob", "cast_shadow_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"SceneRealism.{name} must be in [0, 1], "
                                 f"got {getattr(self, name)}")
        lo, hi = self.distractor_count
        if not 0 <= lo <= hi:
            raise ValueError(f"SceneRealism.distractor_count must be 0 <= low <= high, got "
                             f"{self.distractor_count}")

    @classmethod
    def off(cls) -> "SceneRealism":
        """The plain scene's look: directional light, no shadows, plain backgrounds, procedural
        table, no distractors, no camera effects."""
        return cls(light_types=("directional",), ambient_range=(0.25, 0.6),
                   contact_shadow_prob=0.0, cast_shadow_prob=0.0, background_kinds=("plain",),
                   table_kinds=("procedural",), table_size_m=(2.0, 2.0), elevation_deg=None,
                   fill_range=None, distractor_count=(0, 0), camera_effects=None)


@dataclass
class Lighting:
    """One scene's light, fixed in the world."""

    kind: str
    direction: np.ndarray              # unit, towards the light (for the renderer's Lambert term)
    ambient: float
    position: np.ndarray | None        # point light only (world)
    contact_strength: float            # 0: no contact shadow
    contact_blur: float
    cast_strength: float               # 0: no cast shadow
    cast_blur_m: float


def draw_lighting(rng: np.random.Generator, p: SceneRealism, center: np.ndarray,
                  direction: np.ndarray) -> Lighting:
    """The scene's light: its kind, strength and shadows (``direction``: the plain scene's
    random light, kept for ``directional``)."""
    kind = p.light_types[int(rng.integers(len(p.light_types)))]
    position = None
    if kind == "overcast":
        ambient = float(rng.uniform(*p.overcast_ambient_range))
    else:
        ambient = float(rng.uniform(*p.ambient_range))
    if kind == "point":
        a = rng.uniform(0, 2 * np.pi)
        r = rng.uniform(*p.point_light_offset_m)
        position = np.array([center[0] + r * np.cos(a), center[1] + r * np.sin(a),
                             rng.uniform(*p.point_light_height_m)])
        direction = (position - center) / np.linalg.norm(position - center)
    # Every value is drawn whether used or not: switching one effect off keeps the others' draws.
    contact_on, cast_on = rng.random(2) < (p.contact_shadow_prob, p.cast_shadow_prob)
    contact = float(rng.uniform(*p.contact_shadow_strength)) * contact_on
    if kind == "overcast":
        contact = min(1.0, 1.3 * contact)
    cast = float(rng.uniform(*p.cast_shadow_strength)) * (cast_on and kind != "overcast")
    cast *= 1.0 - ambient                   # ambient light fills shadows
    return Lighting(kind, np.asarray(direction, float), ambient, position, contact,
                    float(rng.uniform(*p.contact_shadow_blur)), cast,
                    float(rng.uniform(*p.cast_shadow_blur_m)))


class TableShading:
    """The table's shadow map (a grid over the table, 1 = lit) for one scene's objects and light."""

    def __init__(self, meshes: Sequence[TexturedMesh], poses: Sequence[np.ndarray],
                 light: Lighting, table_size_m: float, rng: np.random.Generator) -> None:
        self.half = table_size_m / 2.0
        n = int(np.ceil(table_size_m / SHADOW_GRID_M))
        self.n = n
        dark = np.zeros((n, n), np.float32)
        for m, T in zip(meshes, poses):
            v = np.asarray(m.vertices, np.float64)
            if len(v) > SHADOW_VERTICES:
                v = v[rng.choice(len(v), SHADOW_VERTICES, replace=False)]
            w = v @ T[:3, :3].T + T[:3, 3]
            if light.contact_strength > 0:
                low = w[w[:, 2] <= w[:, 2].min() + CONTACT_HEIGHT_FRACTION * np.ptp(w[:, 2])]
                radius = max(float(np.ptp(low[:, 0]) + np.ptp(low[:, 1])) / 4.0, 0.01)
                layer = self._hull(low[:, :2])
                sigma = max(light.contact_blur * radius / SHADOW_GRID_M, 1.0)
                layer = cv2.GaussianBlur(layer, (0, 0), sigma)
                dark = np.maximum(dark, light.contact_strength * np.clip(1.6 * layer, 0, 1))
            if light.cast_strength > 0:
                layer = self._hull(_project_to_table(w, light))
                layer = cv2.GaussianBlur(layer, (0, 0),
                                         max(light.cast_blur_m / SHADOW_GRID_M, 0.5))
                dark = np.maximum(dark, light.cast_strength * layer)
        self.lit = 1.0 - dark

    def _hull(self, xy: np.ndarray) -> np.ndarray:
        layer = np.zeros((self.n, self.n), np.float32)
        px = ((xy + self.half) / SHADOW_GRID_M).astype(np.float32)
        if len(px) >= 3:
            hull = cv2.convexHull(px).astype(np.int32)
            cv2.fillConvexPoly(layer, hull, 1.0)
        return layer

    def factor(self, world_xy: np.ndarray) -> np.ndarray:
        """Light factor (0–1) at table points (Nx2 world x, y)."""
        idx = np.clip(((world_xy + self.half) / SHADOW_GRID_M).astype(int), 0, self.n - 1)
        return self.lit[idx[:, 1], idx[:, 0]]


def _project_to_table(w: np.ndarray, light: Lighting) -> np.ndarray:
    """Shadow of world points on z = 0: along the light's direction, or from its position."""
    if light.position is None:
        d = light.direction / max(light.direction[2], 0.05)
        return w[:, :2] - w[:, 2:3] * d[:2]
    L = light.position
    s = L[2] / np.maximum(L[2] - w[:, 2], 1e-3)             # points above the light: far away
    return L[:2] + (w[:, :2] - L[:2]) * np.minimum(s, 50.0)[:, None]


def shade_view(rgb: np.ndarray, world: np.ndarray, table: np.ndarray, has_geometry: np.ndarray,
               light: Lighting, shading: TableShading, center: np.ndarray) -> np.ndarray:
    """The composited view with shadows on the table and a point light's fall-off (uint8)."""
    out = rgb.astype(np.float32)
    factor = np.ones(rgb.shape[:2], np.float32)
    if table.any():
        factor[table] = shading.factor(world[table][:, :2])
    if light.position is not None:
        L = light.position
        ref = float(np.sum((L - center) ** 2))
        d2 = np.sum((world - L) ** 2, axis=-1)
        falloff = np.clip(ref / np.maximum(d2, 1e-6), 0.3, 1.6)
        cos = np.clip((L[2] - world[..., 2]) / np.sqrt(np.maximum(d2, 1e-6)), 0.0, 1.0)
        cos_ref = L[2] / np.sqrt(ref)
        lamp = np.where(table, falloff * cos / max(cos_ref, 1e-3), falloff)
        lamp = light.ambient + (1.0 - light.ambient) * lamp
        factor = np.where(has_geometry, factor * lamp, factor)
    out *= factor[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


# -- backgrounds and table tops ------------------------------------------------------------------
def texture_crop(rng: np.random.Generator, textures: Sequence[np.ndarray], size: tuple[int, int]
                 ) -> np.ndarray | None:
    """A random crop of one of ``textures`` resized to ``size`` (w, h), colour-jittered; None
    when there is no texture."""
    textures = [t for t in textures if t is not None and t.ndim == 3 and min(t.shape[:2]) >= 16]
    if not textures:
        return None
    t = textures[int(rng.integers(len(textures)))]
    h, w = t.shape[:2]
    side = int(rng.uniform(0.2, 0.7) * min(h, w))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = cv2.resize(np.ascontiguousarray(t[y:y + side, x:x + side, :3]), size,
                      interpolation=cv2.INTER_LINEAR).astype(np.float32)
    crop = crop * rng.uniform(0.7, 1.3, size=3) + rng.uniform(-25, 25, size=3)
    return np.clip(crop, 0, 255).astype(np.uint8)


def fractal_noise(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Octaves of smooth noise between two random colours (uint8 RGB)."""
    t = np.zeros((height, width), np.float32)
    for octave in range(5):
        cells = 2 ** (octave + 1)
        layer = rng.normal(size=(cells, cells)).astype(np.float32)
        t += 0.6 ** octave * cv2.resize(layer, (width, height), interpolation=cv2.INTER_CUBIC)
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    c0, c1 = rng.uniform(0, 255, size=(2, 3))
    return np.clip(c0 + t[..., None] * (c1 - c0), 0, 255).astype(np.uint8)


def room_background(rng: np.random.Generator, width: int, height: int,
                    textures: Sequence[np.ndarray]) -> np.ndarray:
    """A wall above a floor line with furniture-like boxes (plain colours or texture crops),
    slightly out of focus (uint8 RGB)."""
    wall, floor = rng.uniform(30, 240, size=(2, 3))
    img = np.empty((height, width, 3), np.float32)
    horizon = int(rng.uniform(0.2, 0.8) * height)
    v = np.arange(height, dtype=np.float32)[:, None, None] / height
    img[:] = wall * (0.8 + 0.4 * v)
    img[horizon:] = floor * (0.7 + 0.5 * v[horizon:])
    for _ in range(int(rng.integers(2, 9))):
        w = int(rng.uniform(0.1, 0.6) * width)
        h = int(rng.uniform(0.1, 0.7) * height)
        x = int(rng.integers(-w // 2, width))
        y = int(rng.integers(max(horizon - h - 1, 1) // 2, max(horizon, 2)))
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
        if x1 <= x0 or y1 <= y0:
            continue
        crop = texture_crop(rng, textures, (x1 - x0, y1 - y0)) if rng.random() < 0.5 else None
        img[y0:y1, x0:x1] = crop if crop is not None else rng.uniform(0, 255, size=3)
    img += rng.normal(0, rng.uniform(1, 6), size=img.shape)
    img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.5, 3.0)))
    return np.clip(img, 0, 255).astype(np.uint8)


def photo_background(rng: np.random.Generator, width: int, height: int,
                     textures: Sequence[np.ndarray]) -> np.ndarray | None:
    """A collage of texture crops, out of focus (uint8 RGB); None without textures."""
    img = texture_crop(rng, textures, (width, height))
    if img is None:
        return None
    img = img.astype(np.float32)
    for _ in range(int(rng.integers(0, 5))):
        w, h = int(rng.uniform(0.2, 0.7) * width), int(rng.uniform(0.2, 0.7) * height)
        x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        img[y:y + h, x:x + w] = texture_crop(rng, textures, (w, h))
    img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.5, 4.0)))
    return np.clip(img, 0, 255).astype(np.uint8)


def draw_background(rng: np.random.Generator, p: SceneRealism, width: int, height: int,
                    textures: Sequence[np.ndarray], plain) -> np.ndarray:
    """A background of one of ``p.background_kinds`` (``plain``: the callable ``plain(w, h)``)."""
    kind = p.background_kinds[int(rng.integers(len(p.background_kinds)))]
    out = None
    if kind == "room":
        out = room_background(rng, width, height, textures)
    elif kind == "noise":
        out = fractal_noise(rng, width, height)
    elif kind == "photo":
        out = photo_background(rng, width, height, textures)
    return out if out is not None else plain(width, height)


def photo_table_texture(rng: np.random.Generator, textures: Sequence[np.ndarray],
                        size: int = 512) -> np.ndarray | None:
    """A table top from a crop of a mesh texture, with fine grain (None without textures)."""
    crop = texture_crop(rng, textures, (size, size))
    if crop is None:
        return None
    crop = crop.astype(np.float32) + rng.normal(0.0, rng.uniform(2.0, 8.0), size=crop.shape)
    return np.clip(crop, 0, 255).astype(np.uint8)


def place_distractors(rng: np.random.Generator, meshes: Sequence[TexturedMesh],
                      occupied: Sequence[tuple[np.ndarray, float]], center: np.ndarray,
                      radius: float, p: SceneRealism, table_size_m: float) -> list[np.ndarray]:
    """T_world_object for each distractor mesh that fits: on the table, outside the objects'
    circle by ``p.distractor_gap_m``, clear of every footprint placed so far (dropped when no
    place is found)."""
    from ..conventions import rot_z
    taken = list(occupied)
    poses = []
    for m in meshes:
        lo, hi = np.asarray(m.bounds, np.float64)
        c = (lo[:2] + hi[:2]) / 2.0
        r = float(np.linalg.norm(np.asarray(m.vertices)[:, :2] - c, axis=1).max())
        for _ in range(30):
            a = rng.uniform(0, 2 * np.pi)
            d = radius + r + rng.uniform(*p.distractor_gap_m)
            q = center[:2] + d * np.array([np.cos(a), np.sin(a)])
            if np.abs(q).max() + r > table_size_m / 2.0:
                continue
            if all(np.linalg.norm(q - q2) >= r + r2 + 0.01 for q2, r2 in taken):
                T = np.eye(4)
                T[:3, :3] = rot_z(float(rng.uniform(0, 2 * np.pi)))
                T[:3, 3] = np.array([q[0], q[1], 0.0]) - T[:3, :3] @ np.array([c[0], c[1], lo[2]])
                poses.append(T)
                taken.append((q, r))
                break
        else:
            poses.append(None)
    return poses


__all__ = ["SceneRealism", "Lighting", "TableShading", "draw_lighting", "shade_view",
           "draw_background", "photo_table_texture", "place_distractors", "LIGHT_TYPES",
           "BACKGROUND_KINDS", "TABLE_KINDS"]
