"""The one camera model: intrinsics from a CameraInfo (or cameras.json frame), updated by crops and
resizes in one place, with projection maths that round-trips.

Pixel convention (OpenCV / ROS ``CameraInfo``): integer pixel coordinates are pixel *centres*; the
image spans [-0.5, W-0.5]. A crop at (x0, y0) shifts the principal point by (-x0, -y0); a resize by
factor s maps a coordinate u to (u + 0.5)·s − 0.5, so ``fx' = s·fx`` and ``cx' = (cx + 0.5)·s − 0.5``.
Distortion coefficients act on normalised coordinates, so they do not change with crops or resizes.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

SUPPORTED_DISTORTION_MODELS = ("", "none", "plumb_bob", "rational_polynomial", "equidistant")


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
        if self.distortion_model not in SUPPORTED_DISTORTION_MODELS:
            raise CameraError(f"unsupported distortion model {self.distortion_model!r}; "
                              f"supported: {SUPPORTED_DISTORTION_MODELS}")

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
                "D": self.D.tolist(), "distortion_model": self.distortion_model or "plumb_bob",
                "frame_id": self.frame_id}

    @property
    def has_distortion(self) -> bool:
        return self.D.size > 0 and bool(np.any(self.D != 0))

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
