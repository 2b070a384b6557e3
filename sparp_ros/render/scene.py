"""Tabletop scenes: several meshes standing on a textured table, seen by a few cameras from above.

What a robot with an RGB-D camera sees before it has a detector: 2–4 objects at random,
non-overlapping places on a large support plane, 4 views looking down at the table from
elevations of 20–60°. A scene is rendered object by object with the project's ``MeshRenderer``
and composited by depth (exact for opaque surfaces: the renderer has no anti-aliasing), which
gives per view the RGB image, the metric depth of everything (table included, 0 where the view
passes the table's edge), an instance id image and the true pose of each object.

Conventions: world z up, the table is the plane z = 0 (its centre at the origin), the meshes
rest on it (their lowest vertex at z = 0); cameras are OpenCV cameras, ``T_world_camera`` per frame.

On disk it is a capture folder (DESIGN.md §4) extended in its one place for several objects
(``capture_objects.py``): ``masks/<id>/000.png`` per object, gt.json ``"objects"``. The frames carry
no single-object mask, so a scene tests segmentation; gt.json's single-object fields (``frames``,
``mesh``, ``object``, ``canonical``) and the NOCS maps describe the *primary* object (the one
nearest the first image's centre, the object ``sparp-ros reconstruct`` picks), so the capture is
a valid single-object capture as well.

``realism`` (``scene_realism.SceneRealism``) adds what a photograph has and the plain scene has
not: shadows, light types, backgrounds beyond the table, photo-like table tops, distractor meshes
(``distractors``; they are no object of the scene: ``TabletopScene.distractor_ids``) and camera
effects. Its draws come from their own random stream of the seed; without it a scene is exactly
what it was before the option existed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..camera import PinholeCamera
from ..capture import Capture, Frame, GroundTruth, save_capture
from ..capture_objects import ObjectTruth, save_object_masks
from ..conventions import (canonical_frame, invert_rigid, rot_z, transform_points,
                           unit_direction)
from .capture_renderer import (AMBIENT_RANGE, DEPTH_NOISE_STREAM, STAMP_STEP_S, _cached_mesh,
                               default_renderer, look_at, random_background, random_camera,
                               random_light, spread_azimuths)
from .camera_effects import apply_camera_effects
from .depth_noise import DepthNoise, apply_depth_noise
from .gl_renderer import MeshRenderer, RenderOutput
from .mesh_io import TexturedMesh
from .scene_realism import (Lighting, SceneRealism, TableShading, draw_background, draw_lighting,
                            photo_table_texture, place_distractors, shade_view)

TABLE_SIZE_M = 2.0                     # side of the square table quad, centred at the origin
TABLE_TILE_RANGE_M = (0.15, 0.6)       # the texture repeats every this many metres
TABLE_TEXTURE_PX = 512
ELEVATION_RANGE_DEG = (20.0, 60.0)
ROLL_RANGE_DEG = 5.0
FILL_RANGE = (0.75, 1.0)               # scene bounding-sphere diameter / image short side
TARGET_JITTER = 0.1                    # look-at point jitter, fraction of the scene radius
MIN_GAP_M = 0.05                       # free space between objects' footprint circles
PLACEMENT_TRIES = 200
BORDER_MARGIN_PX = 2
MAX_VIEW_TRIES = 8
BACK_OFF = 1.15
REALISM_STREAM = 0x7265616C            # the realism's draws: their own stream of the seed


class SceneRenderError(RuntimeError):
    """Objects could not be placed on the table, or a view could not frame them all."""


@dataclass
class SceneObject:
    """One object of a scene: its mesh, its pose on the table and its true masks per view."""

    id: int                            # 1, 2, ...: the value in the id images, masks/<id>/
    mesh_path: Path
    T_world_object: np.ndarray         # mesh frame → world
    masks: list[np.ndarray]            # per view HxW bool, visible pixels (all False: hidden)

    @property
    def name(self) -> str:
        return self.mesh_path.stem


@dataclass
class TabletopScene:
    capture: Capture                   # frames with RGB, depth, T_world_camera; no masks
    objects: list[SceneObject]
    ids: list[np.ndarray]              # per view HxW uint8: 0 table or nothing, k object id k
    primary: int                       # id of the object nearest view 0's image centre
    distractor_ids: list[np.ndarray] | None = None   # per view HxW uint8: k distractor k (realism)
    lighting: Lighting | None = None                 # the realism's light


def render_tabletop(mesh_paths: Sequence[str | Path], out_dir: str | Path | None = None,
                    views: int = 4, seed: int = 0, width: int | None = None,
                    height: int | None = None, renderer: MeshRenderer | None = None,
                    depth_noise: DepthNoise | None = None,
                    min_gap_m: float = MIN_GAP_M, realism: SceneRealism | None = None,
                    distractors: Sequence[str | Path] = ()) -> TabletopScene:
    """Render the meshes standing on a table, ``views`` views (saved to ``out_dir`` when given).

    Everything random derives from ``seed`` (placement, table texture, camera, views, light);
    ``depth_noise`` draws from its own stream, so a noisy scene has the images and poses of the
    clean one. ``min_gap_m`` is the free space left between the objects' footprint circles.
    ``realism`` makes the scene look like a photograph (module docstring); ``distractors`` are
    the meshes it may put around the objects (``realism.distractor_count`` of them).
    Raises ``SceneRenderError`` when the objects do not fit, ``MeshFileError`` for a bad mesh file.
    """
    # 1. Check inputs.
    if not mesh_paths:
        raise ValueError("mesh_paths is empty: a scene needs at least one object")
    if views < 1:
        raise ValueError(f"views must be >= 1, got {views}")
    if (width is None) != (height is None):
        raise ValueError(f"give width and height together, got width={width}, height={height}")
    if min_gap_m < 0:
        raise ValueError(f"min_gap_m must be >= 0, got {min_gap_m}")
    paths = [Path(p).resolve() for p in mesh_paths]
    meshes = [_cached_mesh(p, p.stat().st_mtime if p.exists() else 0.0) for p in paths]
    rng = np.random.default_rng(seed)
    rr = np.random.default_rng([seed, REALISM_STREAM]) if realism is not None else None
    renderer = renderer or default_renderer()
    # 2. The table and the objects on it.
    table_size = TABLE_SIZE_M if rr is None else float(rr.uniform(*realism.table_size_m))
    table = table_mesh(rng, table_size)
    poses = place_objects(meshes, rng, min_gap_m, table_size)
    # 3. One camera, view directions, a light fixed in the world.
    camera = random_camera(rng, width, height)
    azimuths = spread_azimuths(rng, views)
    elevation_range = (realism.elevation_deg if realism is not None and realism.elevation_deg
                       else ELEVATION_RANGE_DEG)
    elevations = np.radians(rng.uniform(*elevation_range, size=views))
    light_world = random_light(rng)
    ambient = float(rng.uniform(*AMBIENT_RANGE))
    center, radius = _scene_sphere(meshes, poses)
    # 3b. Realism: distractors around the objects, the light's kind and the table's shadows.
    extra_meshes: list[TexturedMesh] = []
    extra_poses: list[np.ndarray] = []
    extra_names: list[str] = []
    lighting = shading = None
    textures: list[np.ndarray] = []
    if rr is not None:
        n_extra = min(int(rr.integers(realism.distractor_count[0],
                                      realism.distractor_count[1] + 1)), len(distractors))
        picked = [Path(distractors[int(k)]).resolve()
                  for k in rr.choice(len(distractors), n_extra, replace=False)] if n_extra else []
        loaded = [_cached_mesh(p, p.stat().st_mtime if p.exists() else 0.0) for p in picked]
        occupied = [_footprint(m, T) for m, T in zip(meshes, poses)]
        for p, m, T in zip(picked, loaded,
                           place_distractors(rr, loaded, occupied, center, radius, realism,
                                             table_size)):
            if T is not None:
                extra_meshes.append(m)
                extra_poses.append(T)
                extra_names.append(p.stem)
        textures = [m.texture for m in [*meshes, *loaded] if m.texture is not None]
        if realism.table_kinds[int(rr.integers(len(realism.table_kinds)))] == "photo":
            photo = photo_table_texture(rr, textures)
            if photo is not None:
                table.texture = photo
        lighting = draw_lighting(rr, realism, center, light_world)
        light_world, ambient = lighting.direction, lighting.ambient
        shading = TableShading([*meshes, *extra_meshes], [*poses, *extra_poses], lighting,
                               table_size, rr)
    # 4. Render every view: table and objects composited by depth.
    fill = realism.fill_range if realism is not None and realism.fill_range else FILL_RANGE
    rendered = [_render_view(renderer, table, meshes, poses, camera, float(a), float(e), center,
                             radius, light_world, ambient, rng, fill, extra_meshes, extra_poses)
                for a, e in zip(azimuths, elevations)]
    # 5. Images over a background, sensor depth, instance masks.
    noise_rng = (np.random.default_rng([seed, DEPTH_NOISE_STREAM]) if depth_noise is not None
                 else None)
    ids = [v.ids for v in rendered]
    objects = [SceneObject(k + 1, p, T, [i == k + 1 for i in ids])
               for k, (p, T) in enumerate(zip(paths, poses))]
    primary = _primary_object(objects, camera)
    k0 = primary - 1
    frame0 = canonical_frame(meshes[k0].vertices.astype(np.float64),
                             rendered[0].T_camera_world @ poses[k0])
    frames = []
    for i, v in enumerate(rendered):
        rgb = v.rgb
        if rr is None:
            background = random_background(rng, camera.width, camera.height)
        else:
            world = _world_points(camera, v.depth, v.T_camera_world)
            table_px = v.has_geometry & (v.ids == 0) & (v.distractor_ids == 0)
            rgb = shade_view(rgb, world, table_px, v.has_geometry, lighting, shading, center)
            background = draw_background(rr, realism, camera.width, camera.height, textures,
                                         lambda w, h: random_background(rng, w, h))
        image = np.where(v.has_geometry[..., None], rgb, background).astype(np.uint8)
        depth = v.depth
        if depth_noise is not None:
            depth = apply_depth_noise(depth, image, float(camera.K[0, 0]), depth_noise, noise_rng)
        if rr is not None and realism.camera_effects is not None:
            image = apply_camera_effects(image, rr, realism.camera_effects)
        mask = objects[k0].masks[i]
        nocs = np.zeros((camera.height, camera.width, 3), np.float32)
        nocs[mask] = frame0.mesh_to_nocs(v.object_xyz[k0][mask].astype(np.float64))
        frames.append(Frame(image=image, camera=camera, depth=depth, nocs=nocs,
                            stamp=i * STAMP_STEP_S, T_world_camera=invert_rigid(v.T_camera_world)))
    # 6. Ground truth: single-object fields for the primary object, then every object.
    truths = [ObjectTruth(id=str(o.id), mesh=str(o.mesh_path), name=o.name,
                          T_world_object=o.T_world_object) for o in objects]
    gt = GroundTruth(T_camera_object=[v.T_camera_world @ poses[k0] for v in rendered],
                     metric=True, mesh=str(paths[k0]), object=paths[k0].stem,
                     extra={"canonical": {"center": frame0.center.tolist(),
                                          "diagonal": frame0.diagonal,
                                          "azimuth": frame0.azimuth},
                            "objects": [t.to_json() for t in truths],
                            "primary": str(primary),
                            "table": {"size_m": table_size, "plane_z_m": 0.0}})
    if lighting is not None:
        gt.extra["realism"] = {"light": lighting.kind, "distractors": extra_names}
    if depth_noise is not None:
        gt.extra["depth_noise"] = asdict(depth_noise)
    capture = Capture(frames=frames, gt=gt)
    if out_dir is not None:
        capture.root = save_capture(capture, out_dir)
        save_object_masks(capture.root, {str(o.id): o.masks for o in objects})
    return TabletopScene(capture=capture, objects=objects, ids=ids, primary=primary,
                         distractor_ids=[v.distractor_ids for v in rendered] if rr else None,
                         lighting=lighting)


def table_mesh(rng: np.random.Generator, size_m: float = TABLE_SIZE_M) -> TexturedMesh:
    """A square quad at z = 0 centred at the origin with a procedural, tiled texture."""
    h = size_m / 2.0
    vertices = np.array([[-h, -h, 0.0], [h, -h, 0.0], [h, h, 0.0], [-h, h, 0.0]])
    tile = float(rng.uniform(*TABLE_TILE_RANGE_M))
    uv = (vertices[:, :2] + h) / tile                   # the renderer's texture repeats
    normals = np.tile([0.0, 0.0, 1.0], (4, 1))
    return TexturedMesh(vertices, np.array([[0, 1, 2], [0, 2, 3]]), uv=uv,
                        texture=table_texture(rng), normals=normals, name="table")


def table_texture(rng: np.random.Generator, size: int = TABLE_TEXTURE_PX) -> np.ndarray:
    """A seamless-looking table top (uint8 RGB): wood grain, tiles or mottled cloth, random
    colours, with fine noise so a stereo matcher (and an RGB segmenter) sees texture."""
    c0, c1 = rng.uniform(40, 230, size=(2, 3))
    v, u = np.mgrid[0:size, 0:size].astype(np.float32) / size * 2 * np.pi   # one period per tile
    kind = int(rng.integers(3))
    if kind == 0:      # wood: warped stripes along u
        warp = sum(rng.uniform(0.2, 0.8) * np.sin(k * v + rng.uniform(0, 2 * np.pi))
                   for k in (1, 2, 3))
        t = 0.5 + 0.5 * np.sin(int(rng.integers(6, 20)) * (u + 0.15 * warp) + warp)
    elif kind == 1:    # tiles with grout lines
        n = int(rng.integers(2, 5))
        fu, fv = (u * n / (2 * np.pi)) % 1.0, (v * n / (2 * np.pi)) % 1.0
        grout = (np.minimum(fu, 1 - fu) < 0.03) | (np.minimum(fv, 1 - fv) < 0.03)
        t = np.where(grout, 1.0, 0.15 * np.sin(3 * u) * np.sin(2 * v) + 0.2).astype(np.float32)
    else:              # mottled cloth: periodic random plane waves
        t = np.zeros_like(u)
        for _ in range(5):
            ku, kv = rng.integers(-6, 7, size=2)
            t += np.sin(ku * u + kv * v + rng.uniform(0, 2 * np.pi))
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    tex = c0 + t[..., None] * (c1 - c0)
    tex += rng.normal(0.0, rng.uniform(4.0, 12.0), size=tex.shape)
    return np.clip(tex, 0, 255).astype(np.uint8)


def place_objects(meshes: Sequence[TexturedMesh], rng: np.random.Generator,
                  min_gap_m: float = MIN_GAP_M,
                  table_size_m: float = TABLE_SIZE_M) -> list[np.ndarray]:
    """T_world_object for each mesh: a random turn about z, resting on z = 0, footprint circles
    (about the bounding box's centre) at least ``min_gap_m`` apart, as close together as the
    tries allow (the area grows by 10 % after every failed round)."""
    radii, centers, bottoms = [], [], []
    for m in meshes:
        lo, hi = m.bounds.astype(np.float64)
        c = (lo[:2] + hi[:2]) / 2.0
        radii.append(float(np.linalg.norm(m.vertices[:, :2] - c, axis=1).max()))
        centers.append(c)
        bottoms.append(float(lo[2]))
    # Start from a square whose area is about that of the footprints (tightly packed scenes).
    area = max(max(radii), 0.35 * float(np.sqrt(np.sum(np.square(np.add(radii, min_gap_m))))))
    for _ in range(PLACEMENT_TRIES):
        placed: list[np.ndarray] = []
        for r in radii:
            for _ in range(50):
                p = rng.uniform(-area, area, size=2)
                if all(np.linalg.norm(p - q) >= r + radii[j] + min_gap_m
                       for j, q in enumerate(placed)):
                    placed.append(p)
                    break
            else:
                break
        if len(placed) == len(meshes):
            break
        area *= 1.1
    else:
        raise SceneRenderError(f"could not place {len(meshes)} objects on the table")
    if area + max(radii) > table_size_m / 2.0:
        raise SceneRenderError(f"{len(meshes)} objects need {2 * area:.2f} m of table, "
                               f"the table is {table_size_m} m")
    poses = []
    for p, c, z0 in zip(placed, centers, bottoms):
        T = np.eye(4)
        T[:3, :3] = rot_z(float(rng.uniform(0.0, 2 * np.pi)))
        T[:3, 3] = np.array([p[0], p[1], 0.0]) - T[:3, :3] @ np.array([c[0], c[1], z0])
        poses.append(T)
    return poses


@dataclass
class _View:
    T_camera_world: np.ndarray
    rgb: np.ndarray
    depth: np.ndarray                  # HxW float32, 0 = nothing
    ids: np.ndarray                    # HxW uint8
    has_geometry: np.ndarray           # HxW bool
    object_xyz: list[np.ndarray]       # per object HxWx3 mesh-frame points (its own render)
    distractor_ids: np.ndarray         # HxW uint8, 0 = none


def _footprint(mesh: TexturedMesh, T_world_object: np.ndarray) -> tuple[np.ndarray, float]:
    """The footprint circle of a placed mesh: world (x, y) of its bounding box centre, radius."""
    lo, hi = np.asarray(mesh.bounds, np.float64)
    c = (lo[:2] + hi[:2]) / 2.0
    centre = T_world_object[:3, :3] @ np.array([c[0], c[1], 0.0]) + T_world_object[:3, 3]
    return centre[:2], float(np.linalg.norm(np.asarray(mesh.vertices)[:, :2] - c, axis=1).max())


def _world_points(camera: PinholeCamera, depth: np.ndarray, T_camera_world: np.ndarray
                  ) -> np.ndarray:
    """HxWx3 world points of a depth image (0 depth gives the camera centre)."""
    pts = camera.unproject(camera.pixel_grid().reshape(-1, 2), depth.reshape(-1))
    return transform_points(invert_rigid(T_camera_world), pts).reshape(*depth.shape, 3)


def _scene_sphere(meshes: Sequence[TexturedMesh],
                  poses: Sequence[np.ndarray]) -> tuple[np.ndarray, float]:
    """Centre and radius of a sphere around every object's bounding-box corners (world)."""
    corners = []
    for m, T in zip(meshes, poses):
        lo, hi = m.bounds.astype(np.float64)
        box = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                        for z in (lo[2], hi[2])])
        corners.append(box @ T[:3, :3].T + T[:3, 3])
    pts = np.concatenate(corners)
    center = (pts.min(axis=0) + pts.max(axis=0)) / 2.0
    return center, float(np.linalg.norm(pts - center, axis=1).max())


