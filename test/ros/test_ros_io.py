"""ros_io with the real message classes: every conversion round-trips, bad input raises the one
error type with a message that names the problem, and messages survive CDR serialisation (which
needs the compiled typesupport, i.e. scripts/build_interfaces.sh for our message)."""
from __future__ import annotations

import array

import numpy as np
import pytest
import trimesh

pytest.importorskip("rclpy")
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from visualization_msgs.msg import Marker  # noqa: E402

from sparp_ros import ros_io  # noqa: E402
from sparp_ros.camera import CameraError, PinholeCamera  # noqa: E402
from sparp_ros.conventions import rotation_angle_deg  # noqa: E402
from sparp_ros.reconstruction import Reconstruction, ViewPose  # noqa: E402
from sparp_ros.ros_io import ImageConversionError  # noqa: E402

RNG = np.random.default_rng(0)


def _random(dtype, shape):
    if dtype == np.float32:
        return RNG.uniform(0, 5, shape).astype(np.float32)
    return RNG.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


@pytest.mark.parametrize("encoding", sorted(ros_io.ENCODINGS))
def test_every_encoding_round_trips_through_serialisation(encoding):
    dtype, channels = ros_io.ENCODINGS[encoding]
    arr = _random(dtype, (7, 5) if channels == 1 else (7, 5, channels))
    msg = ros_io.numpy_to_image(arr, encoding, "cam", 12.5)
    back = deserialize_message(serialize_message(msg), Image)
    assert back.header.frame_id == "cam" and ros_io.stamp_to_seconds(back.header.stamp) == 12.5
    np.testing.assert_array_equal(ros_io.image_to_numpy(back), arr)


def _raw(arr: np.ndarray, encoding: str, step: int | None = None, bigendian: bool = False) -> Image:
    """An Image built by hand (padded rows, chosen byte order), as a driver would send it."""
    h, w = arr.shape[:2]
    row = arr.reshape(h, -1).astype(arr.dtype.newbyteorder(">" if bigendian else "<"))
    raw = row.view(np.uint8).reshape(h, -1)
    step = raw.shape[1] if step is None else step
    padded = np.zeros((h, step), np.uint8)
    padded[:, :raw.shape[1]] = raw
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=int(bigendian), step=step)
    msg.data = array.array("B", padded.tobytes())
    return msg


def test_row_padding_and_big_endian_are_honoured():
    depth_mm = _random(np.uint16, (4, 6))
    for bigendian in (False, True):
        msg = _raw(depth_mm, "16UC1", step=6 * 2 + 4, bigendian=bigendian)
        np.testing.assert_array_equal(ros_io.image_to_numpy(msg), depth_mm)
        np.testing.assert_allclose(ros_io.image_to_depth(msg), depth_mm / 1000.0, rtol=1e-6)
    rgb = _random(np.uint8, (3, 5, 3))
    np.testing.assert_array_equal(ros_io.image_to_rgb(_raw(rgb, "rgb8", step=5 * 3 + 1)), rgb)


def test_colour_conversions_to_rgb():
    rgb = _random(np.uint8, (4, 3, 3))
    rgba = np.concatenate([rgb, np.full((4, 3, 1), 255, np.uint8)], axis=2)
    cases = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "rgba8": rgba, "bgra8": rgba[..., [2, 1, 0, 3]]}
    for encoding, arr in cases.items():
        out = ros_io.image_to_rgb(ros_io.numpy_to_image(np.ascontiguousarray(arr), encoding))
        np.testing.assert_array_equal(out, rgb, err_msg=encoding)
    grey = _random(np.uint8, (4, 3))
    np.testing.assert_array_equal(ros_io.image_to_rgb(ros_io.numpy_to_image(grey, "mono8")),
                                  np.repeat(grey[..., None], 3, axis=2))


def test_depth_mask_and_nocs_helpers_round_trip():
    depth = RNG.uniform(0.2, 3.0, (6, 4)).astype(np.float32)
    depth[0, 0] = 0.0
    np.testing.assert_allclose(ros_io.image_to_depth(ros_io.depth_to_image(depth)), depth, atol=5e-4)
    np.testing.assert_array_equal(
        ros_io.image_to_depth(ros_io.depth_to_image(depth, encoding="32FC1")), depth)
    with_nan = depth.copy()
    with_nan[1, 1] = np.nan
    assert ros_io.image_to_depth(ros_io.numpy_to_image(with_nan, "32FC1"))[1, 1] == 0.0
    mask = RNG.random((6, 4)) > 0.5
    np.testing.assert_array_equal(ros_io.image_to_mask(ros_io.mask_to_image(mask)), mask)
    nocs = RNG.random((6, 4, 3)).astype(np.float32)
    back, back_mask = ros_io.image_to_nocs(ros_io.nocs_to_image(nocs, mask))
    np.testing.assert_array_equal(back_mask, mask)
    np.testing.assert_allclose(back[mask], nocs[mask], atol=1e-4)


