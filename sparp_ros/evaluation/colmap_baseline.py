"""The classical baseline: COLMAP structure from motion (pycolmap) on the capture's views.

SIFT features, exhaustive matching and incremental mapping with the capture's own intrinsics held
fixed (PINHOLE, no focal or principal-point refinement: the cameras are calibrated, as on a
robot), relaxed initialisation thresholds so that a handful of views can form a model. This is what
SpaRP is compared against: it works with small viewpoint changes (~15°, 1–2° error) and registers
almost nothing at the 60–90° spacing of sparse views (DESIGN.md §7).

The result is ``T_camera_world`` per frame in COLMAP's arbitrary world frame and scale; relative
rotation metrics do not depend on either.

Import order matters: with pycolmap 4.2.1 and opencv-python-headless in one process, importing
pycolmap *before* cv2 makes every later ``cv2.imwrite`` of a PNG abort (``free(): invalid pointer``
in zlib). This module imports cv2 at the top and pycolmap only inside functions.
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import cv2  # noqa: F401 -- must be loaded before pycolmap (see the module docstring)
import numpy as np

from ..capture import Capture

log = logging.getLogger(__name__)

MIN_MATCHES = 15
"""Fewest verified matches for a pair to count (COLMAP's default), also the initial-pair minimum."""
INIT_MIN_TRI_ANGLE_DEG = 4.0
"""Relaxed from COLMAP's 16°: views 15° apart must be able to start a model."""
ABS_POSE_MIN_INLIERS = 15
SIFT_PEAK_THRESHOLD = 0.004
"""Lower than COLMAP's 0.0067: object renders of ~320 px give only ~200 keypoints by default."""
SIFT_DOMAIN_SIZE_POOLING = True
"""DSP-SIFT: on a 15° sequence of 320 px renders, 1.5° instead of 2.8° median error."""
RANDOM_SEED = 0


class BaselineResult(list):
    """``T_camera_world`` (4x4) or ``None`` per frame — a plain list, plus why and how long.

    ``reason`` is empty on success and says what failed otherwise (never an exception: a baseline
    that cannot handle a capture is a result to report, not an error).
    """

    def __init__(self, poses: list[np.ndarray | None], reason: str = "",
                 timings: dict[str, float] | None = None, num_models: int = 0) -> None:
        super().__init__(poses)
        self.reason = reason
        self.timings = dict(timings or {})
        self.num_models = num_models

    @property
    def num_registered(self) -> int:
        return sum(T is not None for T in self)


@contextmanager
def _quiet_colmap() -> Iterator[None]:
    """Silence glog below FATAL for the duration: COLMAP prints every step at INFO and expected
    failures ("Failed to create any sparse model") at ERROR; ``BaselineResult.reason`` says it."""
    import pycolmap
    lg = pycolmap.logging
    saved = (lg.minloglevel, lg.stderrthreshold, lg.verbose_level)
    try:
        lg.minloglevel, lg.stderrthreshold, lg.verbose_level = 3, 3, 0
    except Exception:  # noqa: BLE001 -- logging flags are a nicety; never fail the baseline on them
        pass
    try:
        yield
    finally:
        try:
            lg.minloglevel, lg.stderrthreshold, lg.verbose_level = saved
        except Exception:  # noqa: BLE001
            pass


def _write_images(capture: Capture, image_dir: Path) -> list[str]:
    """Write the frames as PNGs (undistorted to the same K where the camera has distortion)."""
    image_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for i, f in enumerate(capture.frames):
        img = f.image
        cam = f.camera
        if cam.has_distortion:
            if cam.distortion_model == "equidistant":
                img = cv2.fisheye.undistortImage(img, cam.K, cam.D[:4], Knew=cam.K)
            else:
                img = cv2.undistort(img, cam.K, cam.D)
        name = f"{i:03d}.png"
        cv2.imwrite(str(image_dir / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        names.append(name)
    return names


COLMAP_PIXEL_OFFSET = 0.5
"""COLMAP puts the centre of the top-left pixel at (0.5, 0.5), OpenCV/ROS at (0, 0)."""


def _pinhole_params(K: np.ndarray) -> list[float]:
    """COLMAP PINHOLE ``fx, fy, cx, cy`` of an OpenCV K (principal point in COLMAP's pixels)."""
    return [float(K[0, 0]), float(K[1, 1]), float(K[0, 2]) + COLMAP_PIXEL_OFFSET,
            float(K[1, 2]) + COLMAP_PIXEL_OFFSET]


def _mapping_options(num_threads: int) -> "pycolmap.IncrementalPipelineOptions":  # noqa: F821
    import pycolmap
    opts = pycolmap.IncrementalPipelineOptions()
    opts.min_model_size = 2
    opts.min_num_matches = MIN_MATCHES
    opts.ba_refine_focal_length = False
    opts.ba_refine_principal_point = False
    opts.ba_refine_extra_params = False
    opts.num_threads = num_threads
    opts.random_seed = RANDOM_SEED
    opts.mapper.init_min_num_inliers = MIN_MATCHES
    opts.mapper.init_min_tri_angle = INIT_MIN_TRI_ANGLE_DEG
    opts.mapper.abs_pose_min_num_inliers = ABS_POSE_MIN_INLIERS
    opts.mapper.abs_pose_refine_focal_length = False
    opts.mapper.abs_pose_refine_extra_params = False
    opts.mapper.random_seed = RANDOM_SEED
    opts.triangulation.random_seed = RANDOM_SEED
    return opts


def run_pycolmap(capture: Capture, workdir: str | Path, num_threads: int = -1) -> BaselineResult:
    """COLMAP SfM on the capture's frames; ``T_camera_world`` per frame, ``None`` if unregistered.

    All frames sharing one set of intrinsics use one COLMAP camera (``CameraMode.SINGLE``); when the
    frames' intrinsics differ, one camera per image (``PER_IMAGE``) with each frame's K written into
    the database before mapping. Uses the reconstruction with the most registered images. Never
    raises: a failure returns all ``None`` with ``reason`` set.
    """
    n = len(capture.frames)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    try:
        import pycolmap
    except ImportError as exc:
        return BaselineResult([None] * n, f"pycolmap is not installed ({exc})")
    workdir = Path(workdir)
    db_path = workdir / "database.db"
    image_dir, sparse_dir = workdir / "images", workdir / "sparse"
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        if db_path.exists():
            db_path.unlink()  # a stale database would mix in another capture's features
        names = _write_images(capture, image_dir)
        sparse_dir.mkdir(parents=True, exist_ok=True)
        Ks = [f.camera.K for f in capture.frames]
        sizes = [(f.camera.width, f.camera.height) for f in capture.frames]
        shared = all(np.allclose(K, Ks[0]) for K in Ks) and len(set(sizes)) == 1
        params0 = _pinhole_params(Ks[0])
        reader = pycolmap.ImageReaderOptions(camera_model="PINHOLE",
                                             camera_params=",".join(repr(p) for p in params0))
        extraction = pycolmap.FeatureExtractionOptions()
        extraction.num_threads = num_threads
        extraction.sift.peak_threshold = SIFT_PEAK_THRESHOLD
        extraction.sift.domain_size_pooling = SIFT_DOMAIN_SIZE_POOLING
        matching = pycolmap.FeatureMatchingOptions()
        matching.num_threads = num_threads
        with _quiet_colmap():
            t0 = time.perf_counter()
            pycolmap.extract_features(
                db_path, image_dir, image_names=names,
                camera_mode=pycolmap.CameraMode.SINGLE if shared else pycolmap.CameraMode.PER_IMAGE,
                reader_options=reader, extraction_options=extraction,
                device=pycolmap.Device.cpu)
            if not shared:
                _set_per_image_cameras(db_path, names, Ks)
            timings["features"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            pycolmap.match_exhaustive(db_path, matching_options=matching, device=pycolmap.Device.cpu)
            timings["matching"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            models = pycolmap.incremental_mapping(db_path, image_dir, sparse_dir,
                                                  options=_mapping_options(num_threads))
            timings["mapping"] = time.perf_counter() - t0
            if not models:
                timings["total"] = time.perf_counter() - t_start
                return BaselineResult([None] * n, "no reconstruction (too few matches to "
                                      "initialise)", timings)
            best = max(models.values(), key=lambda r: r.num_reg_images())
            poses = _poses_by_frame(best, names)
    except Exception as exc:  # noqa: BLE001 -- the baseline reports failures, never raises
        log.warning("pycolmap failed on %s: %s", capture.root, exc)
        timings["total"] = time.perf_counter() - t_start
        return BaselineResult([None] * n, f"pycolmap raised {type(exc).__name__}: {exc}", timings)
    timings["total"] = time.perf_counter() - t_start
    registered = sum(T is not None for T in poses)
    reason = "" if registered == n else f"registered {registered} of {n} views"
    return BaselineResult(poses, reason, timings, num_models=len(models))


def _poses_by_frame(reconstruction: "pycolmap.Reconstruction",  # noqa: F821
                    names: list[str]) -> list[np.ndarray | None]:
    """``T_camera_world`` (4x4) of each named image in frame order, ``None`` where unregistered."""
    index = {name: k for k, name in enumerate(names)}
    poses: list[np.ndarray | None] = [None] * len(names)
    for image in reconstruction.images.values():
        if image.name not in index or not image.has_pose:
            continue
        T = np.eye(4)
        T[:3, :] = np.asarray(image.cam_from_world().matrix())
        poses[index[image.name]] = T
    return poses


def _set_per_image_cameras(db_path: Path, names: list[str], Ks: list[np.ndarray]) -> None:
    """Write each image's own PINHOLE intrinsics into its camera (PER_IMAGE mode made one each)."""
    import pycolmap
    db = pycolmap.Database.open(db_path)
    try:
        for name, K in zip(names, Ks):
            image = db.read_image_with_name(name)
            camera = db.read_camera(image.camera_id)
            camera.params = _pinhole_params(K)
            camera.has_prior_focal_length = True
            db.update_camera(camera)
    finally:
        db.close()