def _render_view(renderer: MeshRenderer, table: TexturedMesh, meshes: Sequence[TexturedMesh],
                 poses: Sequence[np.ndarray], camera: PinholeCamera, azimuth: float,
                 elevation: float, center: np.ndarray, radius: float, light_world: np.ndarray,
                 ambient: float, rng: np.random.Generator,
                 fill_range: tuple[float, float] = FILL_RANGE,
                 extra_meshes: Sequence[TexturedMesh] = (),
                 extra_poses: Sequence[np.ndarray] = ()) -> _View:
    """One view framing every object (each silhouette clear of the border); backs off until so.
    The ``extra`` meshes (distractors) are drawn too, wherever they fall."""
    f = float(camera.K[0, 0])
    short_side = min(camera.width, camera.height)
    distance = 2.0 * f * radius / (rng.uniform(*fill_range) * short_side)
    roll = np.radians(rng.uniform(-ROLL_RANGE_DEG, ROLL_RANGE_DEG))
    target = center + np.append(rng.uniform(-TARGET_JITTER, TARGET_JITTER, size=2) * radius, 0.0)
    direction = unit_direction(azimuth, elevation)
    for _ in range(MAX_VIEW_TRIES):
        T_camera_world = look_at(target + distance * direction, target, roll)
        light = T_camera_world[:3, :3] @ light_world
        outs = [renderer.render(m, camera, T_camera_world @ T, light_dir=light, ambient=ambient)
                for m, T in zip(meshes, poses)]
        if all(o.mask.any() and not _touches_border(o.mask) for o in outs):
            base = renderer.render(table, camera, T_camera_world, light_dir=light, ambient=ambient)
            extra = [renderer.render(m, camera, T_camera_world @ T, light_dir=light,
                                     ambient=ambient) for m, T in zip(extra_meshes, extra_poses)]
            return _composite(T_camera_world, base, outs, extra)
        distance *= BACK_OFF
    raise SceneRenderError(f"could not frame every object in a {camera.width}x{camera.height} "
                           f"image at azimuth {np.degrees(azimuth):.0f}°, "
                           f"elevation {np.degrees(elevation):.0f}°")


