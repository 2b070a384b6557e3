"""Conventions: frames, units and the NOCS encoding, stated once and used everywhere.

Frames (transforms are named ``T_<dst>_<src>``, so ``p_dst = T_dst_src @ p_src`` and
``T_c_a = T_c_b @ T_b_a``):

* **camera**: OpenCV optical axes, x right, y down, z forward, metres.
* **mesh**: the frame a mesh file is stored in (the shared meshes: +Z up, resting on z≈0, metres).
* **object**: our canonical object frame, the one we estimate and publish. Origin at the centre of
  the object's bounding box *in its own resting frame*, z up (against gravity), x towards the
  reference (first) camera projected on the ground plane, so the reference view has azimuth 0.
  Metres. The bounding box is taken in the resting frame, not in the rotated one, so that the
  centre and size do not change when the object turns about its up axis: frames attached to
  different views differ only by a rotation about z.
* **nocs**: the object frame scaled so the bounding-box diagonal is 1 and shifted by +0.5, so every
  surface point lies in [0, 1]³: ``p_nocs = p_object / diagonal + 0.5``. A NOCS pixel's colour is
  its coordinate.

NOCS images on disk (capture ``nocs/*.png``): uint16 RGB, ``0`` in all channels = background,
otherwise ``value = 1 + round(nocs * NOCS_PNG_RANGE)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NOCS_PNG_RANGE = 65534
"""NOCS coordinate 1.0 encodes as 65535; 0 is kept for background."""


def encode_nocs_png(nocs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Encode an HxWx3 float NOCS map in [0, 1] as uint16 with 0 = background."""
    if nocs.ndim != 3 or nocs.shape[2] != 3:
        raise ValueError(f"nocs must be HxWx3, got shape {nocs.shape}")
    out = 1 + np.round(np.clip(nocs, 0.0, 1.0) * NOCS_PNG_RANGE)
    out[~mask.astype(bool)] = 0
    return out.astype(np.uint16)


def decode_nocs_png(encoded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decode a uint16 NOCS image into (float32 NOCS in [0, 1], bool mask)."""
    if encoded.dtype != np.uint16 or encoded.ndim != 3 or encoded.shape[2] != 3:
        raise ValueError(f"NOCS image must be HxWx3 uint16, got {encoded.dtype} {encoded.shape}")
    mask = np.any(encoded > 0, axis=2)
    nocs = (encoded.astype(np.float32) - 1.0) / NOCS_PNG_RANGE
    nocs[~mask] = 0.0
    return np.clip(nocs, 0.0, 1.0), mask


@dataclass(frozen=True)
class CanonicalFrame:
    """Where the canonical object frame sits in a mesh's own frame.

    ``center`` (mesh frame, metres) and ``diagonal`` (metres) come from the mesh's bounding box in
    its resting frame; ``azimuth`` (radians) is the angle about +z from the mesh x axis to the
    object x axis (towards the reference camera).
    """

    center: np.ndarray
    diagonal: float
    azimuth: float

    @property
    def T_mesh_object(self) -> np.ndarray:
        """Rigid transform mapping object-frame points (metres) into the mesh frame."""
        T = np.eye(4)
        T[:3, :3] = rot_z(self.azimuth)
        T[:3, 3] = self.center
        return T

    @property
    def T_object_mesh(self) -> np.ndarray:
        return invert_rigid(self.T_mesh_object)

    def mesh_to_nocs(self, points_mesh: np.ndarray) -> np.ndarray:
        """Map Nx3 mesh-frame points to NOCS coordinates."""
        return object_to_nocs(transform_points(self.T_object_mesh, points_mesh), self.diagonal)


def canonical_frame(vertices_mesh: np.ndarray, T_camera_mesh_reference: np.ndarray,
                    up_mesh: np.ndarray | None = None) -> CanonicalFrame:
    """The canonical frame of a mesh seen from a reference camera.

    ``up_mesh`` must be +z (the meshes are stored upright); it is a parameter only to state the
    assumption where it is used.
    """
    if up_mesh is not None and not np.allclose(up_mesh, [0.0, 0.0, 1.0]):
        raise ValueError(f"only +z up meshes are supported, got up={up_mesh}")
    lo, hi = vertices_mesh.min(axis=0), vertices_mesh.max(axis=0)
    center = (lo + hi) / 2.0
    diagonal = float(np.linalg.norm(hi - lo))
    if diagonal <= 0:
        raise ValueError("mesh has a degenerate bounding box")
    return CanonicalFrame(center=center, diagonal=diagonal,
                          azimuth=camera_azimuth(T_camera_mesh_reference, center))


def camera_azimuth(T_camera_frame: np.ndarray, center: np.ndarray | None = None) -> float:
    """Azimuth (radians, about +z) of a camera's centre seen from ``center`` of a z-up frame; this
    is what points a canonical frame's x axis at that camera."""
    d = invert_rigid(T_camera_frame)[:3, 3] - (0.0 if center is None else center)
    return float(np.arctan2(d[1], d[0])) if np.hypot(d[0], d[1]) > 1e-9 else 0.0


def rot_z(angle: float) -> np.ndarray:
    """3x3 rotation by ``angle`` (radians) about +z, the up axis."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def unit_direction(azimuth: float, elevation: float) -> np.ndarray:
    """Unit vector at ``azimuth`` about +z and ``elevation`` above the ground plane (radians)."""
    return np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                     np.sin(elevation)])


def object_to_nocs(points_object: np.ndarray, diagonal: float) -> np.ndarray:
    """Object frame (metres) → NOCS in [0, 1]³."""
    return points_object / diagonal + 0.5


def nocs_to_object(points_nocs: np.ndarray, diagonal: float = 1.0) -> np.ndarray:
    """NOCS → object frame; with ``diagonal=1`` the unit-scale object frame used by PnP."""
    return (points_nocs - 0.5) * diagonal


def invert_rigid(T: np.ndarray) -> np.ndarray:
    """Inverse of a 4x4 rigid transform."""
    R, t = T[:3, :3], T[:3, 3]
    out = np.eye(4)
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ t
    return out


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to Nx3 points."""
    return points @ T[:3, :3].T + T[:3, 3]


def rotation_angle_deg(R: np.ndarray) -> float:
    """Angle of a rotation matrix, in degrees (robust near 0 and 180)."""
    c = np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0)
    return float(np.degrees(np.arccos(c)))


