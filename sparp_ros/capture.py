"""The capture folder (DESIGN.md §4): one on-disk format for the CLI, bags, tests and evaluation.

::

    capture/images/000.png   RGB keyframes; the first is the reference view
    capture/depth/000.png    optional uint16 millimetres, 0 = no depth
    capture/masks/000.png    optional uint8, object > 127
    capture/nocs/000.png     optional ground-truth NOCS (conventions.encode_nocs_png)
    capture/cameras.json     {"frames": [{image, depth, mask, nocs, width, height, K, D, ...}]}
    capture/gt.json          optional {"frames": [{"T_camera_object"}], "metric", "mesh", "object"}
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .camera import CameraError, PinholeCamera
from .conventions import CanonicalFrame, decode_nocs_png, encode_nocs_png


class CaptureError(ValueError):
    """A capture folder is missing, malformed or inconsistent; the message names the file."""


def _known_depth(depth: np.ndarray) -> np.ndarray:
    """Depth with every value that is not a measurement (NaN, ±inf: REP 118's "no return";
    negative) set to 0, our "unknown", as float32. Why here: ``ros.messages`` cleans depth images from
    topics, but a frame built in Python would otherwise carry inf into the depth scale fit and
    the measured surfaces. The array itself when it is already clean."""
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise CaptureError(f"depth must be HxW metres, got shape {depth.shape}")
    as_float = depth.astype(np.float32, copy=False)
    bad = ~np.isfinite(as_float) | (as_float < 0)
    if not bad.any():
        return as_float
    return np.where(bad, np.float32(0.0), as_float)


@dataclass
class Frame:
    """One keyframe: an RGB image with its camera and optional depth, mask and NOCS."""

    image: np.ndarray                       # HxWx3 uint8 RGB
    camera: PinholeCamera
    depth: np.ndarray | None = None         # HxW float32 metres, 0 = unknown (NaN, ±inf and
                                            # negative values become 0, see __post_init__)
    mask: np.ndarray | None = None          # HxW bool
    nocs: np.ndarray | None = None          # HxWx3 float32 in [0, 1], ground truth only
    stamp: float | None = None
    T_world_camera: np.ndarray | None = None

    def __post_init__(self) -> None:
        h, w = self.image.shape[:2]
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise CaptureError(f"image must be HxWx3 uint8 RGB, got {self.image.dtype} {self.image.shape}")
        if (w, h) != (self.camera.width, self.camera.height):
            raise CaptureError(f"image is {w}x{h} but its camera says "
                               f"{self.camera.width}x{self.camera.height}")
        for name in ("depth", "mask", "nocs"):
            arr = getattr(self, name)
            if arr is not None and arr.shape[:2] != (h, w):
                raise CaptureError(f"{name} is {arr.shape[1]}x{arr.shape[0]}, image is {w}x{h}")
        if self.depth is not None:
            self.depth = _known_depth(self.depth)

    @classmethod
    def from_sensor(cls, image: np.ndarray, camera: PinholeCamera, **parts: Any) -> "Frame":
        """A frame as a camera driver delivers it: the CameraInfo's intrinsics fitted to the
        (possibly binned) image size, then everything undistorted — what the node and the bag
        reader both hand to the keyframe buffer. Raises ``CameraError`` / ``CaptureError``."""
        return cls(image=image, camera=camera.fit_to(image.shape[1], image.shape[0]),
                   **parts).undistorted()

    def undistorted(self) -> "Frame":
        """This frame resampled to its camera without distortion (``PinholeCamera.undistort``:
        the image bilinear; depth, mask and NOCS nearest), which is what the pipeline and the
        model assume. The frame itself when its camera has no distortion."""
        cam = self.camera
        if not cam.has_distortion:
            return self
        return replace(self, image=cam.undistort(self.image), camera=cam.undistorted(),
                       depth=None if self.depth is None else cam.undistort(self.depth, nearest=True),
                       mask=None if self.mask is None else cam.undistort(self.mask, nearest=True),
                       nocs=None if self.nocs is None else cam.undistort(self.nocs, nearest=True))


@dataclass
class GroundTruth:
    """Evaluation-only truth. ``T_camera_object`` may use any rigid object frame of the source."""

    T_camera_object: list[np.ndarray]
    metric: bool = True
    mesh: str | None = None
    object: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def canonical_frame(self) -> CanonicalFrame:
        """The canonical object frame our renderer records (``extra["canonical"]``: view 0's frame,
        DESIGN.md §1), in which the true NOCS maps are written: ``T_camera_object[i] @
        frame.T_mesh_object`` is view i's true pose in it. :class:`CaptureError` for ground truth
        without one (captures from other sources)."""
        c = self.extra.get("canonical")
        try:
            return CanonicalFrame(np.asarray(c["center"], float), float(c["diagonal"]), float(c["azimuth"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CaptureError(f"ground truth without a canonical frame (extra['canonical']): {exc!r}") from exc


@dataclass
class Capture:
    frames: list[Frame]
    gt: GroundTruth | None = None
    root: Path | None = None

    def mesh_path(self) -> Path | None:
        if self.gt is None or not self.gt.mesh:
            return None
        p = Path(self.gt.mesh)
        return p if p.is_absolute() or self.root is None else self.root / p


def _read(path: Path, flags: int) -> np.ndarray:
    img = cv2.imread(str(path), flags)
    if img is None:
        raise CaptureError(f"cannot read image {path}")
    return img


def load_capture(root: str | Path, with_nocs: bool = True) -> Capture:
    """Read a capture folder; raises CaptureError naming the offending file."""
    root = Path(root)
    cams_path = root / "cameras.json"
    if not cams_path.is_file():
        raise CaptureError(f"{root} is not a capture folder: {cams_path} is missing")
    try:
        entries = json.loads(cams_path.read_text())["frames"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CaptureError(f"{cams_path}: malformed ({exc})") from exc
    if not entries:
        raise CaptureError(f"{cams_path}: no frames")
    frames = []
    for i, e in enumerate(entries):
        try:
            camera = PinholeCamera.from_dict(e)
        except CameraError as exc:
            raise CaptureError(f"{cams_path} frame {i}: {exc}") from exc
        bgr = _read(root / e["image"], cv2.IMREAD_COLOR)
        frame = Frame(image=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), camera=camera,
                      stamp=e.get("stamp"))
        if e.get("depth") and (root / e["depth"]).exists():
            d = _read(root / e["depth"], cv2.IMREAD_UNCHANGED)
            if d.dtype != np.uint16 or d.ndim != 2:
                raise CaptureError(f"{root / e['depth']}: depth must be uint16 millimetres")
            frame.depth = d.astype(np.float32) / 1000.0
        if e.get("mask") and (root / e["mask"]).exists():
            frame.mask = _read(root / e["mask"], cv2.IMREAD_GRAYSCALE) > 127
        if with_nocs and e.get("nocs") and (root / e["nocs"]).exists():
            n = _read(root / e["nocs"], cv2.IMREAD_UNCHANGED)
            frame.nocs, nmask = decode_nocs_png(n[..., ::-1].copy())
        if e.get("T_world_camera") is not None:
            frame.T_world_camera = np.asarray(e["T_world_camera"], float)
        frame.__post_init__()
        frames.append(frame)
    gt = None
    if (root / "gt.json").is_file():
        g = json.loads((root / "gt.json").read_text())
        extra = {k: v for k, v in g.items() if k not in ("frames", "metric", "mesh", "object")}
        gt = GroundTruth(T_camera_object=[np.asarray(f["T_camera_object"], float) for f in g["frames"]],
                         metric=bool(g.get("metric", True)), mesh=g.get("mesh"),
                         object=g.get("object"), extra=extra)
        if len(gt.T_camera_object) != len(frames):
            raise CaptureError(f"{root / 'gt.json'} has {len(gt.T_camera_object)} frames, "
                               f"cameras.json {len(frames)}")
    return Capture(frames=frames, gt=gt, root=root)


def save_capture(capture: Capture, root: str | Path) -> Path:
    """Write a capture folder (overwrites files of the same names)."""
    root = Path(root)
    for sub in ("images", "depth", "masks", "nocs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    entries = []
    for i, f in enumerate(capture.frames):
        name = f"{i:03d}.png"
        e: dict[str, Any] = {"image": f"images/{name}", **f.camera.to_dict()}
        cv2.imwrite(str(root / e["image"]), cv2.cvtColor(f.image, cv2.COLOR_RGB2BGR))
        if f.depth is not None:
            e["depth"] = f"depth/{name}"
            mm = np.clip(np.round(np.nan_to_num(f.depth) * 1000.0), 0, 65535).astype(np.uint16)
            cv2.imwrite(str(root / e["depth"]), mm)
        if f.mask is not None:
            e["mask"] = f"masks/{name}"
            cv2.imwrite(str(root / e["mask"]), f.mask.astype(np.uint8) * 255)
        if f.nocs is not None:
            e["nocs"] = f"nocs/{name}"
            mask = f.mask if f.mask is not None else np.any(f.nocs > 0, axis=2)
            cv2.imwrite(str(root / e["nocs"]), encode_nocs_png(f.nocs, mask)[..., ::-1])
        if f.stamp is not None:
            e["stamp"] = float(f.stamp)
        if f.T_world_camera is not None:
            e["T_world_camera"] = np.asarray(f.T_world_camera).tolist()
        entries.append(e)
    (root / "cameras.json").write_text(json.dumps({"frames": entries}, indent=1))
    if capture.gt is not None:
        g = {"frames": [{"T_camera_object": np.asarray(T).tolist()} for T in capture.gt.T_camera_object],
             "metric": capture.gt.metric, **capture.gt.extra}
        if capture.gt.mesh:
            g["mesh"] = capture.gt.mesh
        if capture.gt.object:
            g["object"] = capture.gt.object
        (root / "gt.json").write_text(json.dumps(g, indent=1))
    return root