def _composite(T_camera_world: np.ndarray, table: RenderOutput,
               objects: Sequence[RenderOutput], extra: Sequence[RenderOutput] = ()) -> _View:
    """The nearest surface per pixel: layer 0 is the table, layer k object k (id k), then the
    distractors (their own ids, not objects)."""
    layers = [table, *objects, *extra]
    z = np.stack([np.where(o.mask, o.depth, np.inf) for o in layers])
    nearest = np.argmin(z, axis=0)
    has = np.isfinite(np.take_along_axis(z, nearest[None], axis=0)[0])
    rgb = np.take_along_axis(np.stack([o.rgb for o in layers]), nearest[None, ..., None],
                             axis=0)[0]
    depth = np.where(has, np.take_along_axis(z, nearest[None], axis=0)[0], 0.0).astype(np.float32)
    n = len(objects)
    ids = np.where(has & (nearest <= n), nearest, 0).astype(np.uint8)
    distractor_ids = np.where(has & (nearest > n), nearest - n, 0).astype(np.uint8)
    return _View(T_camera_world, rgb, depth, ids, has,
                 [np.ascontiguousarray(o.xyz) for o in objects], distractor_ids)


def _touches_border(mask: np.ndarray, margin: int = BORDER_MARGIN_PX) -> bool:
    m = margin
    return bool(mask[:m].any() or mask[-m:].any() or mask[:, :m].any() or mask[:, -m:].any())


def _primary_object(objects: Sequence[SceneObject], camera: PinholeCamera) -> int:
    """Id of the object whose visible pixels in view 0 are centred nearest the image centre."""
    centre = np.array([(camera.width - 1) / 2.0, (camera.height - 1) / 2.0])
    best, best_d = objects[0].id, np.inf
    for o in objects:
        ys, xs = np.nonzero(o.masks[0])
        if len(xs) == 0:
            continue
        d = float(np.hypot(xs.mean() - centre[0], ys.mean() - centre[1]))
        if d < best_d:
            best, best_d = o.id, d
    return best


def colorize_ids(ids: np.ndarray) -> np.ndarray:
    """An id image as RGB for looking at (0 black)."""
    palette = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200],
                        [245, 130, 48], [145, 30, 180], [70, 240, 240]], np.uint8)
    return palette[np.asarray(ids) % len(palette)]


__all__ = ["render_tabletop", "TabletopScene", "SceneObject", "SceneRenderError", "SceneRealism",
           "table_mesh",
           "table_texture", "place_objects", "colorize_ids"]
