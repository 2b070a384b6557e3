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

from sparp_ros.ros import messages  # noqa: E402
from sparp_ros.camera import CameraError, PinholeCamera  # noqa: E402
from sparp_ros.conventions import rotation_angle_deg  # noqa: E402
from sparp_ros.reconstruction import Reconstruction, ViewPose  # noqa: E402
from sparp_ros.ros.messages import ImageConversionError  # noqa: E402

RNG = np.random.default_rng(0)


def _random(dtype, shape):
    if dtype == np.float32:
        return RNG.uniform(0, 5, shape).astype(np.float32)
    return RNG.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


@pytest.mark.parametrize("encoding", sorted(messages.ENCODINGS))
def test_every_encoding_round_trips_through_serialisation(encoding):
    dtype, channels = messages.ENCODINGS[encoding]
    arr = _random(dtype, (7, 5) if channels == 1 else (7, 5, channels))
    msg = messages.numpy_to_image(arr, encoding, "cam", 12.5)
    back = deserialize_message(serialize_message(msg), Image)
    assert back.header.frame_id == "cam" and messages.stamp_to_seconds(back.header.stamp) == 12.5
    np.testing.assert_array_equal(messages.image_to_numpy(back), arr)


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
        np.testing.assert_array_equal(messages.image_to_numpy(msg), depth_mm)
        np.testing.assert_allclose(messages.image_to_depth(msg), depth_mm / 1000.0, rtol=1e-6)
    rgb = _random(np.uint8, (3, 5, 3))
    np.testing.assert_array_equal(messages.image_to_rgb(_raw(rgb, "rgb8", step=5 * 3 + 1)), rgb)


def test_colour_conversions_to_rgb():
    rgb = _random(np.uint8, (4, 3, 3))
    rgba = np.concatenate([rgb, np.full((4, 3, 1), 255, np.uint8)], axis=2)
    cases = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "rgba8": rgba, "bgra8": rgba[..., [2, 1, 0, 3]]}
    for encoding, arr in cases.items():
        out = messages.image_to_rgb(messages.numpy_to_image(np.ascontiguousarray(arr), encoding))
        np.testing.assert_array_equal(out, rgb, err_msg=encoding)
    grey = _random(np.uint8, (4, 3))
    np.testing.assert_array_equal(messages.image_to_rgb(messages.numpy_to_image(grey, "mono8")),
                                  np.repeat(grey[..., None], 3, axis=2))


def test_depth_mask_and_nocs_helpers_round_trip():
    depth = RNG.uniform(0.2, 3.0, (6, 4)).astype(np.float32)
    depth[0, 0] = 0.0
    np.testing.assert_allclose(messages.image_to_depth(messages.depth_to_image(depth)), depth, atol=5e-4)
    np.testing.assert_array_equal(
        messages.image_to_depth(messages.depth_to_image(depth, encoding="32FC1")), depth)
    with_nan = depth.copy()
    with_nan[1, 1] = np.nan
    assert messages.image_to_depth(messages.numpy_to_image(with_nan, "32FC1"))[1, 1] == 0.0
    mask = RNG.random((6, 4)) > 0.5
    np.testing.assert_array_equal(messages.image_to_mask(messages.mask_to_image(mask)), mask)
    nocs = RNG.random((6, 4, 3)).astype(np.float32)
    back, back_mask = messages.image_to_nocs(messages.nocs_to_image(nocs, mask))
    np.testing.assert_array_equal(back_mask, mask)
    np.testing.assert_allclose(back[mask], nocs[mask], atol=1e-4)


@pytest.mark.parametrize("mutate, match", [
    (lambda m: setattr(m, "encoding", "nv21"), "unsupported image encoding 'nv21'"),
    (lambda m: setattr(m, "encoding", "bayer_rggb16"), "unsupported image encoding"),
    (lambda m: setattr(m, "step", 5), "step 5 is shorter than one row"),
    (lambda m: setattr(m, "data", m.data[:-3]), "truncated"),
    (lambda m: setattr(m, "data", m.data + array.array("B", [0])), "too long"),
    (lambda m: (setattr(m, "height", 0), setattr(m, "data", array.array("B"))), "zero size"),
])
def test_bad_images_raise_image_conversion_error(mutate, match):
    msg = messages.numpy_to_image(_random(np.uint8, (4, 3, 3)), "rgb8")
    mutate(msg)
    with pytest.raises(ImageConversionError, match=match):
        messages.image_to_numpy(msg)


