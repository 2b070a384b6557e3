"""The support plane under the object (geometry.support): measured from depth around the object,
refused where the object does not stand on it, and the poses it levels or snaps keep their heading."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from camera_poses import camera_on_sphere

from sparp_ros.camera import PinholeCamera
from sparp_ros.conventions import invert_rigid, rotation_angle_deg, rotation_between
from sparp_ros.geometry.registration import RegistrationView, snap_to_support
from sparp_ros.geometry.support import level_pose, support_plane, tilt_deg

CAMERA = PinholeCamera(320, 240, np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]]))
HALF = np.array([0.04, 0.03, 0.05])          # a 8 x 6 x 10 cm box


def _camera_pose(azimuth_deg: float, elevation_deg: float, distance: float = 0.6) -> np.ndarray:
    """T_world_camera (OpenCV axes) of a camera on a sphere about (0, 0, 0.05), looking at it."""
    return camera_on_sphere(azimuth_deg, elevation_deg, np.array([0.0, 0.0, 0.05]), distance)


def _render(T_world_camera: np.ndarray, box_lift: float = 0.0, table: bool = True,
            noise: float = 0.0, seed: int = 0):
    """Depth (metres) and object mask of a box standing (or floating ``box_lift`` above) a table
    z = 0, ray-cast; ``noise``: Gaussian depth noise (metres)."""
    rows, cols = np.mgrid[0:CAMERA.height, 0:CAMERA.width]
    K = CAMERA.K
    d_cam = np.stack([(cols - K[0, 2]) / K[0, 0], (rows - K[1, 2]) / K[1, 1],
                      np.ones(rows.shape)], -1)
    R, o = T_world_camera[:3, :3], T_world_camera[:3, 3]
    d = d_cam @ R.T
    lo = np.array([-HALF[0], -HALF[1], box_lift])
    hi = np.array([HALF[0], HALF[1], box_lift + 2 * HALF[2]])
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (lo - o) / d, (hi - o) / d
    tnear = np.nanmax(np.minimum(t1, t2), axis=-1)
    tfar = np.nanmin(np.maximum(t1, t2), axis=-1)
    hit_box = (tnear <= tfar) & (tnear > 0)
    t_table = np.where(d[..., 2] < 0, -o[2] / d[..., 2], np.inf)
    t_table = np.where(np.hypot(*(o[:2] + t_table[..., None] * d[..., :2]).T).T < 0.5,
                       t_table, np.inf) if table else np.full(rows.shape, np.inf)
    t = np.where(hit_box, np.minimum(tnear, t_table), t_table)
    mask = hit_box & (tnear <= t_table)
    depth = np.where(np.isfinite(t), t, 0.0)              # t along a z = 1 ray is the depth
    if noise:
        depth = np.where(depth > 0, depth + np.random.default_rng(seed).normal(0, noise, depth.shape), 0)
    return depth.astype(np.float32), mask


def _up_in_camera(T_world_camera: np.ndarray) -> np.ndarray:
    return T_world_camera[:3, :3].T @ np.array([0.0, 0.0, 1.0])


@pytest.mark.parametrize("azimuth, elevation", [(0, 30), (130, 55), (250, 15)])
def test_support_plane_is_the_table_the_object_stands_on(azimuth, elevation):
    T_wc = _camera_pose(azimuth, elevation)
    depth, mask = _render(T_wc, noise=0.002)
    plane = support_plane(depth, mask, CAMERA, noise_m=0.002)
    assert plane is not None
    up = _up_in_camera(T_wc)
    assert np.degrees(np.arccos(np.clip(plane.normal @ up, -1, 1))) < 0.5
    # the camera is 0.6 m from the box's middle: its height above the table is the plane's offset
    assert plane.offset == pytest.approx(T_wc[2, 3], abs=0.003)


def test_no_support_plane_without_a_table_or_under_a_floating_object():
    T_wc = _camera_pose(40, 35)
    depth, mask = _render(T_wc, table=False)
    assert support_plane(depth, mask, CAMERA) is None                 # depth on the object only
    depth, mask = _render(T_wc, box_lift=0.08)
    assert support_plane(depth, mask, CAMERA) is None                 # it does not stand on it
    with pytest.raises(ValueError, match="differ in size"):
        support_plane(depth, mask[:-1], CAMERA)
    # no usable depth at all (NaN, ±inf, zeros) or no object in the mask: no plane, no error
    assert support_plane(np.full(depth.shape, np.nan, np.float32), mask, CAMERA) is None
    assert support_plane(np.where(mask, np.inf, 0).astype(np.float32), mask, CAMERA) is None
    assert support_plane(depth, np.zeros_like(mask), CAMERA) is None


def test_level_pose_sets_the_tilt_and_keeps_the_heading():
    rng = np.random.default_rng(3)
    up = np.array([0.1, -0.8, -0.3])
    up /= np.linalg.norm(up)
    for _ in range(5):
        T = np.eye(4)
        T[:3, :3] = Rotation.random(random_state=rng.integers(1 << 30)).as_matrix()
        T[:3, 3] = rng.normal(size=3)
        tilted = tilt_deg(T, up)
        L = level_pose(T, up)
        assert tilt_deg(L, up) < 1e-6
        np.testing.assert_allclose(L[:3, 3], T[:3, 3])
        # the smallest turn: the pose moved by exactly its tilt, not by more (no heading change)
        assert rotation_angle_deg(L[:3, :3] @ T[:3, :3].T) == pytest.approx(tilted, abs=1e-6)
    R = rotation_between(up, -up)                                         # opposite: half a turn
    np.testing.assert_allclose(R @ up, -up, atol=1e-9)


def _view(T_wc: np.ndarray) -> RegistrationView:
    depth, mask = _render(T_wc)
    plane = support_plane(depth, mask, CAMERA)
    assert plane is not None
    return RegistrationView(np.zeros((0, 3)), depth, mask, CAMERA, support=plane)


def test_snap_to_support_fixes_tilt_and_height_and_keeps_the_heading():
    T_wi, T_wj = _camera_pose(10, 35), _camera_pose(100, 20)
    vi, vj = _view(T_wi), _view(T_wj)
    true = invert_rigid(T_wi) @ T_wj                                   # T_ci_cj
    centre_in_i = (invert_rigid(T_wi) @ np.array([0, 0, 0.05, 1.0]))[:3]
    up_i = _up_in_camera(T_wi)
    # a pose 12° off about up, 6° tilted and 1.5 cm too high
    twist = np.eye(4)
    twist[:3, :3] = Rotation.from_rotvec(np.radians(12) * up_i).as_matrix()
    tilt = np.eye(4)
    tilt[:3, :3] = Rotation.from_rotvec(np.radians(6) * np.cross(up_i, [1.0, 0, 0])
                                        / np.linalg.norm(np.cross(up_i, [1.0, 0, 0]))).as_matrix()
    lift = np.eye(4)
    lift[:3, 3] = 0.015 * up_i
    wrong = lift @ tilt @ twist @ true
    snapped = snap_to_support(wrong, vi, vj, centre_in_i)
    error = snapped[:3, :3] @ true[:3, :3].T
    # what the tables measure is now exact: j's up maps onto i's, its table onto i's table
    np.testing.assert_allclose(snapped[:3, :3] @ vj.support.normal, vi.support.normal, atol=1e-6)
    on_j = -vj.support.offset * vj.support.normal
    assert abs(vi.support.height(snapped[:3, :3] @ on_j + snapped[:3, 3])) < 1e-9
    # what they cannot measure (the heading about up) is left to ICP and the model: still 12°
    assert rotation_angle_deg(error) == pytest.approx(12.0, abs=1.0)
    # a pose without two planes is not touched
    bare = RegistrationView(np.zeros((0, 3)), vj.depth, vj.mask, CAMERA)
    np.testing.assert_array_equal(snap_to_support(wrong, vi, bare, centre_in_i), wrong)


def test_measure_takes_up_from_the_table_without_tf():
    """The RGB-D stage without TF: hypotheses tilted 15° leave it with the table's up axis (the
    published pose's z), and the record says which views measured it and how far off the model was."""
    from sparp_ros.capture import Frame
    from sparp_ros.geometry.measured import measure
    frames, hypotheses, truth = [], [], []
    T_wo = np.eye(4)                                   # the object frame: the box's footprint, z up
    for k, (azimuth, elevation) in enumerate([(0, 35), (70, 30)]):
        T_wc = _camera_pose(azimuth, elevation)
        depth, mask = _render(T_wc, noise=0.001, seed=k)
        image = np.full(depth.shape + (3,), 128, np.uint8)
        image[mask] = (200, 60, 40)
        frames.append(Frame(image=image, camera=CAMERA, depth=depth, mask=mask))
        T_co = invert_rigid(T_wc) @ T_wo
        truth.append(T_co)
        tilt = np.eye(4)
        tilt[:3, :3] = Rotation.from_rotvec(np.radians(15) * np.array([1.0, 0, 0])).as_matrix()
        hypotheses.append(T_co @ tilt)
    result = measure(frames, [hypotheses], 0.15, 0, use_tf=False)
    assert result.record["support"]["views"] == [0, 1]
    assert result.record["support"]["model_tilt_deg"]["0"] == pytest.approx(15.0, abs=0.5)
    for T, T_true in zip(result.T_camera_object, truth):
        assert tilt_deg(T, T_true[:3, 2]) < 1.0
    flat = measure(frames, [hypotheses], 0.15, 0, use_tf=False, level_on_support=False)
    assert "support" not in flat.record
    assert tilt_deg(flat.T_camera_object[0], truth[0][:3, 2]) > 10.0


