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
from sparp_ros.bag import BagError, BagTopics, bag_to_capture  # noqa: E402
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


def write_bag(path: Path, storage: str, instants: list[tuple[float, dict[str, object]]],
              topics: BagTopics = TOPICS) -> Path:
    """A rosbag2 at ``path`` with ``instants`` [(stamp, {part: message})], logged at their stamps."""
    plugin = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}[storage]
    topic_of = {"camera_info": topics.camera_info, **topics.image_parts()}
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns = {part: writer.add_connection(
                     topic, "sensor_msgs/msg/CameraInfo" if part == "camera_info"
                     else "sensor_msgs/msg/Image", typestore=TS)
                 for part, topic in topic_of.items()}
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
    assert cli.main(["reconstruct", str(out), "--out", str(tmp_path / "result"), "--no-mesh"]) == 0
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