def test_semantic_helpers_refuse_the_wrong_encoding():
    with pytest.raises(ImageConversionError, match="depth image must be"):
        messages.image_to_depth(messages.numpy_to_image(_random(np.uint8, (2, 2, 3)), "rgb8"))
    with pytest.raises(ImageConversionError, match="'16UC3' has no colour meaning"):
        messages.image_to_rgb(messages.numpy_to_image(_random(np.uint16, (2, 2, 3)), "16UC3"))
    with pytest.raises(ImageConversionError, match="NOCS image must be 16UC3"):
        messages.image_to_nocs(messages.numpy_to_image(_random(np.uint8, (2, 2)), "mono8"))
    with pytest.raises(ImageConversionError, match="needs uint8 with 3 channel"):
        messages.numpy_to_image(np.zeros((2, 2), np.uint8), "rgb8")


def test_mono16_float_and_16bit_colour_to_rgb():
    mono16 = np.array([[0, 257, 65535], [128, 32896, 1000]], np.uint16)
    expected = np.array([[0, 1, 255], [0, 128, 4]], np.uint8)     # v / 257, rounded
    for encoding in ("mono16", "16UC1"):
        out = messages.image_to_rgb(_raw(mono16, encoding, bigendian=True))
        np.testing.assert_array_equal(out, np.repeat(expected[..., None], 3, axis=2), err_msg=encoding)
    intensity = np.array([[0.0, 0.5, 1.0, 7.0], [-1.0, np.nan, np.inf, 0.2]], np.float32)
    out = messages.image_to_rgb(_raw(intensity, "32FC1", step=4 * 4 + 3))
    np.testing.assert_array_equal(out[..., 0], [[0, 128, 255, 255], [0, 0, 0, 51]])
    rgb16 = _random(np.uint16, (3, 2, 3))
    out = messages.image_to_rgb(_raw(rgb16[..., ::-1], "bgr16", bigendian=True))
    np.testing.assert_array_equal(out, np.round(rgb16 / 257.0).astype(np.uint8))


@pytest.mark.parametrize("encoding, to_yuv", [
    ("yuv422", "COLOR_RGB2YUV_UYVY"), ("uyvy", "COLOR_RGB2YUV_UYVY"),
    ("yuv422_yuy2", "COLOR_RGB2YUV_YUYV"), ("yuyv", "COLOR_RGB2YUV_YUYV")])
def test_yuv422_decodes_to_rgb(encoding, to_yuv):
    """Packed 4:2:2 (two pixels share U and V) from OpenCV's encoder; pairs of equal pixels come
    back within the rounding of the YUV maths, padding skipped."""
    import cv2
    rgb = np.repeat(_random(np.uint8, (6, 4, 3)), 2, axis=1)       # 6x8, equal horizontal pairs
    packed = cv2.cvtColor(rgb, getattr(cv2, to_yuv))                 # 6x8x2
    out = messages.image_to_rgb(_raw(packed, encoding, step=8 * 2 + 6))
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - rgb).max() <= 3
    odd = messages.numpy_to_image(packed[:, :7].copy(), encoding)
    with pytest.raises(ImageConversionError, match="width must be even, got 7"):
        messages.image_to_rgb(odd)


@pytest.mark.parametrize("encoding, pattern", [("bayer_rggb8", "RGGB"), ("bayer_bggr8", "BGGR"),
                                               ("bayer_gbrg8", "GBRG"), ("bayer_grbg8", "GRBG")])
def test_bayer_is_demosaiced_with_the_ros_pattern(encoding, pattern):
    """A flat colour mosaicked with the 2x2 pattern the encoding names comes back as that colour."""
    colour = {"R": 200, "G": 90, "B": 20}
    mosaic = np.zeros((8, 10), np.uint8)
    for k, (dy, dx) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        mosaic[dy::2, dx::2] = colour[pattern[k]]
    out = messages.image_to_rgb(messages.numpy_to_image(mosaic, encoding))
    np.testing.assert_array_equal(out[2:-2, 2:-2], np.broadcast_to([200, 90, 20], (4, 6, 3)))


def test_odd_row_padding_of_16_bit_data_is_skipped():
    """step is a byte count: padding need not be a whole number of pixels."""
    depth_mm = _random(np.uint16, (3, 5))
    for bigendian in (False, True):
        msg = _raw(depth_mm, "16UC1", step=5 * 2 + 3, bigendian=bigendian)
        np.testing.assert_array_equal(messages.image_to_numpy(msg), depth_mm)