@pytest.mark.parametrize("mutate, match", [
    (lambda m: setattr(m, "encoding", "yuv422"), "unsupported image encoding 'yuv422'"),
    (lambda m: setattr(m, "encoding", "bayer_rggb8"), "unsupported image encoding"),
    (lambda m: setattr(m, "step", 5), "step 5 is shorter than one row"),
    (lambda m: setattr(m, "data", m.data[:-3]), "truncated"),
    (lambda m: setattr(m, "data", m.data + array.array("B", [0])), "too long"),
    (lambda m: (setattr(m, "height", 0), setattr(m, "data", array.array("B"))), "zero size"),
])
def test_bad_images_raise_image_conversion_error(mutate, match):
    msg = ros_io.numpy_to_image(_random(np.uint8, (4, 3, 3)), "rgb8")
    mutate(msg)
    with pytest.raises(ImageConversionError, match=match):
        ros_io.image_to_numpy(msg)


def test_semantic_helpers_refuse_the_wrong_encoding():
    with pytest.raises(ImageConversionError, match="depth image must be"):
        ros_io.image_to_depth(ros_io.numpy_to_image(_random(np.uint8, (2, 2, 3)), "rgb8"))
    with pytest.raises(ImageConversionError, match="colour image must be 8-bit"):
        ros_io.image_to_rgb(ros_io.numpy_to_image(_random(np.uint16, (2, 2)), "16UC1"))
    with pytest.raises(ImageConversionError, match="NOCS image must be 16UC3"):
        ros_io.image_to_nocs(ros_io.numpy_to_image(_random(np.uint8, (2, 2)), "mono8"))
    with pytest.raises(ImageConversionError, match="needs uint8 with 3 channel"):
        ros_io.numpy_to_image(np.zeros((2, 2), np.uint8), "rgb8")


def _camera(**kw) -> PinholeCamera:
    args = dict(width=640, height=480, K=[[500, 0, 319.5], [0, 505, 241.0], [0, 0, 1]],
                D=[0.1, -0.05, 0.001, 0.002, 0.01], distortion_model="plumb_bob", frame_id="cam_opt")
    args.update(kw)
    return PinholeCamera(**args)


def test_camera_info_round_trip():
    camera = _camera()
    msg = deserialize_message(serialize_message(ros_io.camera_to_camera_info(camera, 3.0)), CameraInfo)
    assert msg.header.frame_id == "cam_opt" and list(msg.p)[:3] == [500.0, 0.0, 319.5]
    back = ros_io.camera_info_to_camera(msg)
    assert (back.width, back.height, back.frame_id, back.distortion_model) == (640, 480, "cam_opt", "plumb_bob")
    np.testing.assert_array_equal(back.K, camera.K)
    np.testing.assert_array_equal(back.D, camera.D)


def test_camera_info_roi_and_binning_update_the_intrinsics():
    msg = ros_io.camera_to_camera_info(_camera(D=[], distortion_model=""))
    msg.roi.x_offset, msg.roi.y_offset, msg.roi.width, msg.roi.height = 100, 50, 320, 240
    np.testing.assert_allclose(ros_io.camera_info_to_camera(msg).K[:2, 2], [219.5, 191.0])
    msg = ros_io.camera_to_camera_info(_camera(D=[], distortion_model=""))
    msg.binning_x = msg.binning_y = 2
    cam = ros_io.camera_info_to_camera(msg)
    assert (cam.width, cam.height) == (320, 240) and cam.K[0, 0] == 250.0


def test_uncalibrated_camera_info_is_refused_clearly():
    msg = ros_io.camera_to_camera_info(_camera())
    msg.k = [0.0] * 9
    with pytest.raises(CameraError, match="all-zero K"):
        ros_io.camera_info_to_camera(msg)
    msg = ros_io.camera_to_camera_info(_camera())
    msg.width = 0
    with pytest.raises(CameraError, match="zero image size"):
        ros_io.camera_info_to_camera(msg)


def _pose(seed: int) -> np.ndarray:
    from scipy.spatial.transform import Rotation
    T = np.eye(4)
    T[:3, :3] = Rotation.random(random_state=seed).as_matrix()
    T[:3, 3] = np.random.default_rng(seed).uniform(-1, 1, 3) + [0, 0, 2]
    return T


def _recon(with_mesh: bool = True) -> Reconstruction:
    mesh = None
    if with_mesh:
        mesh = trimesh.creation.box(extents=(0.1, 0.2, 0.3))
        mesh.visual.vertex_colors = np.tile([[255, 0, 0, 255]], (len(mesh.vertices), 1))
    views = [ViewPose(_pose(1), True, 0.9), ViewPose(None, False, message="too few inliers"),
             ViewPose(_pose(3), True, 0.8), ViewPose(None, False)]
    return Reconstruction(views=views, scale=0.37, scale_source="depth", confidence=0.7,
                          backend="oracle", mesh=mesh, timings={"nocs": 0.5, "pnp": 0.01})


