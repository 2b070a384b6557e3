"""ROS messages ⇄ numpy and our result types: the one place that knows both sides.

Everything here is a pure function of its arguments (no node, no I/O), so it is tested with the
real message classes and round trips. Frames follow ``sparp_ros.conventions``: a transform
``T_<dst>_<src>`` is published with ``frame_id=<dst>`` and ``child_frame_id=<src>``; camera frames
are OpenCV optical frames (x right, y down, z forward), metres.

Images are converted here rather than with cv_bridge, which is not available with the PyPI ROS
wheels: the readers below hand the message's fields to ``sparp_ros.image_codec`` (ROS-free, so
bags and fuzz tests use it without messages), which follows cv_bridge (``step`` and
``is_bigendian`` honoured, one error type for every conversion failure).

Errors: :class:`ImageConversionError` for an ``Image`` or ``CompressedImage`` that cannot be read
(unsupported encoding, wrong ``step``, truncated data, zero size, larger than ``max_side``);
:class:`sparp_ros.camera.CameraError` for a ``CameraInfo`` that does not describe a calibrated
camera.
"""
from __future__ import annotations

import array
import sys
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Pose, PoseStamped, Quaternion, TransformStamped, Vector3
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from shape_msgs.msg import Mesh, MeshTriangle
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker

from ..camera import CameraError, PinholeCamera
from ..conventions import decode_nocs_png, encode_nocs_png, matrix_to_quaternion  # noqa: F401 (messages.matrix_to_quaternion)
from ..health import Health
from ..image_codec import (DEPTH_ENCODINGS, ENCODINGS, MAX_IMAGE_SIDE, MM_PER_M,  # noqa: F401
                          RGB_ENCODINGS, ImageConversionError, compressed_to_rgb, raw_to_depth,
                          raw_to_mask, raw_to_numpy, raw_to_rgb)
from ..reconstruction import Reconstruction

OBJECT_FRAME = "sparp_object"
"""Default TF child frame of the reconstructed object."""



# -- time and headers ------------------------------------------------------------------------------
def stamp_to_seconds(stamp: Time) -> float:
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def seconds_to_stamp(seconds: float) -> Time:
    ns = int(round(seconds * 1e9))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def header(frame_id: str, stamp: Time | float | None) -> Header:
    """A std_msgs Header; ``stamp`` in seconds or a Time (None: zero, "latest" for tf2)."""
    if stamp is None:
        stamp = Time()
    elif not isinstance(stamp, Time):
        stamp = seconds_to_stamp(float(stamp))
    return Header(frame_id=frame_id, stamp=stamp)


# -- images ----------------------------------------------------------------------------------------
def _raw_fields(msg: Image) -> tuple:
    return msg.data, msg.width, msg.height, msg.encoding, msg.step, msg.is_bigendian


def image_to_numpy(msg: Image, max_side: int = MAX_IMAGE_SIDE) -> np.ndarray:
    """The pixels of ``msg`` as an HxW (one channel) or HxWxC array of the encoding's dtype, in
    native byte order, channels as stored (no BGR→RGB swap; see :func:`image_to_rgb`).
    ``image_codec.raw_to_numpy`` on the message's fields: raises ImageConversionError for an
    unsupported encoding, zero size or a side over ``max_side``, a ``step`` shorter than a row,
    or ``data`` that is not exactly ``step * height`` bytes."""
    return raw_to_numpy(*_raw_fields(msg), max_side=max_side)