def test_huge_images_are_refused_before_reading_the_data():
    msg = Image(height=9000, width=16, encoding="mono8", step=16)
    msg.data = array.array("B", bytes(16 * 9000))
    with pytest.raises(ImageConversionError, match="9000 pixels|16x9000, larger than 8192"):
        messages.image_to_rgb(msg)
    assert messages.image_to_rgb(msg, max_side=9000).shape == (9000, 16, 3)
    forged = Image(height=2**31, width=2**31, encoding="rgb8", step=3 * 2**31)   # no data at all
    with pytest.raises(ImageConversionError, match="larger than 8192"):
        messages.image_to_rgb(forged)
    with pytest.raises(ImageConversionError, match="truncated: 0 bytes"):   # nothing allocated
        messages.image_to_rgb(forged, max_side=2**32)

def _compressed(image: np.ndarray, ext: str, fmt: str):
    import cv2
    from sensor_msgs.msg import CompressedImage
    ok, buf = cv2.imencode(ext, image)
    assert ok
    msg = CompressedImage(format=fmt)
    msg.data = array.array("B", buf.tobytes())
    return deserialize_message(serialize_message(msg), CompressedImage)


def test_compressed_images_decode_to_rgb():
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[:, :20], rgb[:, 20:40], rgb[:, 40:] = (250, 10, 10), (10, 250, 10), (10, 10, 250)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    png = messages.compressed_image_to_rgb(_compressed(bgr, ".png", "rgb8; png compressed bgr8"))
    np.testing.assert_array_equal(png, rgb)
    jpeg = messages.compressed_image_to_rgb(_compressed(bgr, ".jpg", "rgb8; jpeg compressed bgr8"))
    assert jpeg.shape == rgb.shape and np.abs(jpeg[5:-5, 5:15].astype(int) - [250, 10, 10]).max() < 12
    grey = _random(np.uint8, (10, 12))
    out = messages.compressed_image_to_rgb(_compressed(grey, ".png", "mono8; png compressed mono8"))
    np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=2))


def test_bad_compressed_images_raise_image_conversion_error():
    import cv2
    from sensor_msgs.msg import CompressedImage
    good = _compressed(_random(np.uint8, (20, 30, 3)), ".jpg", "jpeg")
    cases = {"neither JPEG nor PNG": (b"GIF89a" + bytes(100), "gif"),
             "no image size": (bytes(good.data)[:40], "jpeg"),
             "compressed depth": (bytes(good.data), "16UC1; compressedDepth png")}
    ok, png = cv2.imencode(".png", np.zeros((5, 5), np.uint8))
    forged = bytearray(png.tobytes())
    forged[16:24] = (100_000).to_bytes(4, "big") + (100_000).to_bytes(4, "big")  # IHDR size
    cases["larger than 8192"] = (bytes(forged), "png")
    cases["does not decode"] = (png.tobytes()[:33] + bytes(range(256)), "png")   # IHDR, no IDAT
    for match, (data, fmt) in cases.items():
        msg = CompressedImage(format=fmt)
        msg.data = array.array("B", data)
        with pytest.raises(ImageConversionError, match=match):
            messages.compressed_image_to_rgb(msg)


def _camera(**kw) -> PinholeCamera:
    args = dict(width=640, height=480, K=[[500, 0, 319.5], [0, 505, 241.0], [0, 0, 1]],
                D=[0.1, -0.05, 0.001, 0.002, 0.01], distortion_model="plumb_bob", frame_id="cam_opt")
    args.update(kw)
    return PinholeCamera(**args)


def test_camera_info_round_trip():
    camera = _camera()
    msg = deserialize_message(serialize_message(messages.camera_to_camera_info(camera, 3.0)), CameraInfo)
    assert msg.header.frame_id == "cam_opt" and list(msg.p)[:3] == [500.0, 0.0, 319.5]
    back = messages.camera_info_to_camera(msg)
    assert (back.width, back.height, back.frame_id, back.distortion_model) == (640, 480, "cam_opt", "plumb_bob")
    np.testing.assert_array_equal(back.K, camera.K)
    np.testing.assert_array_equal(back.D, camera.D)


