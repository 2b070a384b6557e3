"""Regenerate the README's pictures: ``docs/overview.png`` and ``docs/markers.png``.

1. Render a capture of the shipped demo object (``sparp_ros/data/demo_object.glb``, 4 views,
   seed 0: what ``make demo`` plays) and reconstruct it as ``sparp-ros reconstruct`` does
   (oracle backend, mesh on); ``docs/overview.png`` is the ``overview.png`` it writes (one column
   per keyframe: input crop, NOCS, pose axes, our mesh at the estimated pose).
2. Build the messages the node publishes for that reconstruction (``messages.mesh_to_marker`` →
   ``/sparp/mesh_marker``, ``reconstruction_to_pose_stamped`` → ``/sparp/object_pose``) and draw
   them offscreen the way RViz shows them, with the project's renderer: the TRIANGLE_LIST
   marker's points and per-vertex colours as a mesh, the pose as RGB axes, the keyframe cameras
   (from the per-view poses) as frusta, over a grid on the object's ground plane, all in the
   object frame (z up) seen from an oblique viewpoint → ``docs/markers.png``.

    AMENT_PREFIX_PATH=$PWD/.venv .venv/bin/python scripts/render_docs_figures.py [--out docs]

Both PNGs are palette-quantised to stay small (< 300 KB each).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MESH = REPO / "sparp_ros" / "data" / "demo_object.glb"
VIEWS, SEED = 4, 0
VIEW_SIZE = (960, 640)                    # the RViz-style picture, pixels
BACKGROUND = (48, 48, 48)                 # RViz's default background
GRID_COLOR = (160, 160, 160)
GRID_CELL_M = 0.1
FRUSTUM_DEPTH_M = 0.05
FRUSTUM_COLOR = (255, 220, 0)
PUBLISHED_COLOR = (255, 110, 255)
AXIS_COLORS = ((255, 0, 0), (0, 255, 0), (0, 0, 255))      # x red, y green, z blue (RViz)
MAX_BYTES = 300 * 1024
LINE_PIECES = 40
FILL = 0.8
"""Fraction of the picture the object and the keyframe cameras span."""


def save_small_png(rgb: np.ndarray, path: Path, colors: int = 256) -> int:
    """Save an RGB image as a palette PNG (the pictures have few colours); returns its size."""
    from PIL import Image

    img = Image.fromarray(rgb).quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=0)
    img.save(path, optimize=True)
    return path.stat().st_size


def reconstruct(tmp: Path):
    from sparp_ros.capture import load_capture
    from sparp_ros.outputs import write_outputs
    from sparp_ros.pipeline import PipelineConfig, SparpPipeline
    from sparp_ros.render import render_capture

    render_capture(MESH, tmp / "capture", views=VIEWS, seed=SEED)
    capture = load_capture(tmp / "capture")
    recon = SparpPipeline(PipelineConfig(backend="oracle", mesh=True))(capture.frames)
    paths = write_outputs(recon, tmp / "out")
    return capture, recon, paths["overview"]


def marker_scene(recon, frame_id: str = "camera"):
    """The node's messages for ``recon``: (marker mesh in the object frame, T_camera_object of
    the published view from the PoseStamped, every keyframe's T_camera_object)."""
    from sparp_ros.ros import messages
    from sparp_ros.render.mesh_io import TexturedMesh

    view = messages.published_view(recon)
    T = recon.views[view].T_camera_object
    marker = messages.mesh_to_marker(recon.mesh, T, frame_id, 0.0)
    pose = messages.reconstruction_to_pose_stamped(recon, frame_id, 0.0, view)
    points = np.array([[p.x, p.y, p.z] for p in marker.points], np.float32)
    colors = np.array([[c.r, c.g, c.b] for c in marker.colors], np.float32)
    mesh = TexturedMesh(vertices=points, faces=np.arange(len(points)).reshape(-1, 3),
                        vertex_colors=np.clip(colors * 255, 0, 255).astype(np.uint8),
                        name="mesh_marker")
    cameras = [v.T_camera_object if v.ok else None for v in recon.views]
    return mesh, messages.pose_to_matrix(pose.pose), cameras, view


