"""``sparp-ros bag``: a rosbag2 (sqlite3 and mcap, written here with rosbags from a rendered
capture) becomes a capture folder holding the keyframes the node would keep, with the node's
conversions, and reconstructs like the original capture. Also every error the command names."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags")
from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402

from sparp_ros import cli  # noqa: E402
from sparp_ros.ros.bag import BagError, BagTopics, bag_to_capture  # noqa: E402
from sparp_ros.capture import Frame, load_capture  # noqa: E402
from sparp_ros.conventions import encode_nocs_png, rotation_angle_deg  # noqa: E402

OBJECT = "Android_Figure_Orange"
VIEWS = 3
T0 = 100.0                      # stamp of the first view (s)
PERIOD = 0.5                    # between views (s)
REPEAT_DT = 0.1                 # the same view again, a little later: not a new keyframe
TOPICS = BagTopics(image="/camera/color/image_raw", camera_info="/camera/color/camera_info",
                   depth="/camera/depth/image_rect_raw", mask="/detector/mask",
                   oracle_nocs="/sparp/oracle_nocs")
MAX_ROTATION_DIFF_DEG = 1.0
REPO = Path(__file__).resolve().parents[2]
TS = get_typestore(Stores.ROS2_KILTED)


# -- writing bags with rosbags -----------------------------------------------------------------
def _header(stamp: float, frame_id: str):
    ns = int(round(stamp * 1e9))
    return TS.types["std_msgs/msg/Header"](
        stamp=TS.types["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9),
        frame_id=frame_id)


def _image(arr: np.ndarray, encoding: str, stamp: float, frame_id: str):
    arr = np.ascontiguousarray(arr)
    h, w = arr.shape[:2]
    return TS.types["sensor_msgs/msg/Image"](
        header=_header(stamp, frame_id), height=h, width=w, encoding=encoding,
        is_bigendian=int(sys.byteorder == "big"), step=arr.nbytes // h,
        data=np.frombuffer(arr.tobytes(), np.uint8))


def _camera_info(frame: Frame, stamp: float):
    cam, types = frame.camera, TS.types
    P = np.zeros((3, 4))
    P[:, :3] = cam.K
    return types["sensor_msgs/msg/CameraInfo"](
        header=_header(stamp, cam.frame_id), height=cam.height, width=cam.width,
        distortion_model=cam.distortion_model or "plumb_bob", d=np.asarray(cam.D, float),
        k=cam.K.astype(float).ravel(), r=np.eye(3).ravel(), p=P.ravel(), binning_x=0, binning_y=0,
        roi=types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                     do_rectify=False))


def _frame_messages(frame: Frame, stamp: float, encoding: str) -> dict[str, object]:
    """{part: message} of one instant, as a camera driver, a detector and the player send them."""
    fid = frame.camera.frame_id
    image = frame.image[..., ::-1] if encoding == "bgr8" else frame.image
    mm = np.round(frame.depth * 1000.0).astype(np.uint16)
    return {"camera_info": _camera_info(frame, stamp),
            "depth": _image(mm, "16UC1", stamp, fid),
            "mask": _image(frame.mask.astype(np.uint8) * 255, "mono8", stamp, fid),
            "oracle_nocs": _image(encode_nocs_png(frame.nocs, frame.mask), "16UC3", stamp, fid),
            "image": _image(image, encoding, stamp, fid)}


MSG_TYPES = {"camera_info": "sensor_msgs/msg/CameraInfo", "tf": "tf2_msgs/msg/TFMessage",
             "tf_static": "tf2_msgs/msg/TFMessage"}


def write_bag(path: Path, storage: str, instants: list[tuple[float, dict[str, object]]],
              topics: BagTopics = TOPICS) -> Path:
    """A rosbag2 at ``path`` with ``instants`` [(log time, {part: message})]; ``tf`` and
    ``tf_static`` parts go to /tf and /tf_static."""
    plugin = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}[storage]
    topic_of = {"camera_info": topics.camera_info, **topics.image_parts(), "tf": "/tf",
                "tf_static": "/tf_static"}
    used = {part for _, msgs in instants for part in msgs}
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns = {part: writer.add_connection(
                     topic, MSG_TYPES.get(part, "sensor_msgs/msg/Image"), typestore=TS)
                 for part, topic in topic_of.items() if part in used or part == "camera_info"}
        for stamp, msgs in instants:
            for part, msg in msgs.items():
                writer.write(conns[part], int(round(stamp * 1e9)),
                             TS.serialize_cdr(msg, conns[part].msgtype))
    return path


@pytest.fixture(scope="module")
def capture(objects_dir, tmp_path_factory):
    """A rendered capture as read back from disk (so depth and NOCS are quantised as in a bag)."""
    from sparp_ros.render import render_capture

    root = tmp_path_factory.mktemp("capture")
    render_capture(objects_dir / f"{OBJECT}.glb", root, views=VIEWS, seed=5, width=320, height=240)
    return load_capture(root)


def _stream(capture, encoding: str) -> list[tuple[float, dict[str, object]]]:
    """A camera stream: an image before the first CameraInfo, each view twice (the repeat is not
    new), and a featureless frame (a lens cap: too blurry to keep)."""
    f0 = capture.frames[0]
    early = _frame_messages(f0, T0 - PERIOD, encoding)
    del early["camera_info"]
    stream = [(T0 - PERIOD, early)]
    for i, f in enumerate(capture.frames):
        t = T0 + i * PERIOD
        stream += [(t, _frame_messages(f, t, encoding)),
                   (t + REPEAT_DT, _frame_messages(f, t + REPEAT_DT, encoding))]
    cap = Frame(image=np.full_like(f0.image, 90), camera=f0.camera, depth=f0.depth,
                mask=np.zeros_like(f0.mask), nocs=np.zeros_like(f0.nocs))
    t_end = T0 + VIEWS * PERIOD
    stream.append((t_end, _frame_messages(cap, t_end, encoding)))
    return stream


STORAGES = [("sqlite3", "bgr8"), ("mcap", "rgb8")]


@pytest.fixture(scope="module", params=STORAGES, ids=[s for s, _ in STORAGES])
def bag(request, capture, tmp_path_factory):
    storage, encoding = request.param
    return write_bag(tmp_path_factory.mktemp(storage) / "bag", storage, _stream(capture, encoding))


# -- the conversion ------------------------------------------------------------------------------
def test_bag_gives_the_node_keyframes_with_the_node_conversions(bag, capture, tmp_path):
    result = bag_to_capture(bag, TOPICS, tmp_path / "out")
    assert (result.keyframes, result.images, result.instants, result.no_camera_info) == (VIEWS, 8, 7, 1)
    assert result.rejected == {"too similar to a kept keyframe": VIEWS, "blurry": 1}
    assert not result.unconverted and not result.incomplete and not result.orphans
    written = load_capture(tmp_path / "out")
    assert len(written.frames) == VIEWS
    for i, (got, want) in enumerate(zip(written.frames, capture.frames)):
        assert got.stamp == pytest.approx(T0 + i * PERIOD)
        np.testing.assert_array_equal(got.image, want.image)        # bgr8 swapped back to RGB
        np.testing.assert_allclose(got.depth, want.depth, atol=1e-6)
        np.testing.assert_array_equal(got.mask, want.mask)
        np.testing.assert_allclose(got.nocs, want.nocs, atol=1e-6)
        np.testing.assert_allclose(got.camera.K, want.camera.K)
        assert (got.camera.width, got.camera.height) == (320, 240)
        assert got.camera.frame_id == want.camera.frame_id


def test_bag_capture_reconstructs_like_the_original(bag, capture, tmp_path):
    from sparp_ros.pipeline import reconstruct_capture

    bag_to_capture(bag, TOPICS, tmp_path / "out")
    got = reconstruct_capture(load_capture(tmp_path / "out"), backend="oracle", mesh=False)
    want = reconstruct_capture(capture, backend="oracle", mesh=False)
    assert all(v.ok for v in got.views) and len(got.views) == VIEWS
    R = [v.T_camera_object[:3, :3] for v in got.views]
    R_want = [v.T_camera_object[:3, :3] for v in want.views]
    for i in range(VIEWS):
        assert rotation_angle_deg(R[i] @ R_want[i].T) < MAX_ROTATION_DIFF_DEG
        rel, rel_want = R[i] @ R[0].T, R_want[i] @ R_want[0].T
        assert rotation_angle_deg(rel @ rel_want.T) < MAX_ROTATION_DIFF_DEG
    assert got.scale_source == "depth" and got.scale == pytest.approx(want.scale, rel=1e-3)


def test_cli_bag_then_reconstruct(bag, tmp_path, capsys):
    out = tmp_path / "cap"
    args = ["bag", str(bag), "--image-topic", TOPICS.image, "--camera-info-topic",
            TOPICS.camera_info, "--depth-topic", TOPICS.depth, "--mask-topic", TOPICS.mask,
            "--oracle-nocs-topic", TOPICS.oracle_nocs, "--out", str(out), "--max-views", "2"]
    assert cli.main(args) == 0
    assert "wrote 2 keyframes" in capsys.readouterr().out
    frames = load_capture(out).frames
    # The node's buffer keeps the most recent views when more come than it holds.
    assert [f.stamp for f in frames] == pytest.approx([T0 + PERIOD, T0 + 2 * PERIOD])
    assert cli.main(["reconstruct", str(out), "--out", str(tmp_path / "result"), "--no-mesh",
                     "--backend", "oracle"]) == 0
    assert (tmp_path / "result" / "result.json").is_file()


def test_bag_without_optional_topics(capture, tmp_path):
    """Only image + CameraInfo (the others are not asked for even though they are in the bag),
    from the .mcap file itself rather than the bag folder."""
    bag = write_bag(tmp_path / "bag", "mcap", _stream(capture, "rgb8"))
    result = bag_to_capture(bag / "bag.mcap",
                            BagTopics(image=TOPICS.image, camera_info=TOPICS.camera_info))
    assert result.keyframes == VIEWS
    assert all(f.depth is None and f.mask is None and f.nocs is None for f in result.capture.frames)
    assert result.capture.root is None                   # nothing written without `out`


def test_camera_info_of_a_binned_image_is_scaled_as_the_node_does(capture, tmp_path):
    """CameraInfo for the full 640x480 sensor, images binned to 320x240: K is scaled to them."""
    stream = _stream(capture, "rgb8")
    full = capture.frames[0].camera.resize(640, 480)
    for _, msgs in stream:
        if "camera_info" in msgs:
            info = msgs["camera_info"]
            info.width, info.height, info.k = 640, 480, full.K.astype(float).ravel()
    bag = write_bag(tmp_path / "bag", "sqlite3", stream)
    frames = bag_to_capture(bag, TOPICS).capture.frames
    assert len(frames) == VIEWS
    np.testing.assert_allclose(frames[0].camera.K, capture.frames[0].camera.K, atol=1e-9)


# -- errors ----------------------------------------------------------------------------------------
def _bag_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sparp_ros.cli", "bag", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_missing_bag_is_a_clear_error(tmp_path):
    with pytest.raises(BagError, match="does not exist"):
        bag_to_capture(tmp_path / "nope.mcap", TOPICS)
    proc = _bag_cli(str(tmp_path / "nope.mcap"), "--image-topic", "/i", "--camera-info-topic", "/c",
                    "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "error: bag" in proc.stderr and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr
    not_a_bag = tmp_path / "notes.txt"
    not_a_bag.write_text("hello")
    with pytest.raises(BagError, match="cannot read bag"):
        bag_to_capture(not_a_bag, TOPICS)


def test_unknown_or_mistyped_topic_lists_the_bag_topics(bag, tmp_path, capsys):
    with pytest.raises(BagError, match="'/camera/rgb' is not in bag") as info:
        bag_to_capture(bag, BagTopics(image="/camera/rgb", camera_info=TOPICS.camera_info))
    msg = str(info.value)
    assert "--image-topic" in msg
    for topic in (TOPICS.image, TOPICS.camera_info, TOPICS.depth, TOPICS.mask):
        assert topic in msg
    assert "sensor_msgs/msg/CameraInfo" in msg
    with pytest.raises(BagError, match="expected sensor_msgs/msg/CameraInfo"):
        bag_to_capture(bag, BagTopics(image=TOPICS.image, camera_info=TOPICS.image))
    assert cli.main(["bag", str(bag), "--image-topic", TOPICS.image, "--camera-info-topic",
                     TOPICS.camera_info, "--depth-topic", "/nope", "--out", str(tmp_path)]) == 2
    assert "--depth-topic '/nope' is not in bag" in capsys.readouterr().err


def test_no_camera_info_before_the_images(capture, tmp_path):
    stream = _stream(capture, "rgb8")
    late = T0 + 10.0
    for _, msgs in stream:          # every CameraInfo stamped after the last image
        if "camera_info" in msgs:
            msgs["camera_info"] = _camera_info(capture.frames[0], late)
    bag = write_bag(tmp_path / "bag", "sqlite3", stream)
    with pytest.raises(BagError, match="no CameraInfo on '/camera/color/camera_info' before the images"):
        bag_to_capture(bag, TOPICS)
    empty = write_bag(tmp_path / "empty", "mcap",
                      [(t, {k: v for k, v in m.items() if k != "camera_info"}) for t, m in stream])
    with pytest.raises(BagError, match="no CameraInfo .* it has no messages"):
        bag_to_capture(empty, TOPICS)


def test_zero_keyframes_says_why(capture, tmp_path):
    f0 = capture.frames[0]
    blank = Frame(image=np.zeros_like(f0.image), camera=f0.camera, depth=f0.depth,
                  mask=f0.mask, nocs=f0.nocs)
    bag = write_bag(tmp_path / "blank", "mcap",
                    [(T0 + k, _frame_messages(blank, T0 + k, "rgb8")) for k in range(3)])
    with pytest.raises(BagError, match=r"no keyframes .*3 images, 3 complete frames.*3 frames blurry"):
        bag_to_capture(bag, TOPICS)
    # Depth stamped away from its images: no instant completes, and the message says which part.
    stream = _stream(capture, "rgb8")
    shifted = [(t, {k: v for k, v in m.items() if k != "depth"}) for t, m in stream]
    shifted += [(t + 0.05, {"depth": _frame_messages(capture.frames[0], t + 0.05, "rgb8")["depth"]})
                for t, _ in stream]
    shifted.sort(key=lambda x: x[0])
    bag = write_bag(tmp_path / "shifted", "sqlite3", shifted)
    with pytest.raises(BagError, match=r"no keyframes .*\d+ images had no depth with a matching stamp"):
        bag_to_capture(bag, TOPICS)
    # An image the node cannot convert (truncated data) is dropped, and named.
    msgs = _frame_messages(f0, T0, "rgb8")
    msgs["image"].data = msgs["image"].data[:-10]
    bag = write_bag(tmp_path / "bad", "mcap", [(T0, msgs)])
    with pytest.raises(BagError, match="1 image messages could not be converted .*truncated"):
        bag_to_capture(bag, TOPICS)


# -- camera poses from the bag's TF ----------------------------------------------------------------
TF_OBJECT = "Vans_Cereal_Honey_Nut_Crunch_11_oz_box"    # as test_node_tf: the prior is ~40 % off
TF_VIEWS = 4
TF_LAG_S = 0.05                 # each camera pose is logged this long after its image
MAX_SCALE_ERROR = 0.03          # of the true bounding-box diagonal
NO_DEPTH = BagTopics(image=TOPICS.image, camera_info=TOPICS.camera_info, mask=TOPICS.mask,
                     oracle_nocs=TOPICS.oracle_nocs)


def _tf(T: np.ndarray, parent: str, child: str, stamp: float):
    from scipy.spatial.transform import Rotation

    types = TS.types
    x, y, z, w = Rotation.from_matrix(T[:3, :3]).as_quat()
    transform = types["geometry_msgs/msg/Transform"](
        translation=types["geometry_msgs/msg/Vector3"](x=T[0, 3], y=T[1, 3], z=T[2, 3]),
        rotation=types["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w))
    return types["tf2_msgs/msg/TFMessage"](transforms=[types["geometry_msgs/msg/TransformStamped"](
        header=_header(stamp, parent), child_frame_id=child, transform=transform)])


@pytest.fixture(scope="module")
def tf_capture(objects_dir, tmp_path_factory):
    from sparp_ros.render import render_capture

    return render_capture(objects_dir / f"{TF_OBJECT}.glb", tmp_path_factory.mktemp("tf_capture"),
                          views=TF_VIEWS, seed=11)


def _tf_stream(capture) -> list[tuple[float, dict[str, object]]]:
    """A robot arm's bag without depth: /tf_static world -> base once at the start; per view the
    image (mask, NOCS, CameraInfo) and, logged TF_LAG_S later, /tf base -> camera at the image
    stamp, and the same pose again REPEAT_DT later (the arm holds still, then moves on)."""
    from sparp_ros.conventions import invert_rigid

    T_world_base = np.eye(4)
    T_world_base[:3, :3] = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    T_world_base[:3, 3] = [0.3, -0.2, 0.75]
    camera = capture.frames[0].camera.frame_id
    stream = [(T0 - 1.0, {"tf_static": _tf(T_world_base, "world", "base", T0 - 1.0)})]
    for i, f in enumerate(capture.frames):
        t = T0 + i * PERIOD
        msgs = _frame_messages(f, t, "rgb8")
        del msgs["depth"]
        T_base_camera = invert_rigid(T_world_base) @ f.T_world_camera
        stream += [(t, msgs), (t + TF_LAG_S, {"tf": _tf(T_base_camera, "base", camera, t)}),
                   (t + REPEAT_DT, {"tf": _tf(T_base_camera, "base", camera, t + REPEAT_DT)})]
    return stream


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_tf_gives_keyframes_their_camera_poses_and_metric_scale(tf_capture, storage, tmp_path,
                                                                    capsys):
    """TF read from the bag like the node's world_frame: every keyframe's T_world_camera is the
    truth (through a static and a dynamic transform, logged after the image), so a bag without
    depth reconstructs with scale_source camera_motion; --no-tf leaves the size prior."""
    import json

    from sparp_ros.pipeline import reconstruct_capture

    bag = write_bag(tmp_path / "bag", storage, _tf_stream(tf_capture), NO_DEPTH)
    out = tmp_path / "cap"
    args = ["bag", str(bag), "--image-topic", NO_DEPTH.image, "--camera-info-topic",
            NO_DEPTH.camera_info, "--mask-topic", NO_DEPTH.mask, "--oracle-nocs-topic",
            NO_DEPTH.oracle_nocs, "--world-frame", "world", "--out", str(out)]
    assert cli.main(args) == 0
    assert (f"camera poses from TF in frame 'world': {TF_VIEWS}/{TF_VIEWS} keyframes"
            in capsys.readouterr().out)
    entries = json.loads((out / "cameras.json").read_text())["frames"]
    assert len(entries) == TF_VIEWS
    for entry, truth in zip(entries, tf_capture.frames):
        np.testing.assert_allclose(entry["T_world_camera"], truth.T_world_camera, atol=1e-6)

    recon = reconstruct_capture(load_capture(out), backend="oracle", mesh=False)
    truth = tf_capture.gt.extra["canonical"]["diagonal"]
    assert recon.scale_source == "camera_motion"
    assert abs(recon.scale / truth - 1) < MAX_SCALE_ERROR, (recon.scale, truth)

    # Without --world-frame the root of the camera's tree ("world") is used; --no-tf: no poses.
    auto = bag_to_capture(bag, NO_DEPTH)
    assert auto.world_frame == "world" and auto.tf_failures == 0
    assert auto.tf_transforms == 1 + 2 * TF_VIEWS and auto.tf_poses == TF_VIEWS
    for got, truth in zip(auto.capture.frames, tf_capture.frames):
        np.testing.assert_allclose(got.T_world_camera, truth.T_world_camera, atol=1e-6)
    plain = bag_to_capture(bag, NO_DEPTH, use_tf=False)
    assert plain.world_frame is None and all(f.T_world_camera is None for f in plain.capture.frames)
    assert reconstruct_capture(plain.capture, backend="oracle", mesh=False).scale_source == "prior"


def test_bag_tf_lookup_failures_keep_the_frames_and_a_bag_without_tf_refuses_world_frame(
        tf_capture, capture, tmp_path):
    bag = write_bag(tmp_path / "bag", "mcap", _tf_stream(tf_capture), NO_DEPTH)
    result = bag_to_capture(bag, NO_DEPTH, world_frame="map")    # not in the bag's tree
    assert result.keyframes == TF_VIEWS and result.tf_failures == result.instants > 0
    assert all(f.T_world_camera is None for f in result.capture.frames)
    plain = write_bag(tmp_path / "plain", "mcap", _stream(capture, "rgb8"))
    with pytest.raises(BagError, match="--world-frame 'world' needs TF, but bag .* has no /tf"):
        bag_to_capture(plain, TOPICS, world_frame="world")
    assert bag_to_capture(plain, TOPICS).world_frame is None     # no TF: none asked, none used