def test_camera_info_roi_and_binning_update_the_intrinsics():
    msg = messages.camera_to_camera_info(_camera(D=[], distortion_model=""))
    msg.roi.x_offset, msg.roi.y_offset, msg.roi.width, msg.roi.height = 100, 50, 320, 240
    np.testing.assert_allclose(messages.camera_info_to_camera(msg).K[:2, 2], [219.5, 191.0])
    msg = messages.camera_to_camera_info(_camera(D=[], distortion_model=""))
    msg.binning_x = msg.binning_y = 2
    cam = messages.camera_info_to_camera(msg)
    assert (cam.width, cam.height) == (320, 240) and cam.K[0, 0] == 250.0


def test_uncalibrated_camera_info_is_refused_clearly():
    msg = messages.camera_to_camera_info(_camera())
    msg.k = [0.0] * 9
    with pytest.raises(CameraError, match="all-zero K"):
        messages.camera_info_to_camera(msg)
    msg = messages.camera_to_camera_info(_camera())
    msg.width = 0
    with pytest.raises(CameraError, match="zero image size"):
        messages.camera_info_to_camera(msg)


@pytest.mark.parametrize("model, D", [
    ("plumb_bob", [0.1, -0.05, 0.001, 0.002, 0.01]),
    ("rational_polynomial", [0.1, -0.05, 0.001, 0.002, 0.01, 0.02, -0.01, 0.003]),
    ("equidistant", [0.05, -0.01, 0.002, -0.0005])])
def test_camera_info_distortion_models_round_trip(model, D):
    msg = deserialize_message(serialize_message(messages.camera_to_camera_info(
        _camera(D=D, distortion_model=model))), CameraInfo)
    cam = messages.camera_info_to_camera(msg)
    assert cam.distortion_model == model and cam.has_distortion
    np.testing.assert_array_equal(cam.D, D)