def draw_rviz_style(recon, capture) -> np.ndarray:
    from sparp_ros.camera import PinholeCamera
    from sparp_ros.conventions import invert_rigid
    from sparp_ros.render.capture_renderer import default_renderer, look_at

    mesh, T_pub_object, cameras, view = marker_scene(recon)
    lo, hi = mesh.vertices.min(0).astype(float), mesh.vertices.max(0).astype(float)
    center = (lo + hi) / 2
    centers = [invert_rigid(T)[:3, 3] for T in cameras if T is not None]
    reach = max(np.linalg.norm(c - center) for c in centers) + FRUSTUM_DEPTH_M
    w, h = VIEW_SIZE
    f = 0.9 * w
    viewer = PinholeCamera(width=w, height=h,
                           K=[[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]])
    # Look from above one side, just far enough back that the object and every keyframe
    # camera fill the picture.
    # From the middle of the widest azimuth gap between the cameras: none stands in front.
    azimuths = np.sort([np.arctan2(c[1] - center[1], c[0] - center[0]) for c in centers])
    gaps = np.diff(np.append(azimuths, azimuths[0] + 2 * np.pi))
    azimuth = azimuths[int(np.argmax(gaps))] + gaps.max() / 2
    elevation = np.radians(35)
    direction = np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                          np.sin(elevation)])
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                        for z in (lo[2], hi[2])])
    scene = np.vstack([corners] + [c[None] for c in centers])
    target = (scene.min(0) + scene.max(0)) / 2
    distance = 2.0 * reach
    for _ in range(4):
        T_viewer_object = look_at(target + distance * direction, target)
        p = scene @ T_viewer_object[:3, :3].T + T_viewer_object[:3, 3]
        uv = p[:, :2] / p[:, 2:] * f
        spread = max(np.abs(uv[:, 0]).max() / (w / 2), np.abs(uv[:, 1]).max() / (h / 2))
        distance *= spread / FILL

    depth = None                            # the mesh's z-buffer, once it is rendered

    def project(points: np.ndarray) -> np.ndarray | None:
        p = points @ T_viewer_object[:3, :3].T + T_viewer_object[:3, 3]
        if np.any(p[:, 2] <= 1e-3):
            return None
        return viewer.project(p)

    def line(img, a, b, color, thickness=2, pieces=LINE_PIECES):
        """A 3D line, in pieces hidden where the mesh is in front of them (as RViz's depth test)."""
        a, b = np.asarray(a, float), np.asarray(b, float)
        points = a + np.linspace(0, 1, pieces + 1)[:, None] * (b - a)
        cam = points @ T_viewer_object[:3, :3].T + T_viewer_object[:3, 3]
        if np.any(cam[:, 2] <= 1e-3):
            return
        uv = viewer.project(cam)
        for k in range(pieces):
            if depth is not None:
                u, v = np.round((uv[k] + uv[k + 1]) / 2).astype(int)
                z = (cam[k, 2] + cam[k + 1, 2]) / 2
                if 0 <= u < w and 0 <= v < h and 0 < depth[v, u] < z:
                    continue
            cv2.line(img, tuple(int(round(x)) for x in uv[k] * 4),
                     tuple(int(round(x)) for x in uv[k + 1] * 4), color, thickness, cv2.LINE_AA,
                     shift=2)

    img = np.empty((h, w, 3), np.uint8)
    img[:] = BACKGROUND
    # Grid on the ground plane under the object (z up in the object frame), 10 cm cells.
    ground = lo[2]
    n = int(np.ceil(1.3 * reach / GRID_CELL_M))
    cx, cy = (np.round(center[:2] / GRID_CELL_M) * GRID_CELL_M)
    for k in range(-n, n + 1):
        line(img, (cx + k * GRID_CELL_M, cy - n * GRID_CELL_M, ground),
             (cx + k * GRID_CELL_M, cy + n * GRID_CELL_M, ground), GRID_COLOR, 1, 1)
        line(img, (cx - n * GRID_CELL_M, cy + k * GRID_CELL_M, ground),
             (cx + n * GRID_CELL_M, cy + k * GRID_CELL_M, ground), GRID_COLOR, 1, 1)
    # The mesh marker, rendered with the project's renderer and laid over the grid.
    out = default_renderer().render(mesh, viewer, T_viewer_object, ambient=0.45)
    img[out.mask] = out.rgb[out.mask]
    depth = np.ascontiguousarray(out.depth)
    # Keyframe cameras as frusta (the published view highlighted), with their optical axes.
    K_inv = np.linalg.inv(capture.frames[0].camera.K)
    cw, ch = capture.frames[0].camera.width, capture.frames[0].camera.height
    corners_px = np.array([[0, 0, 1], [cw, 0, 1], [cw, ch, 1], [0, ch, 1]], float)
    for i, T in enumerate(cameras):
        if T is None:
            continue
        T_object_camera = invert_rigid(T)
        o = T_object_camera[:3, 3]
        corners = (corners_px @ K_inv.T) * FRUSTUM_DEPTH_M
        corners = corners @ T_object_camera[:3, :3].T + o
        color = PUBLISHED_COLOR if i == view else FRUSTUM_COLOR
        for k in range(4):
            line(img, o, corners[k], color)
            line(img, corners[k], corners[(k + 1) % 4], color)
        uv = project(o[None])
        if uv is not None:
            cv2.putText(img, f"view {i}", (int(uv[0, 0]) + 6, int(uv[0, 1]) - 6),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA)
    # The pose (/sparp/object_pose, also TF sparp_object) as axes at the object origin.
    T_object = invert_rigid(cameras[view]) @ T_pub_object       # identity up to rounding
    length = 0.6 * float(np.linalg.norm(hi - lo))
    for k in range(3):
        line(img, T_object[:3, 3], T_object[:3, 3] + length * T_object[:3, k], AXIS_COLORS[k], 4)
    legend = ["/sparp/mesh_marker (TRIANGLE_LIST, vertex colours)",
              "/sparp/object_pose + TF sparp_object (axes: x red, y green, z blue)",
              f"keyframe cameras (view {view}: the pose's frame)"]
    for k, text in enumerate(legend):
        cv2.putText(img, text, (12, 22 + 20 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (PUBLISHED_COLOR if k == 2 else (230, 230, 230)), 1, cv2.LINE_AA)
    return img


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        capture, recon, overview_path = reconstruct(Path(tmp))
        overview = cv2.cvtColor(cv2.imread(str(overview_path)), cv2.COLOR_BGR2RGB)
        markers = draw_rviz_style(recon, capture)
    sizes = {name: save_small_png(img, args.out / name)
             for name, img in (("overview.png", overview), ("markers.png", markers))}
    for name, size in sizes.items():
        print(f"wrote {args.out / name} ({size / 1024:.0f} KB)")
    too_big = [n for n, s in sizes.items() if s > MAX_BYTES]
    if too_big:
        print(f"larger than {MAX_BYTES // 1024} KB: {', '.join(too_big)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