def numpy_to_image(arr: np.ndarray, encoding: str, frame_id: str = "",
                   stamp: Time | float | None = None) -> Image:
    """An ``Image`` from an array whose dtype and channels match ``encoding`` (native byte order,
    packed rows)."""
    if encoding not in ENCODINGS:
        raise ImageConversionError(f"unsupported image encoding {encoding!r}; "
                                   f"supported: {sorted(ENCODINGS)}")
    dtype, channels = ENCODINGS[encoding]
    arr = np.asarray(arr)
    shape_ok = arr.ndim == 2 if channels == 1 else (arr.ndim == 3 and arr.shape[2] == channels)
    if channels == 1 and arr.ndim == 3 and arr.shape[2] == 1:
        arr, shape_ok = arr[..., 0], True
    if arr.dtype != np.dtype(dtype) or not shape_ok:
        raise ImageConversionError(f"encoding {encoding} needs {np.dtype(dtype).name} with "
                                   f"{channels} channel(s), got {arr.dtype} {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageConversionError(f"image has zero size {arr.shape}")
    arr = np.ascontiguousarray(arr)
    msg = Image(header=header(frame_id, stamp), height=arr.shape[0], width=arr.shape[1],
                encoding=encoding, is_bigendian=int(sys.byteorder == "big"),
                step=arr.shape[1] * channels * arr.itemsize)
    msg.data = array.array("B", arr.tobytes())
    return msg


def image_to_rgb(msg: Image, max_side: int = MAX_IMAGE_SIDE) -> np.ndarray:
    """HxWx3 uint8 RGB from any colour, mono, YUV 4:2:2 or Bayer encoding
    (``image_codec.RGB_ENCODINGS``; alpha dropped, mono replicated, 16-bit scaled to 8)."""
    return raw_to_rgb(*_raw_fields(msg), max_side=max_side)


def compressed_image_to_rgb(msg: CompressedImage, max_side: int = MAX_IMAGE_SIDE) -> np.ndarray:
    """HxWx3 uint8 RGB from a JPEG or PNG ``CompressedImage`` (image_transport ``compressed``)."""
    return compressed_to_rgb(msg.data, msg.format, max_side=max_side)


def image_to_depth(msg: Image, max_side: int = MAX_IMAGE_SIDE) -> np.ndarray:
    """HxW float32 depth in metres, 0 = unknown (16UC1/mono16 in mm, 32FC1 in m; NaN/inf → 0)."""
    return raw_to_depth(*_raw_fields(msg), max_side=max_side)


def depth_to_image(depth_m: np.ndarray, frame_id: str = "", stamp: Time | float | None = None,
                   encoding: str = "16UC1") -> Image:
    """A depth image from metres: 16UC1 millimetres (rounded, clipped) or 32FC1 metres."""
    depth_m = np.nan_to_num(np.asarray(depth_m, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if encoding == "32FC1":
        return numpy_to_image(depth_m, encoding, frame_id, stamp)
    if encoding not in ("16UC1", "mono16"):
        raise ImageConversionError(f"depth encoding must be 16UC1, mono16 or 32FC1, got {encoding!r}")
    mm = np.clip(np.round(depth_m * MM_PER_M), 0, np.iinfo(np.uint16).max).astype(np.uint16)
    return numpy_to_image(mm, encoding, frame_id, stamp)


def image_to_mask(msg: Image, max_side: int = MAX_IMAGE_SIDE) -> np.ndarray:
    """HxW bool object mask from a mono8/8UC1 image (object > 127)."""
    return raw_to_mask(*_raw_fields(msg), max_side=max_side)


def mask_to_image(mask: np.ndarray, frame_id: str = "", stamp: Time | float | None = None) -> Image:
    return numpy_to_image(np.asarray(mask, bool).astype(np.uint8) * 255, "mono8", frame_id, stamp)


def image_to_nocs(msg: Image) -> tuple[np.ndarray, np.ndarray]:
    """(HxWx3 float32 NOCS in [0, 1], HxW bool mask) from our 16UC3 oracle-NOCS encoding
    (``conventions.encode_nocs_png``: 0 = background)."""
    if msg.encoding != "16UC3":
        raise ImageConversionError(f"NOCS image must be 16UC3, got {msg.encoding!r}")
    return decode_nocs_png(image_to_numpy(msg))


def nocs_to_image(nocs: np.ndarray, mask: np.ndarray, frame_id: str = "",
                  stamp: Time | float | None = None) -> Image:
    return numpy_to_image(encode_nocs_png(nocs, mask), "16UC3", frame_id, stamp)


# -- cameras ---------------------------------------------------------------------------------------
def camera_info_to_camera(msg: CameraInfo) -> PinholeCamera:
    """The camera of a ``CameraInfo`` (K, D, size, frame). Binning and ROI are applied (the
    published K is for the full-resolution sensor). Raises CameraError for an uncalibrated camera
    (all-zero K), zero size, non-finite K or D, or a distortion model other than plumb_bob,
    rational_polynomial and equidistant (or more coefficients than the model has)."""
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if not np.any(K):
        raise CameraError("CameraInfo has an all-zero K: the camera is not calibrated")
    if msg.width == 0 or msg.height == 0:
        raise CameraError(f"CameraInfo has zero image size ({msg.width}x{msg.height})")
    camera = PinholeCamera(width=int(msg.width), height=int(msg.height), K=K,
                           D=np.asarray(msg.d, dtype=np.float64),
                           distortion_model=msg.distortion_model,
                           frame_id=msg.header.frame_id or "camera")
    roi = msg.roi
    if roi.width > 0 and roi.height > 0 and (roi.width, roi.height) != (msg.width, msg.height):
        camera = camera.crop(int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height))
    bx, by = max(int(msg.binning_x), 1), max(int(msg.binning_y), 1)
    if bx > 1 or by > 1:
        camera = camera.resize(camera.width // bx, camera.height // by)
    return camera


def camera_to_camera_info(camera: PinholeCamera, stamp: Time | float | None = None) -> CameraInfo:
    """A ``CameraInfo`` for ``camera`` (R = identity, P = [K | 0]: a monocular camera)."""
    P = np.zeros((3, 4))
    P[:, :3] = camera.K
    return CameraInfo(header=header(camera.frame_id, stamp), width=camera.width,
                      height=camera.height, distortion_model=camera.ros_distortion_model,
                      d=[float(x) for x in camera.D], k=[float(x) for x in camera.K.ravel()],
                      r=[float(x) for x in np.eye(3).ravel()], p=[float(x) for x in P.ravel()])


# -- poses -----------------------------------------------------------------------------------------
def matrix_to_pose(T: np.ndarray) -> Pose:
    T = np.asarray(T, dtype=np.float64)
    q = matrix_to_quaternion(T[:3, :3])
    return Pose(position=Point(x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3])),
                orientation=Quaternion(x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])))


