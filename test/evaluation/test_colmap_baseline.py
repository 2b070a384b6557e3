"""The pycolmap baseline checks the evaluation code itself: on a dense sequence (15° steps) SfM
works (DESIGN §7: 1–2°), so a large error here would be a bug in our conventions, not in COLMAP."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from sparp_ros.capture import Capture, Frame
from sparp_ros.evaluation.colmap_baseline import run_pycolmap
from sparp_ros.evaluation.metrics import relative_rotation_errors, summarize_rotation

OBJECT = "Vans_Cereal_Honey_Nut_Crunch_11_oz_box"
AZIMUTHS = [30.0 + 15.0 * k for k in range(8)]
ELEVATION = 20.0


@pytest.fixture(scope="module")
def dense_capture(objects_dir, tmp_path_factory) -> Capture:
    from sparp_ros.render import render_capture
    out = tmp_path_factory.mktemp("dense")
    return render_capture(objects_dir / f"{OBJECT}.glb", out / "capture", views=len(AZIMUTHS),
                          seed=0, azimuths_deg=AZIMUTHS, elevations_deg=[ELEVATION] * len(AZIMUTHS))


def _registered_pair_errors(poses, capture) -> tuple[list[float], list[float]]:
    errors = relative_rotation_errors(list(poses), capture.gt.T_camera_object)
    n = len(poses)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    both = [e for (i, j), e in zip(pairs, errors) if poses[i] is not None and poses[j] is not None]
    return errors, both


def test_pycolmap_on_a_dense_capture_is_accurate(dense_capture, tmp_path):
    poses = run_pycolmap(dense_capture, tmp_path)
    errors, registered = _registered_pair_errors(poses, dense_capture)
    summary = summarize_rotation(errors)
    print(f"pycolmap dense: {poses.num_registered}/{len(poses)} registered, "
          f"median {np.median(registered):.2f}° over registered pairs, "
          f"{summary['median_rotation_error_deg']:.2f}° over all pairs, {poses.timings}")
    assert poses.num_registered >= 6, poses.reason
    assert np.median(registered) < 3.0
    assert summary["median_rotation_error_deg"] < 3.0
    for T in poses:
        if T is not None:
            assert T.shape == (4, 4) and np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-6)


def test_pycolmap_with_per_frame_intrinsics(dense_capture, tmp_path):
    """Crop each frame differently: every frame gets its own K, and the result must not change."""
    frames = []
    for k, f in enumerate(dense_capture.frames):
        x0, y0 = 2 * k, k
        w, h = f.camera.width - 16, f.camera.height - 8
        frames.append(Frame(f.image[y0:y0 + h, x0:x0 + w].copy(), f.camera.crop(x0, y0, w, h)))
    cropped = replace(dense_capture, frames=frames)
    poses = run_pycolmap(cropped, tmp_path)
    _, registered = _registered_pair_errors(poses, cropped)
    assert poses.num_registered >= 6, poses.reason
    assert np.median(registered) < 3.0


def test_pycolmap_failure_is_a_result_not_an_exception(dense_capture, tmp_path):
    rng = np.random.default_rng(0)
    frames = [Frame(rng.integers(0, 255, f.image.shape, dtype=np.uint8), f.camera)
              for f in dense_capture.frames[:3]]
    poses = run_pycolmap(Capture(frames), tmp_path)
    assert list(poses) == [None, None, None] and poses.reason
