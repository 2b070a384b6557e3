"""Training data for the SpaRP model: sparse views of a mesh → cells, NOCS targets, fixed views.

``sparp-ros dataset --meshes DIR... --out DATA`` renders samples into shards; ``SparpDataset``
reads them for training. One sample is one object seen by 1–6 views:

1. One random camera (as ``render.capture_renderer.random_camera``, at an intermediate resolution:
   short side ``RENDER_SCALE`` × the cell size), a world-fixed light, and per view a random
   azimuth (≥ 30° apart), elevation −20°…+50°, distance (object fills 30–70 % of the image),
   off-centre placement and roll ±10°, over a random background.
2. Each view is cropped to an S×S cell exactly as the pipeline does (``crop_box_from_mask`` with a
   random margin in 0.10–0.25, ``crop_image``, ``crop_camera``). The NOCS targets are rendered
   again *through the cell's camera*, so every cell pixel carries the exact surface point seen
   through its centre (no resampling of coordinates).
3. Targets: ``nocs_ref`` (every view in view 0's canonical frame, the tiled mode), ``nocs_self``
   (every view in its own canonical frame, the per-view mode; ``azimuth_self[k]`` maps it to view
   0's frame: ``p_ref = Rz(azimuth_self[k]) · p_self`` about the NOCS centre), and the six fixed
   views of Zero123++ v1.2 (RGBA on white + NOCS) around view 0's frame.

Shard arrays (N samples, views padded to 6, absent views all zero):

=====================  ==================  ================================================
``images``             uint8 [N,6,S,S,3]   cell crops, background included (as the pipeline)
``masks``              uint8 [N,6,S,S]     cell masks (0/1), nearest crop like the pipeline
``num_views``          int16 [N]
``nocs_ref``           uint16 [N,6,S,S,3]  ``conventions.encode_nocs_png`` (0 = background)
``nocs_self``          uint16 [N,6,S,S,3]  same encoding, each view's own canonical frame
``azimuth_self``       float32 [N,6]       radians, own azimuth − view 0's, in (−π, π]
``K``                  float32 [N,6,3,3]   cell intrinsics
``T_camera_object``    float32 [N,6,4,4]   view-0 canonical object frame, metres
``T_mesh_object``      float32 [N,4,4]     where that frame sits in the mesh file's frame
``diagonal``           float32 [N]         bounding-box diagonal, metres
``fixed_rgba``         uint8 [N,6,S,S,4]   fixed views on white, alpha = coverage
``fixed_nocs``         uint16 [N,6,S,S,3]  fixed views' NOCS (view-0 frame)
``fixed_K``            float32 [N,3,3]
``fixed_T_camera_object``  float32 [N,6,4,4]  unit-diagonal view-0 object frame
``object``             unicode [N]         object name
=====================  ==================  ================================================

Fixed views (``fixed_cameras``): camera k at azimuth ``FIXED_AZIMUTHS_DEG[k]`` in view 0's object
frame (counter-clockwise about +z seen from above; view 0's camera is at azimuth 0), absolute
elevation ``FIXED_ELEVATIONS_DEG[k]``, looking at the object centre from ``FIXED_DISTANCE``
diagonals, image up ≈ +z; the focal length makes the bounding sphere (radius ½ diagonal) exactly
fill the cell. Light fixed in the camera frame.

Determinism: sample ``i`` of shard ``j`` draws everything from ``default_rng([seed, j, i])``
and shows object ``(j·shard_size + i) mod num_objects``, so shards can be built in any order, by
any number of processes, and a deleted shard is rebuilt identical. A shard is written under a
temporary name and renamed, so an existing ``shard_XXXXX.npz`` is complete.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import re
import sys
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import cv2
import numpy as np
import torch
import torch.utils.data
from scipy.spatial import ConvexHull, QhullError

from ..camera import PinholeCamera
from ..conventions import (NOCS_PNG_RANGE, CanonicalFrame, canonical_frame, encode_nocs_png,
                           invert_rigid, unit_direction)
from ..model.tiling import MAX_VIEWS, tile
from ..render.capture_renderer import (ELEVATION_RANGE_DEG, FILL_RANGE, ROLL_RANGE_DEG,
                                       default_renderer, look_at, random_background, random_camera,
                                       random_light, spread_azimuths)
from ..render.gl_renderer import DEFAULT_AMBIENT, DEFAULT_LIGHT_DIR_CAMERA, MeshRenderer
from ..render.mesh_io import TexturedMesh, load_mesh
from ..render.object_realism import ObjectRealism
from ..render.procedural import procedural_mesh, procedural_name
from ..segmentation import (CropBox, SegmentationError, crop_box_from_mask, crop_camera,
                            crop_image)

FORMAT_VERSION = 1
SHARD_SIZE = 64
RENDER_SCALE = 4                      # render short side = RENDER_SCALE × cell size, then crop
ASPECTS = (4.0 / 3.0, 1.0)            # render width / height
MARGIN_RANGE = (0.10, 0.25)           # crop margin per side (augmentation)
AMBIENT_RANGE = (0.25, 0.6)
BORDER_MARGIN_PX = 2                  # the object stays this far inside the render
MAX_TRIES = 8
FIXED_AZIMUTHS_DEG = (30.0, 90.0, 150.0, 210.0, 270.0, 330.0)
FIXED_ELEVATIONS_DEG = (20.0, -10.0, 20.0, -10.0, 20.0, -10.0)
FIXED_DISTANCE = 2.0                  # bounding-box diagonals from the object centre
FIXED_SUPERSAMPLE = 3                 # fixed views rendered this much finer (odd: see _fixed_views)
FIXED_BACKGROUND = (255, 255, 255)
MESH_SUFFIXES = (".glb", ".gltf", ".obj", ".ply")
MESH_CACHE_SIZE = 128                 # loaded meshes kept per process
VARIANT_LOG_STRETCH = 0.35            # variants: each axis scaled by exp(U(-a, a)), 0.70–1.42
VARIANT_TEXTURE_SWAP = 0.5            # variants: share drawn with another mesh's texture image
SHARD_RE = re.compile(r"^shard_(\d{5})\.npz$")
NOCS_BACKGROUND = -1.0
"""Background value of NOCS maps in the reader's [-1, 1] range: NOCS (0,0,0), a bounding-box corner
that no surface point reaches (every point lies within ½ diagonal of the centre, so at least
√3/2 − ½ ≈ 0.37 NOCS units from that corner)."""
NOCS_FOREGROUND_THRESHOLD = 0.5 * (math.sqrt(3.0) / 2.0 - 0.5)
"""``split_nocs``: a pixel farther than this (NOCS units) from the background corner is object."""


class DatasetError(RuntimeError):
    """Bad dataset arguments, an inconsistent output folder, or an object that cannot be placed."""


# -- configuration ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ObjectSpec:
    """One object: a mesh file, or procedural object ``procedural`` (an index) of the family ``seed``.

    A *variant* of a mesh file (``find_objects(variants=K)``) is the same file turned about the
    vertical by ``yaw`` radians and scaled by ``stretch`` along the mesh axes (x, y, z = up), and
    optionally wearing the texture image of ``texture_from`` through its own UVs. Why: the small
    networks learn the 69 training scans by heart (13° on new views of them, 23° on unseen
    objects); a stretched, re-textured scan is a new object to them at no cost in real data, and
    every label is computed after the change. Gravity stays +z, so the camera elevations and the
    azimuths between views are unchanged in meaning.
    """

    name: str
    path: str = ""
    procedural: int = -1
    stretch: tuple[float, float, float] = (1.0, 1.0, 1.0)
    yaw: float = 0.0
    texture_from: str = ""

    @property
    def is_variant(self) -> bool:
        return self.stretch != (1.0, 1.0, 1.0) or self.yaw != 0.0 or bool(self.texture_from)


@dataclass(frozen=True)
class DatasetConfig:
    """Everything that determines the data (and nothing that does not, like worker counts)."""

    objects: tuple[ObjectSpec, ...]
    cell_size: int = 32
    views: tuple[int, int] = (1, MAX_VIEWS)
    samples_per_object: int = 40
    shard_size: int = SHARD_SIZE
    seed: int = 0
    fixed_views: bool = True
    """Render the six fixed views. Off, their arrays stay empty (zeros) and only the NOCS domains
    can be trained: about 40 % less rendering, for runs that train ``nocs_self``/``nocs_ref`` only."""
    realism: ObjectRealism | None = None
    """Photo realism of the input views (``render/object_realism.py``: wider intrinsics and
    elevations, size in frame, truncation, support plane with shadows, light types, backgrounds,
    distractors, camera effects). None: the plain samples, exactly as before the option existed."""

    def __post_init__(self) -> None:
        if not self.objects:
            raise DatasetError("no objects: give --meshes and/or --procedural")
        names = [o.name for o in self.objects]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise DatasetError(f"object names appear twice (mixed sources?): {dup[:5]}")
        lo, hi = self.views
        if not 1 <= lo <= hi <= MAX_VIEWS:
            raise DatasetError(f"views per sample must satisfy 1 <= lo <= hi <= {MAX_VIEWS}, "
                               f"got {lo}..{hi}")
        if self.cell_size < 8:
            raise DatasetError(f"cell size must be >= 8 pixels, got {self.cell_size}")
        if self.samples_per_object < 1 or self.shard_size < 1:
            raise DatasetError(f"samples per object and shard size must be >= 1, got "
                               f"{self.samples_per_object} and {self.shard_size}")

    @property
    def num_samples(self) -> int:
        return len(self.objects) * self.samples_per_object

    @property
    def num_shards(self) -> int:
        return -(-self.num_samples // self.shard_size)

    def shard_rows(self, shard: int) -> range:
        start = shard * self.shard_size
        return range(start, min(start + self.shard_size, self.num_samples))

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["views"] = list(self.views)
        d["objects"] = [{**asdict(o), "stretch": list(o.stretch)} for o in self.objects]
        if self.realism is None:
            d.pop("realism")                  # plain configs read as before the option existed
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "DatasetConfig":
        objects = tuple(ObjectSpec(**{**o, "stretch": tuple(o.get("stretch", (1.0, 1.0, 1.0)))})
                        for o in d["objects"])
        return cls(objects=objects, cell_size=d["cell_size"],
                   views=tuple(d["views"]), samples_per_object=d["samples_per_object"],
                   shard_size=d["shard_size"], seed=d["seed"],
                   fixed_views=d.get("fixed_views", True),
                   realism=(ObjectRealism.from_json(d["realism"]) if d.get("realism") is not None
                            else None))


def find_objects(sources: Sequence[str | Path], limit: int | None = None, procedural: int = 0,
                 seed: int = 0, variants: int = 0,
                 variant_stretch: float = VARIANT_LOG_STRETCH) -> tuple[ObjectSpec, ...]:
    """Mesh files in ``sources`` (folders or files), optionally ``limit`` of them drawn by ``seed``,
    plus ``procedural`` procedural objects. With ``variants`` K > 0 every mesh file becomes K
    objects ``<name>~<k>`` (``ObjectSpec``: stretched, turned, half of them re-textured with another
    of these meshes' texture; drawn by ``seed``) instead of one; each axis is scaled by
    exp(U(−``variant_stretch``, ``variant_stretch``)) — wider ranges make flat and long objects from
    compact ones."""
    paths: list[Path] = []
    for s in sources:
        p = Path(s)
        if p.is_dir():
            paths += sorted(q for q in p.iterdir() if q.suffix.lower() in MESH_SUFFIXES)
        elif p.is_file():
            paths.append(p)
        else:
            raise DatasetError(f"mesh source {s} is neither a folder nor a file")
    if limit is not None and limit < len(paths):
        keep = np.random.default_rng([seed, 0x0B1EC7]).permutation(len(paths))[:limit]
        paths = [paths[i] for i in sorted(keep)]
    if variants < 0:
        raise DatasetError(f"variants must be >= 0, got {variants}")
    if not 0.0 <= variant_stretch <= 2.0:
        raise DatasetError(f"variant stretch must be in [0, 2] (log scale), got {variant_stretch}")
    resolved = [str(p.resolve()) for p in paths]
    if variants == 0:
        specs = [ObjectSpec(name=p.stem, path=r) for p, r in zip(paths, resolved)]
    else:
        specs = []
        for i, (p, r) in enumerate(zip(paths, resolved)):
            rng = np.random.default_rng([seed, 0x7A41A7, i])
            for k in range(variants):
                stretch = np.exp(rng.uniform(-variant_stretch, variant_stretch, 3))
                yaw = float(rng.uniform(-math.pi, math.pi))
                donor = ""
                if len(paths) > 1 and rng.random() < VARIANT_TEXTURE_SWAP:
                    j = int(rng.integers(len(paths) - 1))
                    donor = resolved[j + (j >= i)]
                specs.append(ObjectSpec(name=f"{p.stem}~{k}", path=r,
                                        stretch=tuple(round(float(x), 4) for x in stretch),
                                        yaw=round(yaw, 4), texture_from=donor))
    specs += [ObjectSpec(name=procedural_name(i), procedural=i) for i in range(procedural)]
    return tuple(specs)


# -- objects, per process ---------------------------------------------------------------------
@dataclass(eq=False)
class _LoadedObject:
    mesh: TexturedMesh
    hull: np.ndarray          # mesh-frame points whose projections bound the silhouette
    center: np.ndarray        # bounding-box centre, mesh frame
    radius: float             # bounding sphere about ``center``


_OBJECTS: OrderedDict[tuple, _LoadedObject] = OrderedDict()
_VARIANTS: OrderedDict[ObjectSpec, _LoadedObject] = OrderedDict()


def _cached(cache: OrderedDict, key: Any, make: Callable[[], _LoadedObject]) -> _LoadedObject:
    obj = cache.pop(key, None)
    if obj is None:
        obj = make()
        while len(cache) >= MESH_CACHE_SIZE:
            cache.popitem(last=False)
    cache[key] = obj
    return obj


def _loaded(mesh: TexturedMesh, hull: np.ndarray | None = None) -> _LoadedObject:
    v = mesh.vertices.astype(np.float64)
    if hull is None:
        try:
            hull = v[ConvexHull(v).vertices]
        except (QhullError, ValueError):          # flat meshes: every vertex bounds the silhouette
            hull = v
    lo, hi = v.min(axis=0), v.max(axis=0)
    center = (lo + hi) / 2.0
    return _LoadedObject(mesh, hull, center, float(np.linalg.norm(v - center, axis=1).max()))


def variant_transform(spec: ObjectSpec) -> np.ndarray:
    """3x3 linear map of a variant's mesh points: turn about +z by ``yaw``, then scale the axes."""
    c, s = math.cos(spec.yaw), math.sin(spec.yaw)
    return np.diag(spec.stretch) @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _make_variant(spec: ObjectSpec, seed: int) -> _LoadedObject:
    """The file's mesh through ``variant_transform`` (linear, so its convex hull is the mapped
    hull: no new Qhull run), with the donor's texture image when both meshes are UV-textured."""
    base = _load_object(ObjectSpec(name=spec.name.split("~")[0], path=spec.path), seed)
    A = variant_transform(spec)
    m = base.mesh
    texture = m.texture
    if spec.texture_from and m.uv is not None:
        donor = _load_object(ObjectSpec(name=Path(spec.texture_from).stem, path=spec.texture_from),
                             seed).mesh
        if donor.texture is not None:
            texture = donor.texture
    mesh = TexturedMesh(m.vertices.astype(np.float64) @ A.T, m.faces, uv=m.uv, texture=texture,
                        vertex_colors=m.vertex_colors, name=spec.name)
    return _loaded(mesh, base.hull @ A.T)


def _load_object(spec: ObjectSpec, seed: int) -> _LoadedObject:
    """Loaded once per process (a bounded LRU): loading costs more than rendering a sample.
    Variants are derived from their file's cached mesh (a second LRU, so they do not evict it)."""
    if spec.is_variant:
        return _cached(_VARIANTS, (spec, seed), lambda: _make_variant(spec, seed))
    key = (spec.path, spec.procedural, seed if spec.procedural >= 0 else None)
    return _cached(_OBJECTS, key, lambda: _loaded(
        procedural_mesh(seed, spec.procedural) if spec.procedural >= 0 else load_mesh(spec.path)))


# -- one sample ---------------------------------------------------------------------------------
def fixed_cameras(cell_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(K 3x3, T_camera_object 6x4x4) of the six fixed views, object = unit-diagonal view-0 frame."""
    f = 0.5 * cell_size / math.tan(math.asin(0.5 / FIXED_DISTANCE))
    c = (cell_size - 1) / 2.0
    K = np.array([[f, 0.0, c], [0.0, f, c], [0.0, 0.0, 1.0]])
    Ts = []
    for az, el in zip(np.radians(FIXED_AZIMUTHS_DEG), np.radians(FIXED_ELEVATIONS_DEG)):
        eye = FIXED_DISTANCE * unit_direction(az, el)
        Ts.append(look_at(eye, np.zeros(3)))
    return K, np.stack(Ts)


def _render_camera(rng: np.random.Generator, cell_size: int) -> PinholeCamera:
    short = RENDER_SCALE * cell_size
    aspect = ASPECTS[int(rng.integers(len(ASPECTS)))]
    return random_camera(rng, int(round(short * aspect)), short)


def _projected_box(obj: _LoadedObject, camera: PinholeCamera,
                   T_camera_mesh: np.ndarray) -> tuple[float, float, float, float] | None:
    p = obj.hull @ T_camera_mesh[:3, :3].T + T_camera_mesh[:3, 3]
    if p[:, 2].min() <= 1e-6:
        return None
    uv = camera.project(p)
    return float(uv[:, 0].min()), float(uv[:, 1].min()), float(uv[:, 0].max()), float(uv[:, 1].max())


def _place(rng: np.random.Generator, obj: _LoadedObject, camera: PinholeCamera, azimuth: float,
           elevation: float) -> np.ndarray | None:
    """T_camera_mesh for a view from (azimuth, elevation), random fill, roll and off-centre shift,
    with the silhouette inside the image — found by projecting the convex hull, not by rendering."""
    W, H, f = camera.width, camera.height, float(camera.K[0, 0])
    direction = unit_direction(azimuth, elevation)
    fill = float(rng.uniform(*FILL_RANGE))
    roll = float(np.radians(rng.uniform(-ROLL_RANGE_DEG, ROLL_RANGE_DEG)))
    distance = 2.0 * f * obj.radius / (fill * min(W, H))
    for _ in range(3):                        # the sphere overestimates the silhouette: correct it
        box = _projected_box(obj, camera, look_at(obj.center + distance * direction, obj.center, roll))
        if box is None:
            return None
        measured = max((box[2] - box[0]) / W, (box[3] - box[1]) / H)
        distance = max(distance * measured / fill, 1.05 * obj.radius)
    eye = obj.center + distance * direction
    T0 = look_at(eye, obj.center, roll)
    box = _projected_box(obj, camera, T0)
    if box is None:
        return None
    m = BORDER_MARGIN_PX + 1
    shift = []
    for lo_room, hi_room in ((box[0] - m, W - 1 - m - box[2]), (box[1] - m, H - 1 - m - box[3])):
        shift.append(rng.uniform(-lo_room, hi_room) if lo_room > 0 and hi_room > 0 else 0.0)
    for scale in (0.9, 0.45, 0.2, 0.0):       # perspective can push an edge out: shrink the shift
        s = np.array([shift[0], shift[1], 0.0]) * scale * distance / f
        T = look_at(eye, obj.center - T0[:3, :3].T @ s, roll)
        box = _projected_box(obj, camera, T)
        if box is not None and box[0] >= m and box[1] >= m and box[2] <= W - 1 - m and box[3] <= H - 1 - m:
            return T
    return None


def _nocs(frame: CanonicalFrame, xyz: np.ndarray, mask: np.ndarray) -> np.ndarray:
    nocs = np.zeros(xyz.shape, np.float64)
    nocs[mask] = frame.mesh_to_nocs(xyz[mask].astype(np.float64))
    return encode_nocs_png(nocs, mask)


def _wrap(angle: float) -> float:
    return float(-((-angle + np.pi) % (2 * np.pi) - np.pi))      # (−π, π]


def _crop_view(rng: np.random.Generator, rgb: np.ndarray, mask: np.ndarray, box: CropBox,
               S: int) -> tuple[np.ndarray, np.ndarray]:
    """The cell image over a random background and the cell mask, as ``crop_image`` on the whole
    composited render gives them (up to warpAffine's 1/32-pixel fixed-point rounding), compositing
    only the crop's neighbourhood: the padding covers the anti-aliasing blur and the bilinear
    footprint, and a background costs more than the render."""
    H, W = mask.shape
    pad = int(np.ceil(4.0 * 0.5 * box.side / S)) + 2
    x0, y0 = max(int(np.floor(box.x0)) - pad, 0), max(int(np.floor(box.y0)) - pad, 0)
    x1 = min(int(np.ceil(box.x0 + box.side)) + pad, W)
    y1 = min(int(np.ceil(box.y0 + box.side)) + pad, H)
    sub_mask = mask[y0:y1, x0:x1]
    image = np.where(sub_mask[..., None], rgb[y0:y1, x0:x1], random_background(rng, x1 - x0, y1 - y0))
    sub_box = CropBox(box.x0 - x0, box.y0 - y0, box.side)
    return crop_image(image, sub_box, S), crop_image(sub_mask.astype(np.uint8), sub_box, S, nearest=True) > 0


def render_sample(spec: ObjectSpec, cfg: DatasetConfig, rng: np.random.Generator,
                  renderer: MeshRenderer | None = None) -> dict[str, np.ndarray]:
    """One sample (see the module docstring for the arrays); raises DatasetError when the object
    cannot be placed in view after MAX_TRIES attempts."""
    S, V = cfg.cell_size, MAX_VIEWS
    renderer = renderer or default_renderer()
    if cfg.realism is not None:
        return render_sample_realism(spec, cfg, rng, renderer)
    obj = _load_object(spec, cfg.seed)
    # 1. Camera, view directions and lighting for the whole sample.
    n = int(rng.integers(cfg.views[0], cfg.views[1] + 1))
    camera = _render_camera(rng, S)
    azimuths = spread_azimuths(rng, n)
    elevations = np.radians(rng.uniform(*ELEVATION_RANGE_DEG, size=n))
    light_mesh, ambient = random_light(rng), float(rng.uniform(*AMBIENT_RANGE))
    out = _empty_sample(V, S, n)
    frame0: CanonicalFrame | None = None
    # 2. Every view: place, render, crop like the pipeline, render the exact cell geometry.
    for k in range(n):
        for _ in range(MAX_TRIES):
            T = _place(rng, obj, camera, float(azimuths[k]), float(elevations[k]))
            if T is None:
                continue
            r = renderer.render(obj.mesh, camera, T, light_dir=T[:3, :3] @ light_mesh, ambient=ambient)
            try:
                box = crop_box_from_mask(r.mask, float(rng.uniform(*MARGIN_RANGE)))
            except SegmentationError:
                continue
            break
        else:
            raise DatasetError(f"object {spec.name}: no view with enough object pixels at azimuth "
                               f"{np.degrees(azimuths[k]):.0f}°, elevation "
                               f"{np.degrees(elevations[k]):.0f}° after {MAX_TRIES} tries")
        cell_camera = crop_camera(camera, box, S)
        out["images"][k], out["masks"][k] = _crop_view(rng, r.rgb, r.mask, box, S)
        g = renderer.render(obj.mesh, cell_camera, T)
        frame0 = _write_view_targets(out, k, obj.mesh, T, cell_camera, g.xyz, g.mask, frame0)
    # 3. The six fixed views around view 0's frame (empty when the config leaves them out).
    _finish_sample(out, frame0, renderer, obj.mesh, S, cfg, spec)
    return out


REALISM_TEXTURE_DONORS = 2             # other objects whose textures make photo-like backgrounds


def _cell_inside(box: CropBox, S: int, width: int, height: int) -> np.ndarray:
    """SxS bool: cell pixels whose source pixel (``crop_image``'s convention) lies in the image."""
    u = (np.arange(S) + 0.5) * box.side / S - 0.5
    ok_u = (u + box.x0 >= -0.5) & (u + box.x0 < width - 0.5)
    ok_v = (u + box.y0 >= -0.5) & (u + box.y0 < height - 0.5)
    return ok_v[:, None] & ok_u[None, :]


def render_sample_realism(spec: ObjectSpec, cfg: DatasetConfig, rng: np.random.Generator,
                          renderer: MeshRenderer,
                          full_views: list | None = None) -> dict[str, np.ndarray]:
    """One sample with ``cfg.realism`` (``render/object_realism.py``): the arrays of
    ``render_sample`` (the NOCS targets only where the object is visible: not past the image
    border, not behind a distractor) plus what was drawn per view: ``render_K`` [6,3,3] and
    ``render_size`` [2] (width, height) of the camera, ``elevation`` [6] (radians), ``fill`` [6],
    ``truncation`` [6] (share of the box pushed past the border, 0 = none), and per sample
    ``plane`` (bool) and ``distractors`` (count). ``full_views`` (a list) receives each view's
    whole image, visible mask and crop box (for figures)."""
    from ..render.object_realism import ObjectScene, place_view, realism_camera, view_fill
    p, S, V = cfg.realism, cfg.cell_size, MAX_VIEWS
    assert p is not None
    obj = _load_object(spec, cfg.seed)
    # 1. One camera whose resolution keeps the object at object_cells × the cell side.
    n = int(rng.integers(cfg.views[0], cfg.views[1] + 1))
    base_fill = float(rng.uniform(*p.fill_range))
    short = int(np.clip(round(rng.uniform(*p.object_cells) * S / base_fill), 3 * S,
                        p.max_render_cells * S))
    aspect = ASPECTS[int(rng.integers(len(ASPECTS)))]
    camera = realism_camera(rng, p, int(round(short * aspect)), short)
    azimuths = spread_azimuths(rng, n)
    elevations = np.radians(rng.uniform(*p.elevation_deg, size=n))
    # 2. Place every view (geometry only), then build the scene around the object.
    Ts, fills, truncs = [], [], []
    for k in range(n):
        for _ in range(MAX_TRIES):
            fill = view_fill(rng, p, base_fill)
            trunc = float(rng.uniform(*p.truncation_range)) if rng.random() < p.truncation_prob else 0.0
            T = place_view(rng, obj.hull, obj.center, obj.radius, camera, float(azimuths[k]),
                           float(elevations[k]), fill, trunc)
            if T is not None:
                break
        else:
            raise DatasetError(f"object {spec.name}: no realism view at elevation "
                               f"{np.degrees(elevations[k]):.0f}° after {MAX_TRIES} tries")
        Ts.append(T)
        fills.append(fill)
        truncs.append(trunc)
    others = [o for o in cfg.objects if o.name != spec.name]
    count = min(p.scene.distractor_count[1] + REALISM_TEXTURE_DONORS, len(others))
    picked = [_load_object(others[int(i)], cfg.seed)
              for i in rng.choice(len(others), count, replace=False)] if count else []
    donors, distractors = picked[:REALISM_TEXTURE_DONORS], [o.mesh for o in picked[REALISM_TEXTURE_DONORS:]]
    scene = ObjectScene(rng, p, obj.mesh, [invert_rigid(T)[:3, 3] for T in Ts], distractors,
                        [o.mesh.texture for o in donors])
    out = _empty_sample(V, S, n)
    frame0: CanonicalFrame | None = None
    # 3. Render every view, crop like the pipeline, render the exact cell geometry.
    for k, T in enumerate(Ts):
        view = scene.render(renderer, camera, T)
        try:
            box = crop_box_from_mask(view.mask, float(rng.uniform(*MARGIN_RANGE)))
        except SegmentationError as exc:
            raise DatasetError(f"object {spec.name}: view {k}: {exc}") from exc
        if full_views is not None:
            full_views.append((view.image, view.mask, box))
        cell_camera = crop_camera(camera, box, S)
        out["images"][k] = crop_image(view.image, box, S)
        out["masks"][k] = crop_image(view.mask.astype(np.uint8), box, S, nearest=True) > 0
        g = renderer.render(obj.mesh, cell_camera, T)
        visible = g.mask & _cell_inside(box, S, camera.width, camera.height)
        if scene.distractor_count:
            visible &= ~scene.occluded(renderer, cell_camera, T, g.depth)
        frame0 = _write_view_targets(out, k, obj.mesh, T, cell_camera, g.xyz, visible, frame0)
    _finish_sample(out, frame0, renderer, obj.mesh, S, cfg, spec)
    render_K = np.zeros((V, 3, 3), np.float32)
    render_K[:n] = camera.K
    pad = lambda a: np.pad(np.asarray(a, np.float32), (0, V - n))  # noqa: E731
    out.update({"render_K": render_K,
                "render_size": np.array([camera.width, camera.height], np.int32),
                "elevation": pad(elevations), "fill": pad(fills), "truncation": pad(truncs),
                "plane": np.bool_(scene.plane), "distractors": np.int16(scene.distractor_count)})
    return out


def _empty_sample(V: int, S: int, n: int) -> dict[str, Any]:
    """A sample's arrays for ``V`` view slots of ``S`` px cells, ``n`` of them used."""
    return {
        "images": np.zeros((V, S, S, 3), np.uint8), "masks": np.zeros((V, S, S), np.uint8),
        "num_views": np.int16(n), "nocs_ref": np.zeros((V, S, S, 3), np.uint16),
        "nocs_self": np.zeros((V, S, S, 3), np.uint16), "azimuth_self": np.zeros(V, np.float32),
        "K": np.zeros((V, 3, 3), np.float32), "T_camera_object": np.zeros((V, 4, 4), np.float32)}


def _write_view_targets(out: dict[str, Any], k: int, mesh: TexturedMesh, T: np.ndarray,
                        cell_camera, xyz: np.ndarray, visible: np.ndarray,
                        frame0: CanonicalFrame | None) -> CanonicalFrame:
    """View ``k``'s targets: NOCS in view 0's frame and in its own, its azimuth from view 0's,
    the cell's intrinsics and pose. Returns view 0's frame (this view's when ``k`` is 0)."""
    frame_k = canonical_frame(mesh.vertices.astype(np.float64), T)
    if k == 0:
        frame0 = frame_k
    out["nocs_ref"][k] = _nocs(frame0, xyz, visible)
    out["nocs_self"][k] = _nocs(frame_k, xyz, visible)
    out["azimuth_self"][k] = _wrap(frame_k.azimuth - frame0.azimuth)
    out["K"][k] = cell_camera.K
    out["T_camera_object"][k] = T @ frame0.T_mesh_object
    return frame0


def _finish_sample(out: dict[str, Any], frame0: CanonicalFrame | None, renderer: MeshRenderer,
                   mesh: TexturedMesh, S: int, cfg: DatasetConfig, spec: ObjectSpec) -> None:
    """View 0's frame, the fixed views around it (empty when the config leaves them out) and the
    object's name."""
    assert frame0 is not None
    out["T_mesh_object"] = frame0.T_mesh_object.astype(np.float32)
    out["diagonal"] = np.float32(frame0.diagonal)
    out.update(_fixed_views(renderer, mesh, frame0, S) if cfg.fixed_views else _no_fixed_views(S))
    out["object"] = np.str_(spec.name)


def _fixed_views(renderer: MeshRenderer, mesh: TexturedMesh, frame0: CanonicalFrame,
                 S: int) -> dict[str, np.ndarray]:
    """One render per fixed view at FIXED_SUPERSAMPLE × S: RGB and coverage are box-averaged down to
    S; with an odd factor F the fine pixel (F·u + F//2, F·v + F//2) looks along exactly the ray of
    cell pixel (u, v), so the cell's NOCS and mask are read off the fine render unresampled."""
    K, T_unit = fixed_cameras(S)
    F = FIXED_SUPERSAMPLE
    cam_hi = PinholeCamera(S, S, K).resize(S * F, S * F)
    rgba = np.zeros((MAX_VIEWS, S, S, 4), np.uint8)
    nocs = np.zeros((MAX_VIEWS, S, S, 3), np.uint16)
    for k, Tu in enumerate(T_unit):
        T_metric = Tu.copy()
        T_metric[:3, 3] *= frame0.diagonal
        hi = renderer.render(mesh, cam_hi, T_metric @ frame0.T_object_mesh,
                             light_dir=DEFAULT_LIGHT_DIR_CAMERA, ambient=DEFAULT_AMBIENT,
                             background=FIXED_BACKGROUND)
        rgba[k, ..., :3] = cv2.resize(hi.rgb, (S, S), interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(hi.mask.astype(np.float32), (S, S), interpolation=cv2.INTER_AREA)
        rgba[k, ..., 3] = np.round(alpha * 255.0).astype(np.uint8)
        c = F // 2
        nocs[k] = _nocs(frame0, hi.xyz[c::F, c::F], hi.mask[c::F, c::F])
    return {"fixed_rgba": rgba, "fixed_nocs": nocs, "fixed_K": K.astype(np.float32),
            "fixed_T_camera_object": T_unit.astype(np.float32)}


def _no_fixed_views(S: int) -> dict[str, np.ndarray]:
    """The fixed-view arrays of a dataset made without them: same shapes, all empty."""
    K, T_unit = fixed_cameras(S)
    return {"fixed_rgba": np.zeros((MAX_VIEWS, S, S, 4), np.uint8),
            "fixed_nocs": np.zeros((MAX_VIEWS, S, S, 3), np.uint16), "fixed_K": K.astype(np.float32),
            "fixed_T_camera_object": T_unit.astype(np.float32)}


def sample_rng(cfg: DatasetConfig, shard: int, row: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, shard, row])


def make_sample(cfg: DatasetConfig, index: int, renderer: MeshRenderer | None = None) -> dict:
    """Sample ``index`` of the dataset (deterministic from the config and the index)."""
    shard, row = divmod(index, cfg.shard_size)
    rng = sample_rng(cfg, shard, row)
    spec = cfg.objects[index % len(cfg.objects)]
    for _ in range(MAX_TRIES):               # a whole new draw if one view could not be placed
        try:
            return render_sample(spec, cfg, rng, renderer)
        except DatasetError as exc:
            last = exc
    raise DatasetError(f"sample {index}: {last}")


# -- shards ---------------------------------------------------------------------------------------
def shard_path(root: str | Path, shard: int) -> Path:
    return Path(root) / f"shard_{shard:05d}.npz"


def make_shard(root: str | Path, cfg: DatasetConfig, shard: int,
               on_sample: Callable[[], None] | None = None) -> tuple[int, int]:
    """Write shard ``shard`` unless it exists; returns (shard, samples rendered now)."""
    path = shard_path(root, shard)
    if path.exists():
        return shard, 0
    samples = []
    for index in cfg.shard_rows(shard):
        samples.append(make_sample(cfg, index))
        if on_sample is not None:
            on_sample()
    arrays = {key: np.stack([s[key] for s in samples]) for key in samples[0]}
    tmp = path.with_name(f".tmp_{path.stem}_{os.getpid()}.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    return shard, len(samples)


def _shard_worker(args: tuple[str, dict, int]) -> tuple[int, int]:
    root, cfg_json, shard = args
    return make_shard(root, DatasetConfig.from_json(cfg_json), shard)


def build_dataset(root: str | Path, cfg: DatasetConfig, workers: int = 1, progress: bool = True,
                  extra_meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write every missing shard of ``cfg`` into ``root`` and ``meta.json``; returns the meta.

    Raises DatasetError when ``root`` holds a dataset made with a different config."""
    from tqdm import tqdm

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    meta_path = root / "meta.json"
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        # compared as configs, so that fields added since (fixed_views, variants) take their
        # defaults: datasets made before those options resume
        try:
            same = DatasetConfig.from_json(old["config"]) == cfg
        except (KeyError, TypeError, DatasetError):
            same = False
        if not same:
            raise DatasetError(f"{root} holds a dataset made with other settings (see {meta_path}); "
                               "choose another --out or delete it")
    meta = {"format": FORMAT_VERSION, "config": cfg.to_json(), "cell_size": cfg.cell_size,
            "num_samples": cfg.num_samples, "num_shards": cfg.num_shards,
            "objects": [o.name for o in cfg.objects],
            "sources": sorted({str(Path(o.path).parent) for o in cfg.objects if o.path}),
            "procedural": sum(o.procedural >= 0 for o in cfg.objects),
            "render_scale": RENDER_SCALE, "margin_range": list(MARGIN_RANGE),
            "fixed_views": {"azimuths_deg": list(FIXED_AZIMUTHS_DEG),
                            "elevations_deg": list(FIXED_ELEVATIONS_DEG),
                            "distance_diagonals": FIXED_DISTANCE, "background": "white"},
            "complete": False, **(extra_meta or {})}
    meta_path.write_text(json.dumps(meta, indent=1))
    todo = [j for j in range(cfg.num_shards) if not shard_path(root, j).exists()]
    total = sum(len(cfg.shard_rows(j)) for j in todo)
    t0 = time.perf_counter()
    rendered = 0
    with tqdm(total=total, unit="sample", disable=not progress, desc=f"dataset {root.name}") as bar:
        if workers <= 1 or len(todo) <= 1:
            for j in todo:
                rendered += make_shard(root, cfg, j, on_sample=lambda: bar.update(1))[1]
        else:
            ctx = multiprocessing.get_context("spawn")     # a fresh GL context per process
            jobs = [(str(root), cfg.to_json(), j) for j in todo]
            with ctx.Pool(min(workers, len(todo))) as pool:
                for _, done in pool.imap_unordered(_shard_worker, jobs):
                    rendered += done
                    bar.update(done)
    elapsed = time.perf_counter() - t0
    meta["complete"] = all(shard_path(root, j).exists() for j in range(cfg.num_shards))
    meta["last_run"] = {"samples_rendered": rendered, "seconds": round(elapsed, 2),
                        "samples_per_s": round(rendered / elapsed, 2) if rendered else None,
                        "workers": workers}
    meta["disk_bytes"] = sum(shard_path(root, j).stat().st_size for j in range(cfg.num_shards)
                             if shard_path(root, j).exists())
    meta_path.write_text(json.dumps(meta, indent=1))
    return meta


# -- reader ---------------------------------------------------------------------------------------
def split_nocs(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reader/model NOCS in [-1, 1] (…×3×H×W) → (NOCS in [0, 1], bool mask …×1×H×W): a pixel is
    object when it lies farther than NOCS_FOREGROUND_THRESHOLD from the background corner."""
    n = (x.clamp(-1, 1) + 1) / 2
    return n, n.norm(dim=-3, keepdim=True) > NOCS_FOREGROUND_THRESHOLD


def view_depth(nocs_ref: np.ndarray, T_camera_object: np.ndarray, diagonal: np.ndarray) -> np.ndarray:
    """Metric depth (camera z, metres; 0 = background) of every cell pixel of shard arrays
    ``nocs_ref`` [N,6,S,S,3], ``T_camera_object`` [N,6,4,4] and ``diagonal`` [N] → [N,6,S,S] float32.

    Why no depth is stored: each cell pixel's ``nocs_ref`` *is* the surface point seen through its
    centre, in the frame ``T_camera_object`` maps into the camera, so its depth follows exactly
    (to the uint16 NOCS step, 1.5e-5 diagonals) and the shards made before depth was needed serve
    an RGB-D network as they are."""
    mask = (nocs_ref > 0).any(axis=-1)
    points = (((nocs_ref.astype(np.float32) - 1.0) / NOCS_PNG_RANGE) - 0.5) * diagonal[:, None, None, None, None]
    R = T_camera_object[:, :, None, None, 2, :3].astype(np.float32)      # camera z row [N,6,1,1,3]
    z = (points * R).sum(-1) + T_camera_object[:, :, None, None, 2, 3]
    return np.where(mask, z, 0.0).astype(np.float32)


DOMAIN_ARRAYS = {"nocs_ref": ("nocs_ref",), "nocs_self": ("nocs_self",), "fixed_rgb": ("fixed_rgba",),
                 "fixed_nocs": ("fixed_nocs",)}
"""The stored arrays each domain's target is made from (the others are small or always needed)."""


def _read_shard(path: Path, skip: frozenset[str] = frozenset()) -> dict[str, np.ndarray]:
    """A shard's arrays (npz members decompress one by one: the ``skip``ped ones cost nothing)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files if k not in skip}


def _cells(a: np.ndarray) -> torch.Tensor:
    """[6,S,S,C] numpy → [6,C,S,S] float tensor."""
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float()


def _nocs_cells(encoded: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint16 [6,S,S,3] → (2·NOCS − 1 with background NOCS_BACKGROUND [6,3,S,S], mask [6,1,S,S])."""
    enc = _cells(encoded)
    mask = (enc > 0).any(dim=1, keepdim=True)
    x = 2.0 * (enc - 1.0) / NOCS_PNG_RANGE - 1.0
    return torch.where(mask, x, torch.full_like(x, NOCS_BACKGROUND)), mask


def _tile_nocs(cells: torch.Tensor) -> torch.Tensor:
    """Tile NOCS cells so that blank cells read as background too."""
    return tile(cells - NOCS_BACKGROUND, channels_last=False) + NOCS_BACKGROUND


class SparpDataset(torch.utils.data.Dataset):
    """Items of a dataset folder as dicts of torch tensors, cells tiled 3×2 channels-first.

    Per item (S = cell size):

    * ``cond`` float32 [3,3S,2S] in [-1, 1]: the input views, background replaced by grey (0) with
      ``cond_background='grey'`` (default: the model sees segmented views, as in the paper) or
      kept (``'raw'``); blank cells 0. ``cond_mask`` [1,3S,2S] (0/1).
    * ``nocs_ref`` / ``nocs_self`` float32 [3,3S,2S] = 2·NOCS − 1; background and blank cells
      ``NOCS_BACKGROUND`` (−1, unambiguous: see ``split_nocs``); ``nocs_mask`` [1,3S,2S].
    * ``fixed_rgb`` [3,3S,2S] in [-1, 1] on white, ``fixed_alpha`` [1,3S,2S] in [0, 1],
      ``fixed_nocs`` [3,3S,2S] (as ``nocs_ref``), ``fixed_mask`` [1,3S,2S].
    * geometry: ``num_views`` (int64), ``K`` [6,3,3], ``T_camera_object`` [6,4,4] (metres),
      ``azimuth_self`` [6], ``diagonal``, ``fixed_K`` [3,3], ``fixed_T_camera_object`` [6,4,4]
      (unit diagonal); plus ``object`` (str) and ``index`` (int).

    ``domains`` (default all): only those domains' targets (and their masks) are in the items —
    training on one domain then skips decoding and tiling the others.

    Shards load lazily and whole; at most ``cache_shards`` stay in memory (per DataLoader worker).
    Shuffle with ``ShardSampler`` so that a few shards at a time are in use. No augmentation:
    flips would change the NOCS frame's handedness.
    """

    def __init__(self, root: str | Path, cache_shards: int = 4, cond_background: str = "grey",
                 domains: Sequence[str] | None = None, objects: int | None = None) -> None:
        self.root = Path(root)
        # only the samples of the first ``objects`` meshes (the data curve: error against the
        # number of training objects, at the same samples per object, from one rendered folder)
        self.objects = objects
        # Only the targets of these domains are decoded and tiled (None: all). Training one domain
        # at 64 px cells spent most of each item on the others' targets, and a GPU run was
        # loader-bound (benchmarks/gpu/README.md).
        from ..model.config import DOMAINS
        if domains is not None and (bad := [d for d in domains if d not in DOMAINS]):
            raise DatasetError(f"unknown domains {bad}; known: {list(DOMAINS)}")
        self.domains = tuple(DOMAINS if domains is None else domains)
        self._skip = frozenset(k for d, keys in DOMAIN_ARRAYS.items() if d not in self.domains
                               for k in keys)
        meta_path = self.root / "meta.json"
        if not meta_path.is_file():
            raise DatasetError(f"{self.root} is not a dataset folder (no meta.json)")
        if cond_background not in ("grey", "raw"):
            raise DatasetError(f"cond_background must be 'grey' or 'raw', got {cond_background!r}")
        self.meta = json.loads(meta_path.read_text())
        self.config = DatasetConfig.from_json(self.meta["config"])
        if objects is not None and not 1 <= objects <= len(self.config.objects):
            raise DatasetError(f"objects must be in 1..{len(self.config.objects)}, got {objects}")
        self.cell_size = self.config.cell_size
        self.cond_background = cond_background
        self.cache_shards = max(1, int(cache_shards))
        self._cache: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self.refresh()
        if not self.shards:
            raise DatasetError(f"{self.root} holds no shards yet")

    def refresh(self) -> int:
        """Take in shards written since (a dataset still rendering in the background; a shard
        file appears complete, by rename). Indices of the shards already known stay the same.
        Returns the number of samples added. ``ShardSampler`` calls it at every epoch."""
        present = sorted(int(m.group(1)) for p in self.root.iterdir() if (m := SHARD_RE.match(p.name)))
        known = set(getattr(self, "shards", []))
        new = [j for j in present if j < self.config.num_shards and j not in known]
        if not hasattr(self, "shards"):
            self.shards, self._index = [], []
        self.shards += new
        n_objects = len(self.config.objects)
        keep = n_objects if self.objects is None else self.objects
        added = [(j, r) for j in new for r, sample in enumerate(self.config.shard_rows(j))
                 if sample % n_objects < keep]      # sample i shows object i % n_objects
        self._index += added
        return len(added)

    def __len__(self) -> int:
        return len(self._index)

    def shard_of(self, index: int) -> int:
        return self._index[index][0]

    def _shard(self, j: int) -> dict[str, np.ndarray]:
        data = self._cache.pop(j, None)
        if data is None:
            data = _read_shard(shard_path(self.root, j), self._skip)
            while len(self._cache) >= self.cache_shards:
                self._cache.popitem(last=False)
        self._cache[j] = data
        return data

    def raw(self, index: int) -> dict[str, np.ndarray]:
        """Item ``index`` as stored (numpy, untiled, encoded; without the arrays of domains left
        out by ``domains``)."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        j, r = self._index[index]
        return {k: v[r] for k, v in self._shard(j).items()}

    def __getitem__(self, index: int) -> dict[str, Any]:
        s = self.raw(index)
        n = int(s["num_views"])
        img = _cells(s["images"]) / 127.5 - 1.0
        cond_mask = torch.from_numpy(s["masks"]).float()[:, None]
        if self.cond_background == "grey":
            img = img * cond_mask
        img[n:] = 0.0
        t = lambda x: tile(x, channels_last=False)  # noqa: E731
        out: dict[str, Any] = {"cond": t(img), "cond_mask": t(cond_mask)}
        for domain in ("nocs_ref", "nocs_self"):
            if domain in self.domains:
                cells, mask = _nocs_cells(s[domain])
                out[domain] = _tile_nocs(cells)
                out.setdefault("nocs_mask", t(mask.float()))     # the same pixels in both frames
        if "fixed_nocs" in self.domains:
            fixed, fixed_mask = _nocs_cells(s["fixed_nocs"])
            out["fixed_nocs"], out["fixed_mask"] = _tile_nocs(fixed), t(fixed_mask.float())
        if "fixed_rgb" in self.domains:
            rgba = _cells(s["fixed_rgba"])
            out["fixed_rgb"], out["fixed_alpha"] = t(rgba[:, :3] / 127.5 - 1.0), t(rgba[:, 3:] / 255.0)
        return {
            **out,
            "num_views": torch.tensor(n, dtype=torch.int64),
            "K": torch.from_numpy(s["K"]), "T_camera_object": torch.from_numpy(s["T_camera_object"]),
            "azimuth_self": torch.from_numpy(s["azimuth_self"]),
            "diagonal": torch.tensor(float(s["diagonal"])),
            "fixed_K": torch.from_numpy(s["fixed_K"]),
            "fixed_T_camera_object": torch.from_numpy(s["fixed_T_camera_object"]),
            "object": str(s["object"]), "index": index}


class ShardSampler(torch.utils.data.Sampler):
    """Shuffles a SparpDataset a few shards at a time, so the shard cache is not thrashed: shard
    order is shuffled, then ``shards_at_once`` shards' samples are shuffled together. Call
    ``set_epoch`` for a new order each epoch."""

    def __init__(self, dataset: SparpDataset, shards_at_once: int = 4, seed: int = 0) -> None:
        self.dataset, self.shards_at_once, self.seed, self.epoch = dataset, max(1, shards_at_once), seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[int]:
        if hasattr(self.dataset, "refresh"):
            self.dataset.refresh()          # shards rendered in the background since the last epoch
        rng = np.random.default_rng([self.seed, self.epoch])
        by_shard: dict[int, list[int]] = {}
        for i in range(len(self.dataset)):
            by_shard.setdefault(self.dataset.shard_of(i), []).append(i)
        order = rng.permutation(sorted(by_shard))
        for g in range(0, len(order), self.shards_at_once):
            group = np.concatenate([by_shard[int(j)] for j in order[g:g + self.shards_at_once]])
            yield from (int(i) for i in rng.permutation(group))


class MixedDataset(torch.utils.data.Dataset):
    """Several dataset folders as one (e.g. plain and realism renders, so that a fine-tune on the
    one does not drift on the other), items in folder order. ``shard_of`` keeps every folder's
    shards apart (folder k's shard j is ``k * SHARD_ID_STRIDE + j``), so ``ShardSampler`` mixes
    the folders a few shards at a time; ``refresh`` takes in each folder's new shards."""

    SHARD_ID_STRIDE = 1_000_000

    def __init__(self, parts: Sequence[SparpDataset]) -> None:
        if not parts:
            raise DatasetError("MixedDataset needs at least one dataset")
        sizes = {p.cell_size for p in parts}
        if len(sizes) != 1:
            raise DatasetError(f"datasets of different cell sizes cannot be mixed: {sorted(sizes)}")
        self.parts = list(parts)
        self.cell_size = parts[0].cell_size

    def refresh(self) -> int:
        return sum(p.refresh() for p in self.parts)

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def _locate(self, index: int) -> tuple[int, int]:
        if index < 0:
            index += len(self)
        for k, p in enumerate(self.parts):
            if 0 <= index < len(p):
                return k, index
            index -= len(p)
        raise IndexError("MixedDataset index out of range")

    def shard_of(self, index: int) -> int:
        k, i = self._locate(index)
        return k * self.SHARD_ID_STRIDE + self.parts[k].shard_of(i)

    def __getitem__(self, index: int) -> dict:
        k, i = self._locate(index)
        return self.parts[k][i]


# -- command line ---------------------------------------------------------------------------------
def _views_range(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*(?:(?:\.\.|-|:)\s*(\d+))?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected N or LO..HI, got {text!r}")
    lo = int(m.group(1))
    return lo, int(m.group(2) or lo)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="sparp-ros dataset", description=__doc__.split("\n")[0])
    p.add_argument("--meshes", nargs="*", default=[], metavar="DIR",
                   help="folders (or files) of .glb/.obj meshes; never mix training and evaluation objects")
    p.add_argument("--out", required=True, help="output folder (shards + meta.json); resumes if it exists")
    p.add_argument("--objects", type=int, default=None, help="use N of the meshes (drawn by --seed)")
    p.add_argument("--procedural", type=int, default=0, help="add N procedural textured shapes")
    p.add_argument("--variants", type=int, default=0, metavar="K",
                   help="render every mesh as K new objects instead: stretched 0.7-1.4x per axis, "
                        "turned about the vertical, half re-textured with another mesh's texture "
                        "(more distinct objects for the small networks; 0 = the meshes as they are)")
    p.add_argument("--variant-stretch", type=float, default=VARIANT_LOG_STRETCH, metavar="A",
                   help="variants scale each axis by exp(U(-A, A)) (default %(default)s: 0.7-1.4x; "
                        "0.7: 0.5-2x, flat and long objects from compact ones)"),
    p.add_argument("--views-per-sample", type=_views_range, default=(1, MAX_VIEWS), metavar="LO..HI",
                   help="input views per sample, drawn uniformly (default 1..6)")
    p.add_argument("--samples-per-object", type=int, default=40)
    p.add_argument("--cell-size", type=int, default=32, help="cell side S in pixels")
    p.add_argument("--shard-size", type=int, default=SHARD_SIZE, help="samples per shard file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-fixed-views", action="store_true",
                   help="skip the six fixed views (~40%% less rendering; NOCS domains only)")
    p.add_argument("--realism", nargs="?", const="default", default=None, metavar="JSON",
                   help="photo-realistic input views (render/object_realism.py: wider intrinsics "
                        "and elevations, size 20-90 %% of the frame, truncation, support plane with "
                        "shadows, light types, backgrounds, distractors, camera effects); alone: the "
                        "default ObjectRealism, or a JSON file of ObjectRealism fields (as in meta.json)")
    p.add_argument("--workers", type=int, default=1, help="rendering processes")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def realism_from_arg(value: str | None) -> ObjectRealism | None:
    """``--realism``: None (off), ``default``, or a JSON file of ObjectRealism fields (missing
    fields keep their defaults; the ``scene`` and its ``camera_effects`` likewise)."""
    if value is None:
        return None
    if value == "default":
        return ObjectRealism()
    try:
        d = json.loads(Path(value).read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"--realism {value}: {exc}") from exc
    base = ObjectRealism().to_json()
    scene = {**base["scene"], **d.get("scene", {})}
    if "camera_effects" in d.get("scene", {}) and d["scene"]["camera_effects"] is not None:
        scene["camera_effects"] = {**base["scene"]["camera_effects"], **d["scene"]["camera_effects"]}
    try:
        return ObjectRealism.from_json({**base, **d, "scene": scene})
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"--realism {value}: {exc}") from exc


def run(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    """Build the dataset described by parsed ``args`` (see ``build_parser``)."""
    try:
        cfg = DatasetConfig(objects=find_objects(args.meshes, args.objects, args.procedural,
                                                     args.seed, args.variants, args.variant_stretch),
                            cell_size=args.cell_size, views=tuple(args.views_per_sample),
                            samples_per_object=args.samples_per_object, shard_size=args.shard_size,
                            seed=args.seed, fixed_views=not args.no_fixed_views,
                            realism=realism_from_arg(getattr(args, "realism", None)))
        command = ["sparp-ros", "dataset", *(argv if argv is not None else sys.argv[1:])]
        meta = build_dataset(args.out, cfg, workers=args.workers, progress=not args.quiet,
                             extra_meta={"command": " ".join(command)})
    except DatasetError as exc:
        print(f"sparp-ros dataset: error: {exc}", file=sys.stderr)
        return 2
    run_info = meta["last_run"]
    rate = run_info["samples_per_s"]
    print(f"{args.out}: {meta['num_samples']} samples of {len(cfg.objects)} objects in "
          f"{meta['num_shards']} shards, {meta['disk_bytes'] / 2**20:.1f} MiB; rendered "
          f"{run_info['samples_rendered']} now in {run_info['seconds']:.1f} s"
          + (f" ({rate:.1f} samples/s, {args.workers} worker(s))" if rate else " (all shards existed)"))
    return 0 if meta["complete"] else 1


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return run(build_parser().parse_args(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