def pose_to_matrix(pose: Pose) -> np.ndarray:
    """4x4 transform of a ``Pose`` (or the ``transform`` of a TransformStamped, see below)."""
    from scipy.spatial.transform import Rotation

    o = pose.orientation
    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat([o.x, o.y, o.z, o.w]).as_matrix()
    T[:3, 3] = [pose.position.x, pose.position.y, pose.position.z]
    return T


def transform_to_matrix(msg: TransformStamped) -> np.ndarray:
    t, q = msg.transform.translation, msg.transform.rotation
    return pose_to_matrix(Pose(position=Point(x=t.x, y=t.y, z=t.z), orientation=q))


def matrix_to_transform_stamped(T_parent_child: np.ndarray, parent: str, child: str,
                                stamp: Time | float | None = None) -> TransformStamped:
    """``T_<parent>_<child>`` as a TF transform: ``frame_id=parent``, ``child_frame_id=child``."""
    pose = matrix_to_pose(T_parent_child)
    p = pose.position
    msg = TransformStamped(header=header(parent, stamp), child_frame_id=child)
    msg.transform.translation = Vector3(x=p.x, y=p.y, z=p.z)
    msg.transform.rotation = pose.orientation
    return msg


def add_transform_stamped(buffer: Any, msg: TransformStamped, static: bool = False) -> bool:
    """Put one ``TransformStamped`` (``T_<frame_id>_<child_frame_id>``) into a
    ``tf_buffer.TransformBuffer``; False when the buffer ignored it as too old. Raises ValueError
    for a transform the buffer refuses (non-finite, zero quaternion, empty frame id, a loop)."""
    t, q = msg.transform.translation, msg.transform.rotation
    return buffer.set_transform(msg.header.frame_id, msg.child_frame_id,
                                stamp_to_seconds(msg.header.stamp), (t.x, t.y, t.z),
                                (q.x, q.y, q.z, q.w), static=static)


def published_view(recon: Reconstruction) -> int:
    """The view whose pose is published (``Reconstruction.published_view``). Raises ValueError
    when no view has a pose."""
    i = recon.published_view
    if i < 0:
        raise ValueError("the reconstruction has no view with a pose")
    return i


def reconstruction_to_pose_stamped(recon: Reconstruction, frame_id: str,
                                   stamp: Time | float | None = None,
                                   view: int | None = None,
                                   T_frame_camera: np.ndarray | None = None) -> PoseStamped:
    """``T_<frame_id>_object`` of ``view`` (default: the most recent view with a pose) as a
    PoseStamped: in that view's camera frame ``frame_id``, or, given ``T_frame_camera`` (that
    camera's pose in a fixed frame, from TF), in the fixed frame ``frame_id``."""
    i = published_view(recon) if view is None else view
    T = recon.views[i].T_camera_object
    if T is None:
        raise ValueError(f"view {i} has no pose ({recon.views[i].message})")
    if T_frame_camera is not None:
        T = np.asarray(T_frame_camera, float) @ T
    return PoseStamped(header=header(frame_id, stamp), pose=matrix_to_pose(T))