def test_pose_and_transform_are_the_most_recent_posed_view():
    recon = _recon()
    assert ros_io.published_view(recon) == 2
    pose = ros_io.reconstruction_to_pose_stamped(recon, "cam", 5.0)
    assert pose.header.frame_id == "cam"
    np.testing.assert_allclose(ros_io.pose_to_matrix(pose.pose), _pose(3), atol=1e-12)
    tf = ros_io.reconstruction_to_transform_stamped(recon, "cam", 5.0)
    assert (tf.header.frame_id, tf.child_frame_id) == ("cam", "sparp_object")
    np.testing.assert_allclose(ros_io.transform_to_matrix(tf), _pose(3), atol=1e-12)
    with pytest.raises(ValueError, match="no view with a pose"):
        ros_io.published_view(Reconstruction(views=[ViewPose(None, False)], scale=1, scale_source="prior",
                                             confidence=0, backend="oracle"))


def test_quaternion_round_trip_near_180_degrees():
    for angle in (0.0, 1e-9, np.pi / 2, np.pi - 1e-6, np.pi):
        T = np.eye(4)
        T[:3, :3] = trimesh.transformations.rotation_matrix(angle, [1, 2, 3])[:3, :3]
        back = ros_io.pose_to_matrix(ros_io.matrix_to_pose(T))
        assert rotation_angle_deg(back[:3, :3] @ T[:3, :3].T) < 1e-6


def test_mesh_messages():
    recon = _recon()
    shape = ros_io.mesh_to_shape_msg(recon.mesh)
    v, f = ros_io.shape_msg_to_arrays(shape)
    np.testing.assert_allclose(v, recon.mesh.vertices)
    np.testing.assert_array_equal(f, recon.mesh.faces)
    marker = ros_io.mesh_to_marker(recon.mesh, _pose(3), "cam", 5.0)
    assert marker.type == Marker.TRIANGLE_LIST and marker.header.frame_id == "cam"
    assert len(marker.points) == 3 * len(recon.mesh.faces) == len(marker.colors)
    first = recon.mesh.vertices[recon.mesh.faces[0, 1]]
    assert [marker.points[1].x, marker.points[1].y, marker.points[1].z] == pytest.approx(first)
    assert (marker.colors[0].r, marker.colors[0].g, marker.colors[0].a) == (1.0, 0.0, 1.0)
    np.testing.assert_allclose(ros_io.pose_to_matrix(marker.pose), _pose(3), atol=1e-12)
    deserialize_message(serialize_message(marker), Marker)


def test_reconstruction_message_round_trips():
    ObjectReconstruction = pytest.importorskip("sparp_ros_msgs.msg").ObjectReconstruction
    recon = _recon()
    msg = ros_io.reconstruction_to_msg(recon, "cam3", 7.25, "mug", view_frame_ids=["c0", "c1", "c2", "c3"],
                                       view_stamps=[1.0, 2.0, 3.0, 4.0])
    back = deserialize_message(serialize_message(msg), ObjectReconstruction)
    assert (back.header.frame_id, back.object_id, back.backend, back.scale_source) == ("cam3", "mug", "oracle", "depth")
    assert back.scale == 0.37 and back.confidence == 0.7
    assert list(back.view_ok) == [True, False, True, False]
    assert list(back.view_frame_ids) == ["c0", "c1", "c2", "c3"]
    assert [ros_io.stamp_to_seconds(s) for s in back.view_stamps] == [1.0, 2.0, 3.0, 4.0]
    np.testing.assert_allclose(ros_io.pose_to_matrix(back.pose), _pose(3), atol=1e-12)
    np.testing.assert_allclose(ros_io.pose_to_matrix(back.view_poses[0]), _pose(1), atol=1e-12)
    assert len(back.mesh.triangles) == len(recon.mesh.faces) and len(back.vertex_colors) == len(recon.mesh.vertices)
    assert dict(zip(back.timing_stages, back.timing_seconds)) == {"nocs": 0.5, "pnp": 0.01}
    no_mesh = ros_io.reconstruction_to_msg(_recon(with_mesh=False), "cam")
    assert len(no_mesh.mesh.vertices) == 0 and list(no_mesh.view_frame_ids) == ["cam"] * 4


def test_stamp_conversion_is_exact_to_the_nanosecond():
    stamp = ros_io.seconds_to_stamp(1712345678.123456789)
    assert stamp.sec == 1712345678 and abs(stamp.nanosec - 123456789) < 300
    assert ros_io.seconds_to_stamp(2.5).nanosec == 500_000_000