def wrap_deg(angle: float) -> float:
    """An angle in degrees wrapped into [-180, 180)."""
    return float((angle + 180.0) % 360.0 - 180.0)


def matrix_to_quaternion(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w), w >= 0 (ROS's order), of a 3x3 rotation (scipy's Rotation)."""
    from scipy.spatial.transform import Rotation
    q = Rotation.from_matrix(np.asarray(R, dtype=np.float64)).as_quat()
    return -q if q[3] < 0 else q


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """3x3 rotation of a quaternion (x, y, z, w), normalised first (scipy's Rotation)."""
    from scipy.spatial.transform import Rotation
    return Rotation.from_quat(np.asarray(q, dtype=np.float64)).as_matrix()


def slerp(q0: np.ndarray, q1: np.ndarray, ratio: float) -> np.ndarray:
    """Spherical linear interpolation between unit quaternions (x, y, z, w), along the shorter arc
    (scipy's Slerp)."""
    from scipy.spatial.transform import Rotation, Slerp
    return Slerp([0.0, 1.0], Rotation.from_quat(np.stack([q0, q1])))([float(ratio)]).as_quat()[0]


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation taking direction ``a`` to direction ``b`` (3x3; for opposite
    directions a half turn about an axis perpendicular to ``a``)."""
    from scipy.spatial.transform import Rotation
    a = np.asarray(a, np.float64) / np.linalg.norm(a)
    b = np.asarray(b, np.float64) / np.linalg.norm(b)
    if np.dot(a, b) < -1.0 + 1e-12:
        perp = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
        return Rotation.from_rotvec(np.pi * perp / np.linalg.norm(perp)).as_matrix()
    R, _ = Rotation.align_vectors(b[None], a[None])
    return R.as_matrix()


# An evaluation method "<backend>+tf" may align the views by the captures' camera poses, as a robot
# with TF does; without the suffix the views are aligned from the images alone (what relative-
# rotation metrics measure: the camera poses would give them for free).
CAMERA_MOTION_SUFFIX = "+tf"
# "<backend>+images": the views are aligned from the images alone even where the capture has depth
# (which otherwise gives the azimuth search the measured surfaces and the view-angle network the
# surface's slant); depth still gives the scale.
IMAGES_ONLY_SUFFIX = "+images"
METHOD_SUFFIXES = (CAMERA_MOTION_SUFFIX, IMAGES_ONLY_SUFFIX)