def reconstruction_to_transform_stamped(recon: Reconstruction, frame_id: str,
                                        stamp: Time | float | None = None,
                                        child_frame_id: str = OBJECT_FRAME,
                                        view: int | None = None,
                                        T_frame_camera: np.ndarray | None = None) -> TransformStamped:
    """The same pose as a TF transform: ``frame_id`` = camera (or the fixed frame, given
    ``T_frame_camera``), ``child_frame_id`` = object."""
    pose = reconstruction_to_pose_stamped(recon, frame_id, stamp, view, T_frame_camera).pose
    p, q = pose.position, pose.orientation
    msg = TransformStamped(header=header(frame_id, stamp), child_frame_id=child_frame_id)
    msg.transform.translation = Vector3(x=p.x, y=p.y, z=p.z)
    msg.transform.rotation = q
    return msg


# -- meshes ----------------------------------------------------------------------------------------
def _mesh_arrays(mesh: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(vertices Nx3 float64, faces Mx3 int, RGBA colours Nx4 float in [0, 1] or None)."""
    vertices = np.asarray(mesh.vertices, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(mesh.faces, dtype=np.int64).reshape(-1, 3)
    colors = None
    visual = getattr(mesh, "visual", None)
    if visual is not None and getattr(visual, "kind", None) == "vertex":
        vc = np.asarray(visual.vertex_colors)
        if len(vc) == len(vertices):
            colors = vc[:, :4].astype(np.float64) / 255.0 if vc.shape[1] >= 4 else np.concatenate(
                [vc[:, :3] / 255.0, np.ones((len(vc), 1))], axis=1)
    return vertices, faces, colors


def mesh_to_shape_msg(mesh: Any) -> Mesh:
    """A ``shape_msgs/Mesh`` (vertices in the mesh's frame, metres) from a trimesh-like mesh."""
    vertices, faces, _ = _mesh_arrays(mesh)
    return Mesh(vertices=[Point(x=x, y=y, z=z) for x, y, z in vertices.tolist()],
                triangles=[MeshTriangle(vertex_indices=f) for f in faces.astype(np.uint32)])


def shape_msg_to_arrays(msg: Mesh) -> tuple[np.ndarray, np.ndarray]:
    """(vertices Nx3, faces Mx3) of a ``shape_msgs/Mesh``."""
    v = np.array([[p.x, p.y, p.z] for p in msg.vertices], dtype=np.float64).reshape(-1, 3)
    f = np.array([list(t.vertex_indices) for t in msg.triangles], dtype=np.int64).reshape(-1, 3)
    return v, f


def mesh_to_marker(mesh: Any, T_frame_object: np.ndarray, frame_id: str,
                   stamp: Time | float | None = None, ns: str = "sparp", marker_id: int = 0,
                   default_color: tuple[float, float, float, float] = (0.7, 0.7, 0.7, 1.0)) -> Marker:
    """A TRIANGLE_LIST marker for RViz: three points per triangle with one colour per point
    (RViz interpolates per-vertex colours across each triangle). The marker pose places the
    object-frame mesh in ``frame_id``."""
    vertices, faces, colors = _mesh_arrays(mesh)
    marker = Marker(header=header(frame_id, stamp), ns=ns, id=int(marker_id),
                    type=Marker.TRIANGLE_LIST, action=Marker.ADD,
                    pose=matrix_to_pose(T_frame_object),
                    scale=Vector3(x=1.0, y=1.0, z=1.0),
                    color=ColorRGBA(r=default_color[0], g=default_color[1], b=default_color[2],
                                    a=default_color[3]))
    # One message object per vertex, referenced by every triangle corner that uses it:
    # serialisation copies the values, and building 3x fewer objects is most of the cost.
    corners = faces.reshape(-1).tolist()
    points = [Point(x=x, y=y, z=z) for x, y, z in vertices.tolist()]
    marker.points = [points[i] for i in corners]
    if colors is not None:
        rgba = [ColorRGBA(r=r, g=g, b=b, a=a) for r, g, b, a in colors.tolist()]
        marker.colors = [rgba[i] for i in corners]
    return marker


def mesh_resource_marker(uri: str, T_frame_object: np.ndarray, frame_id: str,
                         stamp: Time | float | None = None, ns: str = "sparp",
                         marker_id: int = 0) -> Marker:
    """A MESH_RESOURCE marker: RViz loads the mesh file at ``uri`` (``file://…``) with its own
    colours, so the message stays small whatever the face count."""
    return Marker(header=header(frame_id, stamp), ns=ns, id=int(marker_id),
                  type=Marker.MESH_RESOURCE, action=Marker.ADD, pose=matrix_to_pose(T_frame_object),
                  scale=Vector3(x=1.0, y=1.0, z=1.0),
                  color=ColorRGBA(r=0.0, g=0.0, b=0.0, a=0.0),   # 0 alpha: use the file's colours
                  mesh_resource=uri, mesh_use_embedded_materials=True)


def delete_all_marker(frame_id: str = "", ns: str = "sparp") -> Marker:
    """A marker that clears our previous markers (on reset)."""
    return Marker(header=header(frame_id, None), ns=ns, action=Marker.DELETEALL)


# -- our message -----------------------------------------------------------------------------------
def _float_or_nan(x: Any) -> float:
    return float("nan") if x is None else float(x)


def reconstruction_to_msg(recon: Reconstruction, frame_id: str, stamp: Time | float | None = None,
                          object_id: str = OBJECT_FRAME, view: int | None = None,
                          view_frame_ids: list[str] | None = None,
                          view_stamps: list[Time | float | None] | None = None) -> Any:
    """Our ``sparp_ros_msgs/ObjectReconstruction``: the published pose (as in
    :func:`reconstruction_to_pose_stamped`), scale and its source, confidence, mesh with vertex
    colours and which vertices were measured, every view's pose, ok flag and pose source, the
    backend and the stage timings."""
    from sparp_ros_msgs.msg import ObjectReconstruction

    n = len(recon.views)
    frames = list(view_frame_ids) if view_frame_ids is not None else [frame_id] * n
    stamps = list(view_stamps) if view_stamps is not None else [None] * n
    if len(frames) != n or len(stamps) != n:
        raise ValueError(f"{n} views but {len(frames)} frame ids and {len(stamps)} stamps")
    msg = ObjectReconstruction(
        header=header(frame_id, stamp), object_id=object_id,
        pose=reconstruction_to_pose_stamped(recon, frame_id, stamp, view).pose,
        scale=float(recon.scale), scale_source=str(recon.scale_source),
        scale_uncertainty=_float_or_nan(recon.extra.get("scale_uncertainty")),
        confidence=float(recon.confidence), backend=str(recon.backend))
    if recon.mesh is not None:
        msg.mesh = mesh_to_shape_msg(recon.mesh)
        _, _, colors = _mesh_arrays(recon.mesh)
        if colors is not None:
            msg.vertex_colors = [ColorRGBA(r=r, g=g, b=b, a=a) for r, g, b, a in colors.tolist()]
        if recon.mesh_measured is not None:
            msg.vertex_measured = [bool(m) for m in recon.mesh_measured]
    msg.view_frame_ids = frames
    msg.view_stamps = [header("", s).stamp for s in stamps]
    msg.view_poses = [matrix_to_pose(v.T_camera_object) if v.ok and v.T_camera_object is not None
                      else Pose() for v in recon.views]
    msg.view_ok = [bool(v.ok) for v in recon.views]
    msg.view_pose_sources = [str(v.pose_source) if v.ok else "" for v in recon.views]
    msg.timing_stages = [str(k) for k in recon.timings]
    msg.timing_seconds = [float(v) for v in recon.timings.values()]
    return msg


# -- diagnostics -----------------------------------------------------------------------------------
def health_to_diagnostics(health: Health, name: str, hardware_id: str,
                          stamp: Time | None = None) -> DiagnosticArray:
    """One ``DiagnosticStatus`` (level, message, key/values of ``health``) in a DiagnosticArray."""
    status = DiagnosticStatus(level=bytes([health.level]), name=name, message=health.message,
                              hardware_id=hardware_id,
                              values=[KeyValue(key=k, value=v) for k, v in health.values])
    return DiagnosticArray(header=Header(stamp=stamp or Time()), status=[status])