def test_camera_info_with_unusable_distortion_is_refused_clearly():
    cases = {"unsupported distortion model 'fov'": ("fov", [0.9]),
             "'plumb_bob' has 5 coefficients, D has 8": ("plumb_bob", [0.1, 0, 0, 0, 0, 0.3, 0, 0]),
             "not finite": ("plumb_bob", [0.1, float("nan"), 0, 0, 0])}
    for match, (model, D) in cases.items():
        msg = messages.camera_to_camera_info(_camera(D=[], distortion_model=""))
        msg.distortion_model, msg.d = model, D
        with pytest.raises(CameraError, match=match):
            messages.camera_info_to_camera(msg)
    # Short or zero-padded D is what drivers send: padded to the model's length.
    msg = messages.camera_to_camera_info(_camera(D=[], distortion_model=""))
    msg.distortion_model, msg.d = "plumb_bob", [0.1, -0.05, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    np.testing.assert_array_equal(messages.camera_info_to_camera(msg).D, [0.1, -0.05, 0, 0, 0])


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
    assert messages.published_view(recon) == 2
    pose = messages.reconstruction_to_pose_stamped(recon, "cam", 5.0)
    assert pose.header.frame_id == "cam"
    np.testing.assert_allclose(messages.pose_to_matrix(pose.pose), _pose(3), atol=1e-12)
    tf = messages.reconstruction_to_transform_stamped(recon, "cam", 5.0)
    assert (tf.header.frame_id, tf.child_frame_id) == ("cam", "sparp_object")
    np.testing.assert_allclose(messages.transform_to_matrix(tf), _pose(3), atol=1e-12)
    with pytest.raises(ValueError, match="no view with a pose"):
        messages.published_view(Reconstruction(views=[ViewPose(None, False)], scale=1, scale_source="prior",
                                             confidence=0, backend="oracle"))


def test_the_published_view_is_the_most_recent_confirmed_one():
    # without TF, a keyframe whose depth could not be registered keeps the model's pose: the
    # result is published in the most recent keyframe whose pose a measurement confirmed
    recon = _recon()
    for v, source in zip(recon.views, ("registered", "model", "model", "model")):
        v.pose_source = source
    assert messages.published_view(recon) == 0
    np.testing.assert_allclose(messages.pose_to_matrix(
        messages.reconstruction_to_pose_stamped(recon, "cam0").pose), _pose(1), atol=1e-12)
    recon.views[2].pose_source = "placed"
    assert messages.published_view(recon) == 2
    recon.views[1].pose_source = "tf"            # confirmed, but it has no pose
    recon.views[2].pose_source = "model"
    assert messages.published_view(recon) == 0
    for v in recon.views:                        # nothing confirmed: the most recent with a pose
        v.pose_source = "model"
    assert messages.published_view(recon) == 2


def test_quaternion_round_trip_near_180_degrees():
    for angle in (0.0, 1e-9, np.pi / 2, np.pi - 1e-6, np.pi):
        T = np.eye(4)
        T[:3, :3] = trimesh.transformations.rotation_matrix(angle, [1, 2, 3])[:3, :3]
        back = messages.pose_to_matrix(messages.matrix_to_pose(T))
        assert rotation_angle_deg(back[:3, :3] @ T[:3, :3].T) < 1e-6


def test_mesh_messages():
    recon = _recon()
    shape = messages.mesh_to_shape_msg(recon.mesh)
    v, f = messages.shape_msg_to_arrays(shape)
    np.testing.assert_allclose(v, recon.mesh.vertices)
    np.testing.assert_array_equal(f, recon.mesh.faces)
    marker = messages.mesh_to_marker(recon.mesh, _pose(3), "cam", 5.0)
    assert marker.type == Marker.TRIANGLE_LIST and marker.header.frame_id == "cam"
    assert len(marker.points) == 3 * len(recon.mesh.faces) == len(marker.colors)
    first = recon.mesh.vertices[recon.mesh.faces[0, 1]]
    assert [marker.points[1].x, marker.points[1].y, marker.points[1].z] == pytest.approx(first)
    assert (marker.colors[0].r, marker.colors[0].g, marker.colors[0].a) == (1.0, 0.0, 1.0)
    np.testing.assert_allclose(messages.pose_to_matrix(marker.pose), _pose(3), atol=1e-12)
    deserialize_message(serialize_message(marker), Marker)


def test_reconstruction_message_round_trips():
    ObjectReconstruction = pytest.importorskip("sparp_ros_msgs.msg").ObjectReconstruction
    recon = _recon()
    msg = messages.reconstruction_to_msg(recon, "cam3", 7.25, "mug", view_frame_ids=["c0", "c1", "c2", "c3"],
                                       view_stamps=[1.0, 2.0, 3.0, 4.0])
    back = deserialize_message(serialize_message(msg), ObjectReconstruction)
    assert (back.header.frame_id, back.object_id, back.backend, back.scale_source) == ("cam3", "mug", "oracle", "depth")
    assert back.scale == 0.37 and back.confidence == 0.7
    assert list(back.view_ok) == [True, False, True, False]
    assert list(back.view_pose_sources) == ["model", "", "model", ""]
    assert list(back.view_frame_ids) == ["c0", "c1", "c2", "c3"]
    assert [messages.stamp_to_seconds(s) for s in back.view_stamps] == [1.0, 2.0, 3.0, 4.0]
    np.testing.assert_allclose(messages.pose_to_matrix(back.pose), _pose(3), atol=1e-12)
    np.testing.assert_allclose(messages.pose_to_matrix(back.view_poses[0]), _pose(1), atol=1e-12)
    assert len(back.mesh.triangles) == len(recon.mesh.faces) and len(back.vertex_colors) == len(recon.mesh.vertices)
    assert dict(zip(back.timing_stages, back.timing_seconds)) == {"nocs": 0.5, "pnp": 0.01}
    assert list(back.vertex_measured) == []                    # no measured part: all inferred
    recon.mesh_measured = np.arange(len(recon.mesh.vertices)) % 3 != 0
    split = deserialize_message(serialize_message(messages.reconstruction_to_msg(recon, "cam")),
                                ObjectReconstruction)
    assert list(split.vertex_measured) == recon.mesh_measured.tolist()
    no_mesh = messages.reconstruction_to_msg(_recon(with_mesh=False), "cam")
    assert len(no_mesh.mesh.vertices) == 0 and list(no_mesh.view_frame_ids) == ["cam"] * 4


def test_stamp_conversion_is_exact_to_the_nanosecond():
    stamp = messages.seconds_to_stamp(1712345678.123456789)
    assert stamp.sec == 1712345678 and abs(stamp.nanosec - 123456789) < 300
    assert messages.seconds_to_stamp(2.5).nanosec == 500_000_000



@pytest.mark.parametrize("source", ["searched", "lit"])
def test_a_searched_or_lit_view_is_confirmed_and_can_place_the_result(source):
    # a view the search all round registered, or one turned to the light, is fused: it counts as
    # confirmed, and as the most recent confirmed view it places the result; a model view after
    # it does not
    recon = _recon()
    for v, s in zip(recon.views, ("registered", "model", source, "model")):
        v.pose_source = s
    assert recon.views[2].confirmed
    assert messages.published_view(recon) == 2
    recon.views[2].pose_source = "model"
    assert messages.published_view(recon) == 0
