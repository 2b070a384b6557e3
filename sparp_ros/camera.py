"""The one camera model: intrinsics from a CameraInfo (or cameras.json frame), updated by crops and
resizes in one place, with projection maths that round-trips.

Pixel convention (OpenCV / ROS ``CameraInfo``): integer pixel coordinates are pixel *centres*; the
image spans [-0.5, W-0.5]. A crop at (x0, y0) shifts the principal point by (-x0, -y0); a resize by
factor s maps a coordinate u to (u + 0.5)·s − 0.5, so ``fx' = s·fx`` and ``cx' = (cx + 0.5)·s − 0.5``.
Distortion coefficients act on normalised coordinates, so they do not change with crops or resizes.

Distortion (``CameraInfo.distortion_model``): ``plumb_bob`` (k1 k2 p1 p2 k3) and
``rational_polynomial`` (k1 k2 p1 p2 k3 k4 k5 k6) as OpenCV's pinhole model, ``equidistant``
(k1..k4) as OpenCV's fisheye model; ``""``/``"none"`` with no (or all-zero) coefficients. Fewer
coefficients than the model has are zero-padded; more are refused unless the extra ones are zero.
:meth:`PinholeCamera.undistort` resamples an image to the ideal camera (same K, no distortion),
which is what the node does with every keyframe before the pipeline sees it.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

SUPPORTED_DISTORTION_MODELS = ("", "none", "plumb_bob", "rational_polynomial", "equidistant")
DISTORTION_COEFFICIENTS = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}
"""Coefficients of each model (D is padded with zeros to this length)."""
OPENCV_DISTORTION_LENGTHS = (0, 4, 5, 8, 12, 14)
"""D lengths OpenCV's pinhole model takes: what ``""`` / ``"none"`` with coefficients may carry."""
UNDISTORT_MAPS_CACHED = 4
"""Undistortion maps kept (one per camera seen; a robot has few)."""


class CameraError(ValueError):
    """Raised for invalid camera parameters (all-zero K, bad sizes, unknown distortion model)."""