def test_the_pipeline_publishes_the_tables_up_on_a_photograph_like_capture(objects_dir):
    """The shipped model on a rendered RGB-D capture of the bull standing on a table, with a
    stereo sensor's noise and no TF: every view finds the table, and every published pose's z axis
    is the true up to within a degree, although the model's own tilt was off by more. With
    ``assume_upright`` off the model's tilt stays."""
    from sparp_ros.pipeline import reconstruct_capture
    from sparp_ros.render import render_capture
    from sparp_ros.render.depth_noise import STEREO_DEFAULT
    from sparp_ros.render.object_realism import ObjectRealism
    capture = render_capture(objects_dir / "Schleich_Hereford_Bull.glb", views=3, seed=20,
                             depth_noise=STEREO_DEFAULT, realism=ObjectRealism())
    assert capture.gt.extra["realism"]["plane"]                  # this seed's scene has a table
    truth = capture.gt.T_camera_object
    result = reconstruct_capture(capture, backend="model", align_with_camera_motion=False)
    support = result.extra["measured"]["support"]
    assert support["views"] == [0, 1, 2]
    assert max(support["model_tilt_deg"].values()) > 3.0          # the model alone was off
    for view, T in zip(result.views, truth):
        assert tilt_deg(view.T_camera_object, T[:3, 2]) < 1.0
    free = reconstruct_capture(capture, backend="model", align_with_camera_motion=False,
                               assume_upright=False)
    assert "support" not in free.extra["measured"]
    assert tilt_deg(free.views[0].T_camera_object, truth[0][:3, 2]) > 2.0