@dataclass(frozen=True)
class PinholeCamera:
    """A pinhole camera with optional distortion, in OpenCV optical axes (x right, y down, z forward)."""

    width: int
    height: int
    K: np.ndarray
    D: np.ndarray = field(default_factory=lambda: np.zeros(0))
    distortion_model: str = ""
    frame_id: str = "camera"

    def __post_init__(self) -> None:
        K = np.asarray(self.K, dtype=np.float64).reshape(3, 3)
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "D", np.asarray(self.D, dtype=np.float64).reshape(-1))
        if self.width <= 0 or self.height <= 0:
            raise CameraError(f"image size must be positive, got {self.width}x{self.height}")
        if K[0, 0] <= 0 or K[1, 1] <= 0:
            raise CameraError(f"focal lengths must be positive, got fx={K[0, 0]}, fy={K[1, 1]} "
                              "(an all-zero K means an uncalibrated camera)")
        if not np.all(np.isfinite(K)):
            raise CameraError(f"K has non-finite entries: {K.tolist()}")
        if not np.allclose(K[2], [0.0, 0.0, 1.0]):
            raise CameraError(f"K's last row must be [0, 0, 1], got {K[2].tolist()}")
        if self.distortion_model not in SUPPORTED_DISTORTION_MODELS:
            raise CameraError(f"unsupported distortion model {self.distortion_model!r}; "
                              f"supported: {SUPPORTED_DISTORTION_MODELS}")
        object.__setattr__(self, "D", _checked_distortion(self.distortion_model, self.D))

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PinholeCamera":
        """From a ``cameras.json`` frame entry (the fields of a CameraInfo)."""
        try:
            return cls(width=int(d["width"]), height=int(d["height"]), K=np.asarray(d["K"], float),
                       D=np.asarray(d.get("D") or [], float),
                       distortion_model=d.get("distortion_model", "") or "",
                       frame_id=d.get("frame_id", "camera"))
        except KeyError as exc:
            raise CameraError(f"camera entry lacks field {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        return {"width": self.width, "height": self.height, "K": self.K.tolist(),
                "D": self.D.tolist(), "distortion_model": self.ros_distortion_model,
                "frame_id": self.frame_id}

    @property
    def has_distortion(self) -> bool:
        return self.D.size > 0 and bool(np.any(self.D != 0))

    @property
    def ros_distortion_model(self) -> str:
        """The name to publish in a CameraInfo: the model, or for ``""``/``"none"`` the OpenCV
        model the number of coefficients implies."""
        if self.distortion_model in DISTORTION_COEFFICIENTS:
            return self.distortion_model
        return "plumb_bob" if self.D.size <= DISTORTION_COEFFICIENTS["plumb_bob"] else "rational_polynomial"

    # -- crops and resizes --------------------------------------------------------------------
    def crop(self, x0: int, y0: int, width: int, height: int) -> "PinholeCamera":
        """The camera of the sub-image ``[y0:y0+height, x0:x0+width]`` (may extend past the image)."""
        K = self.K.copy()
        K[0, 2] -= x0
        K[1, 2] -= y0
        return replace(self, width=int(width), height=int(height), K=K)

    def resize(self, width: int, height: int) -> "PinholeCamera":
        """The camera of this image resized to ``width`` x ``height``."""
        return self.scaled(width / self.width, height / self.height, width, height)

    def scaled(self, sx: float, sy: float, width: int, height: int) -> "PinholeCamera":
        """The camera of this image resampled by exact factors ``sx``, ``sy`` into a
        ``width`` x ``height`` image (``resize`` when the factors are not whole-pixel ratios)."""
        K = self.K.copy()
        K[0, 0] *= sx
        K[0, 1] *= sx
        K[1, 1] *= sy
        K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
        K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
        return replace(self, width=int(width), height=int(height), K=K)

    def fit_to(self, width: int, height: int) -> "PinholeCamera":
        """This camera for an image of ``width`` x ``height``: itself when the sizes agree, scaled
        when the image is this one uniformly scaled (binning, decimation: aspect ratios equal to
        within a pixel). Raises CameraError for any other size (a crop cannot be guessed)."""
        if (width, height) == (self.width, self.height):
            return self
        sx, sy = width / self.width, height / self.height
        if width <= 0 or height <= 0 or abs(self.width * sy - width) > 1 or \
                abs(self.height * sx - height) > 1:
            raise CameraError(f"image is {width}x{height} but CameraInfo is "
                              f"{self.width}x{self.height}, not the same aspect ratio: "
                              "cannot tell which intrinsics apply")
        return self.resize(width, height)

    # -- distortion ---------------------------------------------------------------------------
    def undistorted(self) -> "PinholeCamera":
        """The ideal camera of :meth:`undistort`'s images: same size and K, no distortion."""
        return replace(self, D=np.zeros(0), distortion_model="")

    def undistort(self, image: np.ndarray, nearest: bool = False) -> np.ndarray:
        """``image`` (HxW or HxWxC of this camera's size; uint8, uint16, float32 or bool)
        resampled to :meth:`undistorted`: each ideal pixel takes the value this camera records for
        the same ray. Rays that leave this camera's image, or lie past the radius where the
        distortion polynomial folds back, are 0. ``nearest`` for depth, masks and NOCS (no
        blending across object edges); bilinear otherwise. Without distortion: ``image`` itself."""
        if not self.has_distortion:
            return image
        if image.shape[:2] != (self.height, self.width):
            raise CameraError(f"image is {image.shape[1]}x{image.shape[0]}, camera is "
                              f"{self.width}x{self.height}")
        map_x, map_y = _undistort_maps(self.width, self.height, self.K.tobytes(), self.D.tobytes(),
                                       self.distortion_model)
        src = image.astype(np.uint8) if image.dtype == bool else image
        out = cv2.remap(src, map_x, map_y, cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return out.astype(bool) if image.dtype == bool else out

    def _max_monotonic_radius(self, r_max: float) -> float:
        """The normalised radius (tan of the angle off axis) up to which the radial distortion
        keeps increasing; ``inf`` when it does up to ``r_max``. Past it a polynomial fit folds
        back and would map far rays onto the image."""
        r = np.linspace(0.0, r_max, 4096)
        k = np.zeros(8)
        k[:self.D.size] = self.D[:8]
        with np.errstate(all="ignore"):
            if self.distortion_model == "equidistant":
                th = np.arctan(r)
                rd = th * (1 + k[0] * th**2 + k[1] * th**4 + k[2] * th**6 + k[3] * th**8)
            else:
                r2 = r * r
                rd = r * (1 + k[0] * r2 + k[1] * r2**2 + k[4] * r2**3) / \
                    (1 + k[5] * r2 + k[6] * r2**2 + k[7] * r2**3)
            bad = np.nonzero(~(np.diff(rd) > 0))[0]
        return float(r[bad[0]]) if len(bad) else float("inf")

    # -- projection ---------------------------------------------------------------------------
    def project(self, points_camera: np.ndarray) -> np.ndarray:
        """Nx3 camera-frame points → Nx2 pixel coordinates (distortion applied)."""
        pts = np.asarray(points_camera, dtype=np.float64).reshape(-1, 3)
        if self.has_distortion:
            if self.distortion_model == "equidistant":
                uv, _ = cv2.fisheye.projectPoints(pts.reshape(-1, 1, 3), np.zeros(3), np.zeros(3),
                                                  self.K, self.D[:4])
            else:
                uv, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), self.K, self.D)
            return uv.reshape(-1, 2)
        z = pts[:, 2:3]
        return (pts[:, :2] / z) @ self.K[:2, :2].T + self.K[:2, 2]

    def normalized_rays(self, uv: np.ndarray) -> np.ndarray:
        """Nx2 pixels → Nx3 rays with z = 1 (distortion removed)."""
        uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
        if self.has_distortion:
            if self.distortion_model == "equidistant":
                xy = cv2.fisheye.undistortPoints(uv.reshape(-1, 1, 2), self.K, self.D[:4])
            else:
                xy = cv2.undistortPoints(uv.reshape(-1, 1, 2), self.K, self.D)
            xy = xy.reshape(-1, 2)
        else:
            Kinv = np.linalg.inv(self.K)
            xy = uv @ Kinv[:2, :2].T + Kinv[:2, 2]
        return np.concatenate([xy, np.ones((len(xy), 1))], axis=1)

    def unproject(self, uv: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Nx2 pixels with N z-depths (metres) → Nx3 camera-frame points."""
        return self.normalized_rays(uv) * np.asarray(depth, dtype=np.float64).reshape(-1, 1)

    def pixel_grid(self) -> np.ndarray:
        """HxWx2 pixel-centre coordinates (u, v)."""
        u, v = np.meshgrid(np.arange(self.width), np.arange(self.height))
        return np.stack([u, v], axis=-1).astype(np.float64)


def _checked_distortion(model: str, D: np.ndarray) -> np.ndarray:
    """``D`` padded to the model's length; CameraError for non-finite or surplus coefficients."""
    if not np.all(np.isfinite(D)):
        raise CameraError(f"distortion coefficients D are not finite: {D.tolist()}")
    n = DISTORTION_COEFFICIENTS.get(model)
    if n is None:                                   # "" / "none": what OpenCV can take
        if D.size not in OPENCV_DISTORTION_LENGTHS and np.any(D):
            raise CameraError(f"distortion model {model!r} with {D.size} coefficients; give a "
                              f"model ({', '.join(DISTORTION_COEFFICIENTS)}) or none")
        return D if np.any(D) else np.zeros(0)
    if D.size == 0:
        return D
    if np.any(D[n:]):
        raise CameraError(f"distortion model {model!r} has {n} coefficients, D has {D.size} "
                          f"with non-zero ones past the {n}th: {D.tolist()}")
    out = np.zeros(n)
    out[:min(n, D.size)] = D[:n]
    return out


OUTSIDE = -10.0
"""A map coordinate off the image: remap's constant border (0) fills it."""


@lru_cache(maxsize=UNDISTORT_MAPS_CACHED)
def _undistort_maps(width: int, height: int, K: bytes, D: bytes,
                    model: str) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps (float32 HxW each): where each pixel of the ideal camera samples the
    distorted image; OUTSIDE where the ray is past the distortion's monotonic range."""
    cam = PinholeCamera(width, height, np.frombuffer(K).reshape(3, 3), np.frombuffer(D),
                        distortion_model=model)
    ideal = cam.undistorted()
    rays = ideal.normalized_rays(ideal.pixel_grid().reshape(-1, 2))
    radius = np.linalg.norm(rays[:, :2], axis=1)
    uv = cam.project(rays)
    uv[radius >= cam._max_monotonic_radius(float(radius.max()) + 1e-9)] = OUTSIDE
    uv[~np.all(np.isfinite(uv), axis=1)] = OUTSIDE
    uv = uv.reshape(height, width, 2).astype(np.float32)
    return np.ascontiguousarray(uv[..., 0]), np.ascontiguousarray(uv[..., 1])
