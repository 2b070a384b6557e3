"""The SpaRP pipeline: keyframes in, per-view object poses, metric scale and a mesh out.

One class, ``SparpPipeline``, whose ``__call__`` (``_reconstruct``) is the recipe (STYLE 3); the
CLI (`reconstruct`, `eval`) and the ROS node run this same code path.
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .capture import Capture, Frame
from .conventions import invert_rigid, rotation_between, wrap_deg
from .geometry.azimuth import (ViewGeometry, depth_scale, joint_azimuths, measured_view_geometry,
                               object_centre, pair_cost_curve, rot_z, view_geometry)
from .geometry.fusion import FusionError
from .geometry.measured import MeasuredResult, measure
from .geometry.mesh import (COLOR_DEPTH_TOLERANCE, ColorView, MeshError, color_vertices_from_views,
                            fuse_points, poisson_mesh, surface_depth)
from .geometry.pnp import PnPResult, correspondences, solve_pnp_nocs
from .geometry.refine import RefineError, RefineParams, refine_poses
from .geometry.registration import RegistrationParams
from .geometry.scale import ScaleEstimate, scale_from_camera_motion, scale_from_depth
from .geometry.surface_worker import SurfaceWorker
from .geometry.view_angles import elevation_roll_deg, tilt_correction
from .model.backend import (DEFAULT_WEIGHTS, PER_VIEW_FRAME, REFERENCE_FRAME, BackendError, CellView,
                            NocsBackend, NocsPrediction, PAIR_AZIMUTH_DEPTH_FOLDER, PAIR_AZIMUTH_FOLDER,
                            VIEW_ANGLES_DEPTH_FOLDER,
                            VIEW_ANGLES_FOLDER,
                            make_backend)
from .reconstruction import Reconstruction, ViewPose, with_views_left_out
from .segmentation import SegmentationError, crop_box_from_mask
from .views import PreparedView, prepare_view, stack_cuts, stack_depth_cuts

log = logging.getLogger("sparp_ros.pipeline")

from .model.tiling import MAX_VIEWS  # noqa: E402 -- the model tiles at most this many views
AZIMUTH_STEPS = 360          # the azimuth search's grid (1°)
MIN_DEPTH_PIXELS = 20        # a view's depth on the object below this: the search uses the predicted shapes


class PipelineError(ValueError):
    """Bad input to the pipeline (too many/few views, no mask, backend cannot run); the message
    names the view and the problem."""


@dataclass
class PipelineConfig:
    backend: str = "oracle"
    device: str = "cpu"
    weights: str | None = None        # model backend: weights folder (default: shipped)
    model_domain: str = "nocs_self"   # model backend: per-view ("nocs_self") or tiled ("nocs_ref")
    num_hypotheses: int = 1           # model backend: NOCS samples per call (mixture of experts)
    inference_steps: int | None = None  # model backend: denoising steps (default: the model's)
    cell_size: int = 128              # pixels per view cell (the model backend uses its own)
    crop_margin: float = 0.15         # extra border around the mask's box, per side
    pnp_threshold_px: float = 2.0     # RANSAC reprojection threshold, in cell pixels
    min_inlier_ratio: float = 0.2     # a view whose best pose explains less NOCS has no pose
    size_prior_m: float = 0.2         # bounding-box diagonal assumed without depth
    mesh: bool = True
    azimuth_hypotheses: int = 3      # per-view mode: azimuths kept per view (mixture of experts)
    align_with_camera_motion: bool = True  # per-view mode: views with T_world_camera (TF) are
                                           # aligned by the camera motion instead of the search
    align_with_depth: bool = True     # per-view mode: when every posed view has depth, the azimuth
                                      # search tests the measured surfaces, not the predicted shapes
    assume_upright: bool = True       # ...and then the object's z axis is the world frame's +z
                                      # (REP 103 z-up; the model's frames are gravity-aligned, it
                                      # was trained on upright objects): only the heading comes from
                                      # the images. False: the tilt is averaged from the views' NOCS.
                                      # Without TF, on RGB-D: up is the normal of the support plane
                                      # each view measures under the object (geometry/support.py)
    view_angles: bool = True          # per-view mode: move each view's frame to the camera
                                      # elevation and roll read by the view-angle network shipped
                                      # beside the weights (``view_angles/``), when there is one
    depth_networks: bool = True       # per-view mode, views with depth: the small networks that
                                      # read it too, where they are beside the weights: the RGB-D
                                      # view-angle network (``view_angles_depth/``: the slant of the
                                      # measured surface) and, when the search tests measured
                                      # surfaces, the RGB-D pair network (``pair_azimuth_depth/``)
    view_angle_weight: float = 1.0    # 1: the network's angles; 0: PnP's; between: a blend
    pair_azimuth_weight: float = 0.3  # per-view mode: weight of the pair-azimuth network's cost
                                      # (−log p, from ``pair_azimuth/`` beside the weights) added to
                                      # the visibility score of every pair; 0 = visibility alone
                                      # (0.3 chosen on the validation samples, MODEL_CARD.md)
    pair_azimuth_weight_depth: float = 0.1  # ...when the search tests measured surfaces
                                      # (align_with_depth): they judge sharper than predicted
                                      # shapes, so the network counts less (0.1 chosen on 50 eval
                                      # captures that are not the bar's, MODEL_CARD.md)
    measured_surface: bool = True     # views with depth: poses by registering the measured
                                      # surfaces (without TF) or from TF, and the mesh fused from
                                      # the depth, completed by the model where nothing was
                                      # measured (geometry.measured); False: the model's alone
    registration_colour_weight: float = RegistrationParams.colour_weight  # registration: a
                                      # candidate placement loses this x
                                      # the colour difference of the overlap (0: shape alone;
                                      # README "Measured")
    registration_min_image_agreement: float = RegistrationParams.min_image_agreement
                                      # registration: a pair whose images agree less than this
                                      # where its surfaces meet is not trusted (0: off)
    registration_min_table_agreement: float = RegistrationParams.min_table_agreement
                                      # registration: where two views see the table around the
                                      # object, a placement whose tables agree at least this
                                      # much wins (0: off; README "The table measures the turn")
    registration_search_all_round: bool = True  # registration: views nothing else placed are
                                      # registered by a pair search all round the up axis
                                      # (Acc@15 up on every capture set, x1.19 time; README
                                      # "A search all round")
    registration_light_turns: bool = True  # registration: a view whose light (measured from
                                      # its object's shading) disagrees with the other views' is
                                      # turned about up to it where its surface keeps the
                                      # others' free space and overlaps them (README "The
                                      # light measures the turn")
    registration_min_print_matches: int = RegistrationParams.min_matches
                                      # registration: a placement that at least this many of
                                      # the object's print matches (SIFT, lifted by depth)
                                      # agree with wins where its surface keeps the other view's
                                      # free space (0: off; README "The print measures the turn")
    correct_hand_eye: bool = False    # with TF and depth: correct TF's camera poses by one
                                      # hand-eye transform shared by all views, from the measured
                                      # surfaces (geometry.hand_eye; reported in extra.measured)
    complete_surface: bool = False    # add the model's shape where no camera measured the object
                                      # (flagged inferred). Off: on the 25 noisy bar captures with
                                      # TF the inferred part is 24 % precise at 5 mm and lowers the
                                      # posed-mesh F@5 % from 0.958 to 0.936 (README, "Measured")
    poisson_depth: int = 7
    mesh_face_budget: int = 20000
    isolate_mesh: bool = False        # run Poisson in a child process (geometry.surface_worker) so
                                      # a native crash there cannot take the caller down (the mesh
                                      # is then missing, with mesh_message); the node turns it on
    refine: bool = False              # refine each view's pose by ICP of its depth on the fused
                                      # surface (views without depth keep their pose)
    refine_iterations: int = 30
    refine_max_correspondence: float = 0.05  # ICP gate, fraction of the object size
    refine_max_rotation_deg: float = 10.0    # a larger change is refused (PnP pose kept)
    refine_max_translation: float = 0.2      # ditto, fraction of the object size
    refine_joint_passes: int = 0             # extra passes against the other views' depth
    model_threads: int = 1            # torch's threads while the pipeline runs (0: torch's own
                                      # choice): with a fixed number the networks' outputs, and so
                                      # the result, do not depend on the machine's cores
                                      # (README "Threads and repeatability")
    geometry_threads: int = 1         # open3d's threads while the pipeline runs (0: open3d's own
                                      # choice): its TBB reductions sum in another order on every
                                      # run with more than one, and near-ties in the registration
                                      # then go either way (README "Threads and repeatability")
    seed: int = 0
    extra: dict = field(default_factory=dict)


class SparpPipeline:
    """``recon = SparpPipeline(PipelineConfig(...))(frames)``."""

    def __init__(self, config: PipelineConfig | None = None, backend: NocsBackend | None = None):
        self.config = config or PipelineConfig()
        self.device_fallback: str | None = None     # set when the accelerator ran out of memory
        self._surface_worker: SurfaceWorker | None = None   # with isolate_mesh, made on first use
        try:
            self.backend = backend or make_backend(
                self.config.backend, self.config.device, self.config.weights,
                domain=self.config.model_domain, num_samples=self.config.num_hypotheses,
                num_inference_steps=self.config.inference_steps, seed=self.config.seed)
        except BackendError as exc:
            raise PipelineError(str(exc)) from exc
        self.view_angle_estimator = self._load_small_net(
            VIEW_ANGLES_FOLDER, "view-angle", self.config.view_angles, _view_angle_estimator)
        self.view_angle_depth_estimator = self._load_small_net(
            VIEW_ANGLES_DEPTH_FOLDER, "RGB-D view-angle",
            self.view_angle_estimator is not None and self.config.depth_networks,
            _view_angle_estimator)
        self.pair_azimuth_estimator = self._load_small_net(
            PAIR_AZIMUTH_FOLDER, "pair-azimuth",
            max(self.config.pair_azimuth_weight, self.config.pair_azimuth_weight_depth) > 0,
            _pair_azimuth_estimator)
        self.pair_azimuth_depth_estimator = self._load_small_net(
            PAIR_AZIMUTH_DEPTH_FOLDER, "RGB-D pair-azimuth",
            self.config.pair_azimuth_weight_depth > 0 and self.config.depth_networks,
            _pair_azimuth_estimator)

    def __call__(self, frames: list[Frame]) -> Reconstruction:
        with torch_threads(self.config.model_threads), open3d_threads(self.config.geometry_threads):
            return self._reconstruct(frames)

    def _reconstruct(self, frames: list[Frame]) -> Reconstruction:
        timings: dict[str, float] = {}
        cfg = self.config
        # 1. Check the input; a view whose object mask cannot be cut is left out (the others
        #    measure the object as well as ever), every view left out is an error.
        self._check(frames)
        left_out = self._unusable_masks(frames)
        if left_out:
            if len(left_out) == len(frames):
                raise PipelineError("; ".join(f"view {k}: {why}" for k, why in left_out.items()))
            kept = [k for k in range(len(frames)) if k not in left_out]
            for k, why in left_out.items():
                log.warning("view %d left out: %s", k, why)
            recon = self._reconstruct([frames[k] for k in kept])
            return with_views_left_out(recon, kept, left_out,
                                       {k: frames[k].camera.K.tolist() for k in left_out})
        # 2. Segment and crop every view to the cell (intrinsics follow the crop).
        with _timed(timings, "crop"):
            views = [self.prepare_view(i, f) for i, f in enumerate(frames)]
        # 3. NOCS per view from the backend (K hypotheses when it samples several).
        with _timed(timings, "nocs"):
            try:
                hypotheses = self.predict_nocs([v.cell for v in views])
            except BackendError as exc:
                raise PipelineError(str(exc)) from exc
        # 4. PnP + RANSAC per view and hypothesis (unit-scale object frame); per view keep the
        #    hypothesis whose pose explains most of its NOCS (mixture of experts).
        with _timed(timings, "pnp"):
            preds, pnp, nocs_scores = self.select_poses(views, hypotheses)
        for i, r in enumerate(pnp):
            if not r.ok:
                log.warning("view %d: no pose (%s)", i, r.message)
        if not any(r.ok for r in pnp):
            raise PipelineError("no view gave a pose: " + "; ".join(
                f"view {i}: {r.message}" for i, r in enumerate(pnp)))
        # 4a. Per-view frames: the camera's elevation and roll from the view-angle network.
        view_angles = None
        if self.view_angle_estimator is not None and preds[0].frame == PER_VIEW_FRAME:
            with _timed(timings, "view_angles"):
                preds, pnp, view_angles = self.correct_tilt(views, preds, pnp)
        # 4b. Per-view NOCS frames differ by an azimuth: align them to the reference view.
        with _timed(timings, "align"):
            R_ref_view, azimuths = self.align_views(views, preds, pnp, frames)
            pnp_view = pnp
            pnp = [_rotate_object_frame(r, R) for r, R in zip(pnp, R_ref_view)]
            if azimuths and azimuths[0].get("source") == "camera_motion":
                pnp = _agree_with_camera_motion(pnp, frames, upright=cfg.assume_upright)
        # 5. Metric scale: depth (Umeyama), else camera motion (TF poses), else the size prior.
        with _timed(timings, "scale"):
            scale = self._scale(views, preds, pnp, frames)
        # 5b. Optional: refine every pose against the reconstruction (depth ICP, guarded).
        refinement = None
        if cfg.refine:
            with _timed(timings, "refine"):
                pnp, refinement = self.refine(preds, pnp, R_ref_view, scale.scale, frames)
        # 6. Metric poses, confidence.
        poses = [_metric(r.T_camera_unit, scale.scale) if r.ok else None for r in pnp]
        confidence = float(np.mean([r.inlier_ratio if r.ok else 0.0 for r in pnp]))
        # 7. Measure where you can: with depth, poses by registration (or TF) and the surface
        #    fused from the depth, the model's shape only where nothing was measured.
        measured = cfg.measured_surface and scale.source == "depth"
        mesh, mesh_message, mesh_measured, measured_record = None, "", None, None
        by_tf = bool(azimuths) and azimuths[0].get("source") == "camera_motion"
        sources = ["tf" if by_tf else "model"] * len(frames)

        def model_mesh():
            """The model's shape (NOCS points → Poisson); None with the reason logged."""
            nonlocal mesh_message
            with _timed(timings, "mesh"):
                try:
                    return self._mesh(views, preds, pnp, R_ref_view, scale.scale)
                except MeshError as exc:
                    mesh_message = str(exc)
                    log.warning("mesh: %s", exc)
                    return None

        if measured:
            # the model's shape only when it completes the fused one (or replaces it, below)
            predicted = model_mesh() if cfg.mesh and cfg.complete_surface else None
            try:
                with _timed(timings, "measured"):
                    result = self._measured(frames, views, preds, pnp_view, pnp, azimuths, scale.scale,
                                            poses, predicted)
            except FusionError as exc:
                log.warning("measured surface: %s; the model's poses and shape are kept", exc)
                measured_record = {"message": str(exc)}
                measured = False
            else:
                poses, measured_record = result.T_camera_object, result.record
                sources = result.pose_sources
                scale = replace(scale, scale=result.diagonal)
                if cfg.mesh:
                    mesh, mesh_measured = result.mesh.to_trimesh(), result.mesh.measured
        # 8. Without depth (or when nothing could be fused): the model's shape.
        if cfg.mesh and not measured:
            mesh = model_mesh()
        view_poses = [ViewPose(T_camera_object=T, ok=r.ok, inlier_ratio=r.inlier_ratio,
                               num_correspondences=r.num_correspondences,
                               reprojection_error_px=r.reprojection_error_px, message=r.message,
                               pose_source=source)
                      for r, T, source in zip(pnp, poses, sources)]
        timings["total"] = float(sum(timings.values()))
        return Reconstruction(
            views=view_poses, scale=scale.scale, scale_source=scale.source, confidence=confidence,
            backend=self.backend.name, mesh=mesh, mesh_measured=mesh_measured, timings=timings,
            nocs=[p.nocs for p in preds], nocs_masks=[p.mask for p in preds],
            crops=[v.cell.image for v in views],
            extra={"scale_uncertainty": scale.uncertainty, "scale_message": scale.message,
                   "mesh_message": mesh_message,
                   "nocs_frame": preds[0].frame, "azimuth_hypotheses": azimuths,
                   "nocs_hypothesis_scores": nocs_scores, "refinement": refinement,
                   "view_angles": view_angles, "measured": measured_record,
                   "device_fallback": self.device_fallback,
                   "cell_cameras": [v.cell.camera.K.tolist() for v in views]})

    def surface_worker(self) -> SurfaceWorker:
        """The child process that builds the Poisson surface with ``isolate_mesh`` (made on first
        use; ``warm_up()`` it to start the child before the first mesh)."""
        if self._surface_worker is None:
            self._surface_worker = SurfaceWorker()
        return self._surface_worker

    def close(self) -> None:
        """Stop the surface child process, if one was started (safe to call twice; a later call
        with ``isolate_mesh`` starts a new one)."""
        if self._surface_worker is not None:
            self._surface_worker.close()

    # -- steps ----------------------------------------------------------------------------------
    @property
    def cell_size(self) -> int:
        """The model's own cell size when it has one (weights fix it), else the configured one."""
        return int(getattr(self.backend, "cell", None) or self.config.cell_size)

    def predict_nocs(self, cells: list[CellView]):
        """K lists of per-view NOCS predictions (K = 1 for single-output backends).

        Out of accelerator memory (another process took the GPU, a larger batch of hypotheses):
        the backend is rebuilt on the CPU once and the call retried, so the robot gets a slower
        answer instead of none; ``device_fallback`` records it and later calls stay on the CPU."""
        try:
            return self._predict_once(cells)
        except Exception as exc:  # noqa: BLE001 -- only out-of-memory is handled, the rest re-raised
            if not _is_out_of_memory(exc) or self.config.device == "cpu":
                raise
            log.warning("%s out of memory (%s): falling back to the CPU", self.config.device, exc)
            self.device_fallback = f"{self.config.device} out of memory, ran on cpu: {exc}"
            self.config = replace(self.config, device="cpu")
            try:
                self.backend = make_backend(
                    self.config.backend, "cpu", self.config.weights, domain=self.config.model_domain,
                    num_samples=self.config.num_hypotheses,
                    num_inference_steps=self.config.inference_steps, seed=self.config.seed)
            except BackendError as exc2:
                raise PipelineError(f"out of memory on the accelerator and no CPU backend: {exc2}") from exc
            _release_accelerator_memory()
            return self._predict_once(cells)

    def _predict_once(self, cells: list[CellView]):
        if hasattr(self.backend, "predict_hypotheses"):
            return self.backend.predict_hypotheses(cells)
        return [self.backend.predict(cells)]

    def select_poses(self, views, hypotheses):
        cfg = self.config
        preds, results, scores = [], [], []
        for i, (cell, _) in enumerate(views):
            options = [(h[i], solve_pnp_nocs(h[i].nocs, h[i].mask, cell.camera, cfg.pnp_threshold_px,
                                             seed=cfg.seed, min_inlier_ratio=cfg.min_inlier_ratio))
                       for h in hypotheses]
            scores.append([r.inlier_ratio if r.ok else 0.0 for _, r in options])
            best = int(np.argmax(scores[-1]))
            preds.append(options[best][0])
            results.append(options[best][1])
        return preds, results, scores

    def _load_small_net(self, subfolder: str, what: str, wanted: bool, load: Callable[[Path], Any]):
        """One of the small networks beside the model's weights (``<weights>/<subfolder>``), or
        None (not the model backend, switched off, or no such folder: the pipeline does without).
        A folder that exists but cannot be loaded is an error, like bad model weights."""
        cfg = self.config
        if not wanted or cfg.backend != "model":
            return None
        folder = Path(cfg.weights or DEFAULT_WEIGHTS) / subfolder
        if not folder.is_dir():
            log.info("no %s network in %s", what, folder.parent)
            return None
        from .model.config import ModelLoadError
        try:
            estimator = load(folder)
        except ModelLoadError as exc:
            raise PipelineError(f"cannot load the {what} network: {exc}") from exc
        log.info("%s network: %d px cells (%s)", what, estimator.cell, folder)
        return estimator

    def _view_angles(self, views: list[PreparedView]) -> tuple[np.ndarray, list[str]]:
        """Each view's (elevation, roll) from the view-angle network, and which network gave it:
        ``"rgbd"`` (the RGB-D network, for a view with depth on enough of its object) or
        ``"rgb"``."""
        net = self.view_angle_estimator
        angles = net.predict(*stack_cuts(views, net.cell))
        sources = ["rgb"] * len(views)
        depth_net = self.view_angle_depth_estimator
        if depth_net is None or all(v.frame.depth is None for v in views):
            return angles, sources
        images, masks = stack_cuts(views, depth_net.cell)
        depth, focal = stack_depth_cuts(views, depth_net.cell)
        measured = ((depth > 0) & np.isfinite(depth) & masks).sum(axis=(1, 2)) >= MIN_DEPTH_PIXELS
        if measured.any():
            angles[measured] = depth_net.predict_with_depth(images[measured], masks[measured],
                                                            depth[measured], focal[measured])
            sources = ["rgbd" if m else "rgb" for m in measured]
        return angles, sources

    def correct_tilt(self, views: list[PreparedView], preds: list[NocsPrediction], pnp: list[PnPResult]):
        """Each posed view's frame turned (about its origin) so that its camera sits at the
        network's elevation and roll (blended with PnP's by ``view_angle_weight``); the NOCS map
        turns with it, so every pixel keeps its point and PnP's fit is unchanged. Returns the new
        predictions, poses and a per-view record of the angles."""
        w = float(np.clip(self.config.view_angle_weight, 0.0, 1.0))
        net, sources = self._view_angles(views)
        new_preds, new_pnp, record = [], [], []
        for p, r, (el_net, roll_net), source in zip(preds, pnp, net, sources):
            if not r.ok:
                new_preds.append(p)
                new_pnp.append(r)
                record.append(None)
                continue
            el_pnp, roll_pnp = elevation_roll_deg(r.T_camera_unit)
            roll_net = roll_pnp + wrap_deg(roll_net - roll_pnp)
            el, roll = w * el_net + (1 - w) * el_pnp, w * roll_net + (1 - w) * roll_pnp
            Q = tilt_correction(r.T_camera_unit, el, roll)
            T = r.T_camera_unit.copy()
            T[:3, :3] = T[:3, :3] @ Q.T
            nocs = ((p.nocs - 0.5) @ Q.T + 0.5).astype(np.float32)
            nocs[~p.mask] = 0.0
            new_preds.append(replace(p, nocs=nocs))
            new_pnp.append(replace(r, T_camera_unit=T))
            record.append({"elevation_deg_pnp": el_pnp, "roll_deg_pnp": roll_pnp,
                           "elevation_deg_net": float(el_net), "roll_deg_net": float(roll_net),
                           "network": source,
                           "elevation_deg": float(el), "roll_deg": float(roll)})
        return new_preds, new_pnp, record

    @staticmethod
    def _check(frames: list[Frame]) -> None:
        if not frames:
            raise PipelineError("no views: need 1 to 6 keyframes")
        if len(frames) > MAX_VIEWS:
            raise PipelineError(f"{len(frames)} views given; the model takes at most {MAX_VIEWS}")
        for i, f in enumerate(frames):
            if not isinstance(f, Frame):
                raise PipelineError(f"view {i} is a {type(f).__name__}, expected capture.Frame")

    @staticmethod
    def _unusable_masks(frames: list[Frame]) -> dict[int, str]:
        """The views whose object mask cannot be cut (view -> why, with the remedy)."""
        out = {}
        for i, f in enumerate(frames):
            try:
                crop_box_from_mask(f.mask)
            except SegmentationError as exc:
                out[i] = f"{exc} (give a mask: capture masks/ or the mask topic)"
        return out

    def prepare_view(self, i: int, frame: Frame) -> PreparedView:
        """One view cut once for every stage (``views.prepare_view``): the model's cell, its
        depth, and the cuts the small networks take, made on first use."""
        try:
            return prepare_view(i, frame, self.cell_size, self.config.crop_margin)
        except SegmentationError as exc:
            raise PipelineError(f"view {i}: {exc} (give a mask: capture masks/ or the mask topic)") from exc

    def _scale(self, views, preds, pnp: list[PnPResult],
               frames: list[Frame] | None = None) -> ScaleEstimate:
        """Depth where any view has it; else the camera motion between views with a
        ``T_world_camera`` (triangulated object centre); else the size prior (``message`` says
        why camera motion was not used when it was tried)."""
        src, dst = [], []
        for (cell, depth), pred, r in zip(views, preds, pnp):
            if depth is None or not r.ok:
                continue
            X, D = _nocs_and_depth_points(pred, cell, depth, pred.mask & (depth > 0))
            src.append(X)
            dst.append(D)
        est = scale_from_depth(src, dst) if src else None
        if est is not None:
            return est
        message = ""
        if frames is not None:
            motion = scale_from_camera_motion(
                [r.T_camera_unit if r.ok else None for r in pnp],
                [f.T_world_camera for f in frames])
            if motion is not None and motion.ok:
                return motion
            if motion is not None:
                message = f"{motion.message}; size prior used"
                log.warning("scale: %s", message)
        return ScaleEstimate(scale=self.config.size_prior_m, source="prior",
                             uncertainty=float("nan"), message=message)

    def align_views(self, views, preds, pnp: list[PnPResult], frames: list[Frame]
               ) -> tuple[list[np.ndarray], list[dict]]:
        """Rotations taking each view's NOCS frame into the reference view's frame, and the joint
        azimuth hypotheses behind them, best first (identity / none when all NOCS share view 0's
        frame). Views without a pose keep the identity.

        When every posed view has its camera pose (``T_world_camera``, from TF on a robot) the
        azimuths follow from the camera motion, which is exact where the search can only guess
        (symmetric objects, noisy NOCS); else the joint visibility search chooses them."""
        n = len(preds)
        if all(p.frame == REFERENCE_FRAME for p in preds):
            return [np.eye(3)] * n, []
        ref = next(i for i, r in enumerate(pnp) if r.ok)
        posed = [i for i, r in enumerate(pnp) if r.ok]
        if self.config.align_with_camera_motion and len(posed) > 1 and all(
                frames[i].T_world_camera is not None for i in posed):
            R_world = {i: frames[i].T_world_camera[:3, :3] @ pnp[i].T_camera_unit[:3, :3]
                       for i in posed}
            rotations = [np.eye(3)] * n
            azimuths = {}
            for i in posed:
                M = R_world[ref].T @ R_world[i]          # ≈ Rz(azimuth): the yaw part of it
                a = float(np.arctan2(M[1, 0] - M[0, 1], M[0, 0] + M[1, 1]))
                rotations[i] = rot_z(a)
                azimuths[str(i)] = float(np.degrees(a))
            return rotations, [{"azimuths_deg": azimuths, "score": None, "source": "camera_motion"}]
        geoms = self._measured_geometries(views, preds, pnp) if self.config.align_with_depth else None
        geometry = "measured" if geoms is not None else "predicted"
        if geoms is None:
            geoms = {}
            for i, ((cell, _), p, r) in enumerate(zip(views, preds, pnp)):
                if r.ok:
                    uv, X = correspondences(p.nocs, p.mask)
                    geoms[i] = view_geometry(X, uv, r.T_camera_unit, cell.camera, p.mask)
        order = [ref] + [i for i in sorted(geoms) if i != ref]
        pair_costs = None
        pair_net = self.pair_azimuth_estimator
        if geometry == "measured" and self.pair_azimuth_depth_estimator is not None:
            pair_net = self.pair_azimuth_depth_estimator       # every posed view has depth
        if pair_net is not None and len(order) > 1:
            images, masks = stack_cuts(views, pair_net.cell)
            probs = (pair_net.predict_with_depth(images, masks, *stack_depth_cuts(views, pair_net.cell))
                     if pair_net.uses_depth else pair_net.predict(images, masks))
            pair_costs = {(a, b): pair_cost_curve(probs[order[a], order[b]], probs[order[b], order[a]],
                                                  AZIMUTH_STEPS)
                          for a in range(len(order)) for b in range(a + 1, len(order))}
        weight = (self.config.pair_azimuth_weight_depth if geometry == "measured"
                  else self.config.pair_azimuth_weight)
        joint = joint_azimuths([geoms[i] for i in order], steps=AZIMUTH_STEPS,
                               top_k=self.config.azimuth_hypotheses, seed=self.config.seed,
                               pair_costs=pair_costs, pair_cost_weight=weight)
        rotations = [np.eye(3)] * n
        for i, a in zip(order, joint[0].azimuths):
            rotations[i] = rot_z(a)
        hypotheses = [{"azimuths_deg": {str(i): float(np.degrees(a)) for i, a in zip(order, h.azimuths)},
                       "score": h.score, "source": "visibility_search", "geometry": geometry}
                      for h in joint]
        return rotations, hypotheses

    @staticmethod
    def _measured_geometries(views, preds, pnp: list[PnPResult]) -> dict[int, ViewGeometry] | None:
        """The posed views' geometries from their depth (``measured_view_geometry``), or None
        unless every posed view has enough depth on the object: the search must compare like with
        like, measured surfaces or predicted shapes, not one view of each."""
        data = {}
        for i, ((cell, depth), p, r) in enumerate(zip(views, preds, pnp)):
            if not r.ok:
                continue
            if depth is None:
                if any(d is not None for _, d in views):
                    log.info("align: view %d has no depth; the search uses the predicted shapes", i)
                return None
            surface = cell.mask & (depth > 0)
            paired = surface & p.mask
            if paired.sum() < MIN_DEPTH_PIXELS:
                log.info("align: view %d has depth on only %d pixels of the object (< %d); the search "
                         "uses the predicted shapes", i, int(paired.sum()), MIN_DEPTH_PIXELS)
                return None
            v, u = np.nonzero(surface)
            uv = np.stack([u, v], 1).astype(np.float64)
            X, D = _nocs_and_depth_points(p, cell, depth, paired)
            data[i] = (uv, cell.camera.unproject(uv, depth[surface]), X, D, cell, r)
        scale = depth_scale([(X, D) for _, _, X, D, _, _ in data.values()])
        if scale is None or not data:
            return None
        geoms = {}
        for i, (uv, measured, X, D, cell, r) in data.items():
            R = r.T_camera_unit[:3, :3]
            geoms[i] = measured_view_geometry(measured, uv, object_centre(X, D, R, scale), R, scale,
                                              cell.camera, cell.mask)
        return geoms

    def refine(self, preds, pnp: list[PnPResult], R_ref_view: list[np.ndarray], scale: float,
                frames: list[Frame]) -> tuple[list[PnPResult], list[dict]]:
        """Each posed view's depth (full resolution, inside its mask) aligned with the fused
        canonical points (``geometry.refine``); poses go back to unit scale for the later steps."""
        cfg = self.config
        depth, surface, poses = [], [], []
        for f, p, r, R in zip(frames, preds, pnp, R_ref_view):
            valid = None if f.depth is None or f.mask is None else f.mask & (f.depth > 0)
            if valid is None or not valid.any():
                depth.append(None)
            else:
                v, u = np.nonzero(valid)
                depth.append(f.camera.unproject(np.stack([u, v], 1).astype(float), f.depth[valid]))
            surface.append(correspondences(p.nocs, p.mask)[1] @ R.T * scale if r.ok else None)
            poses.append(_metric(r.T_camera_unit, scale) if r.ok else None)
        try:
            params = RefineParams(iterations=cfg.refine_iterations,
                                  max_correspondence=cfg.refine_max_correspondence,
                                  max_rotation_deg=cfg.refine_max_rotation_deg,
                                  max_translation=cfg.refine_max_translation,
                                  joint_passes=cfg.refine_joint_passes, seed=cfg.seed)
        except RefineError as exc:
            raise PipelineError(f"refine: {exc}") from exc
        results = refine_poses(depth, poses, surface, scale, params)
        out = []
        for i, (r, res) in enumerate(zip(pnp, results)):
            if res.applied:
                out.append(replace(r, T_camera_unit=_metric(res.T_camera_object, 1.0 / scale)))
            else:
                out.append(r)
                if r.ok:
                    log.info("view %d: %s", i, res.message)
        return out, [res.to_dict() for res in results]

    def _measured(self, frames: list[Frame], views, preds, pnp_view: list[PnPResult],
                  pnp: list[PnPResult], azimuths: list[dict], scale: float,
                  poses: list[np.ndarray | None], model_mesh) -> MeasuredResult:
        """The RGB-D stage (``geometry.measured``): the model's metric poses for every azimuth
        hypothesis, each view's translation from its depth (the object centre its NOCS and depth
        agree on), TF when every posed view has it, the model's mesh for completion."""
        cfg = self.config
        use_tf = cfg.align_with_camera_motion and all(f.T_world_camera is not None
                                                      for f, r in zip(frames, pnp) if r.ok)
        centres = []
        for (cell, depth), p, r in zip(views, preds, pnp_view):
            centre = None
            if r.ok and depth is not None:
                paired = p.mask & (depth > 0)
                if paired.sum() >= MIN_DEPTH_PIXELS:
                    X, D = _nocs_and_depth_points(p, cell, depth, paired)
                    centre = object_centre(X, D, r.T_camera_unit[:3, :3], scale)
            centres.append(centre)
        hypotheses = []
        searched = [h for h in azimuths if h.get("source") == "visibility_search"] if not use_tf else []
        for h in searched or [None]:
            set_ = []
            for k, (r_view, r, T, c) in enumerate(zip(pnp_view, pnp, poses, centres)):
                if T is None:
                    set_.append(None)
                    continue
                T = T.copy()
                if h is not None and str(k) in h["azimuths_deg"]:
                    T[:3, :3] = r_view.T_camera_unit[:3, :3] @ rot_z(np.radians(h["azimuths_deg"][str(k)])).T
                if c is not None:
                    T[:3, 3] = c
                set_.append(T)
            hypotheses.append(set_)
        predicted = None
        if model_mesh is not None:
            predicted = (np.asarray(model_mesh.vertices), np.asarray(model_mesh.faces),
                         np.asarray(model_mesh.visual.vertex_colors)[:, :3])
        ref = next(k for k, T in enumerate(poses) if T is not None)
        # registration refines the per-view search's poses; NOCS predicted in one shared frame
        # (the oracle's are exact, the tiled model's joint) are not moved: from exact poses ICP
        # still slides partial surfaces by a few degrees (measured on renders)
        searched_frames = any(p.frame == PER_VIEW_FRAME for p in preds)
        register = cfg.correct_hand_eye if use_tf else searched_frames
        return measure(frames, hypotheses, scale, ref, use_tf, register=register,
                       predicted=predicted, predicted_pose=poses[ref],
                       colour_weight=cfg.registration_colour_weight,
                       level_on_support=cfg.assume_upright,
                       min_image_agreement=cfg.registration_min_image_agreement,
                       search_unplaced=cfg.registration_search_all_round,
                       min_table_agreement=cfg.registration_min_table_agreement,
                       light_turns=cfg.registration_light_turns,
                       min_matches=cfg.registration_min_print_matches)

    def _mesh(self, views, preds, pnp: list[PnPResult], R_ref_view: list[np.ndarray], scale: float):
        points, colors, centers, color_views = [], [], [], []
        for (cell, _), pred, r, R in zip(views, preds, pnp, R_ref_view):
            if not r.ok:
                continue
            uv, X = correspondences(pred.nocs, pred.mask)
            points.append(X @ R.T)
            colors.append(cell.image[uv[:, 1].astype(int), uv[:, 0].astype(int)])
            centers.append(invert_rigid(r.T_camera_unit)[:3, 3])
            color_views.append(ColorView(cell.image, cell.camera, r.T_camera_unit, surface_depth(
                points[-1], uv, r.T_camera_unit, *cell.image.shape[:2])))
        fused = fuse_points(points, colors, centers, seed=self.config.seed)
        surface = self.surface_worker().poisson_mesh if self.config.isolate_mesh else poisson_mesh
        mesh = surface(fused, depth=self.config.poisson_depth,
                       face_budget=self.config.mesh_face_budget)
        # colours: average of the views that see each vertex (nearest point's where none does)
        rgb, _ = color_vertices_from_views(mesh.vertices, mesh.vertex_normals, color_views,
                                           COLOR_DEPTH_TOLERANCE,
                                           fallback=mesh.visual.vertex_colors[:, :3])
        mesh.visual.vertex_colors = np.column_stack([rgb, np.full(len(rgb), 255, np.uint8)])
        mesh.vertices = mesh.vertices * scale
        return mesh


def _view_angle_estimator(folder: Path):
    from .model.view_angles import ViewAngleEstimator      # torch: imported only when used
    return ViewAngleEstimator.from_folder(folder)


def _pair_azimuth_estimator(folder: Path):
    from .model.pair_azimuth import PairAzimuthEstimator
    return PairAzimuthEstimator.from_folder(folder)


def _nocs_and_depth_points(pred: NocsPrediction, cell: CellView, depth: np.ndarray, valid: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray]:
    """A view's predicted object points (unit scale) and measured camera-frame points (metres) at
    the same ``valid`` pixels of its cell: the pairs the depth scale and the object centre fit."""
    uv, X = correspondences(pred.nocs, valid)
    return X, cell.camera.unproject(uv, depth[valid])


def _rotate_object_frame(r: PnPResult, R_ref_view: np.ndarray) -> PnPResult:
    """Re-express a view's pose in the reference frame: T_c_ref = T_c_view @ T_view_ref."""
    if not r.ok or np.array_equal(R_ref_view, np.eye(3)):
        return r
    T_view_ref = np.eye(4)
    T_view_ref[:3, :3] = R_ref_view.T
    return replace(r, T_camera_unit=r.T_camera_unit @ T_view_ref)


def _agree_with_camera_motion(pnp: list[PnPResult], frames: list[Frame],
                              upright: bool = False) -> list[PnPResult]:
    """With every camera's pose known (TF), the object's orientation in the world is one rotation:
    take the chordal mean of the views' estimates and give each view that rotation seen from its
    camera. Relative rotations then match the camera motion exactly, and each view's orientation
    error (tilt from its own NOCS) is averaged over the views. Translations stay per view.

    ``upright``: the per-view frames are gravity-aligned by construction (z up), so with a z-up
    world frame the object's z axis *is* world +z; the mean is turned by the smallest rotation
    that makes it so, which removes the tilt error the network makes (its main error, measured in
    benchmarks/gpu/README.md) and keeps the heading the images chose."""
    posed = [i for i, r in enumerate(pnp) if r.ok]
    R_world = [frames[i].T_world_camera[:3, :3] @ pnp[i].T_camera_unit[:3, :3] for i in posed]
    U, _, Vt = np.linalg.svd(np.sum(R_world, axis=0))
    R_mean = U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt
    if upright:
        R_mean = rotation_between(R_mean[:, 2], np.array([0.0, 0.0, 1.0])) @ R_mean
    out = list(pnp)
    for i in posed:
        T = pnp[i].T_camera_unit.copy()
        T[:3, :3] = frames[i].T_world_camera[:3, :3].T @ R_mean
        out[i] = replace(pnp[i], T_camera_unit=T)
    return out


def _is_out_of_memory(exc: BaseException) -> bool:
    """torch's out-of-memory error on any accelerator (its class, or the message of older or
    other backends' RuntimeErrors)."""
    try:
        import torch
        if isinstance(exc, getattr(torch, "OutOfMemoryError", ())) or isinstance(
                exc, getattr(torch.cuda, "OutOfMemoryError", ())):
            return True
    except ImportError:
        pass
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _release_accelerator_memory() -> None:
    try:
        import torch
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def _metric(T_camera_unit: np.ndarray, scale: float) -> np.ndarray:
    T = T_camera_unit.copy()
    T[:3, 3] *= scale
    return T


_TORCH_THREADS_LOCK = threading.Lock()


@contextmanager
def _process_threads(n: int, name: str, lock: threading.Lock, get, set_):
    """A process-wide thread count set to ``n`` by ``set_`` inside the block and restored after
    (``n`` 0: unchanged; negative: ``name`` is refused). One lock per library: its setting is
    the process's, so two pipelines running at once take turns."""
    if n < 0:
        raise ValueError(f"{name} must be >= 0, got {n}")
    if n == 0:
        yield
        return
    with lock:
        before = get()
        set_(int(n))
        try:
            yield
        finally:
            set_(before)


@contextmanager
def torch_threads(n: int):
    """torch's intra-op threads set to ``n`` inside the block and restored after (``n`` 0:
    unchanged). Why: a convolution sums in another order with another number of threads, the
    NOCS maps then differ in their last bits, and where two placements of a pair score alike the
    other one wins: the same captures gave Acc@15 0.760 with one thread and 0.713 with two on
    seed 0."""
    import torch
    with _process_threads(n, "model_threads", _TORCH_THREADS_LOCK, torch.get_num_threads,
                          torch.set_num_threads):
        yield


_OPEN3D_THREADS_LOCK = threading.Lock()


@contextmanager
def open3d_threads(n: int):
    """open3d's threads limited to ``n`` inside the block and restored after (``n`` 0:
    unchanged). Why: open3d parallelises with oneAPI TBB, whose reductions add partial sums in
    the order its threads finish; with two threads two runs of the same photograph-like captures
    differed on 22 of 25 captures and gave Acc@15 0.740 and 0.727, with one they are the same to
    the last bit (README "Threads and repeatability")."""
    import open3d as o3d
    with _process_threads(n, "geometry_threads", _OPEN3D_THREADS_LOCK,
                          o3d.utility.get_max_threads, o3d.utility.set_max_threads):
        yield


@contextmanager
def _timed(timings: dict[str, float], name: str):
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = time.perf_counter() - t0


def reconstruct_capture(capture: Capture, backend: str = "oracle", device: str = "cpu",
                        **config) -> Reconstruction:
    """Run the pipeline on a loaded capture folder (the pipeline, and so the model, is built once
    per configuration and reused across calls, e.g. over an evaluation's captures)."""
    return _pipeline(backend, device, tuple(sorted(config.items())))(capture.frames)


@lru_cache(maxsize=4)
def _pipeline(backend: str, device: str, config: tuple) -> SparpPipeline:
    return SparpPipeline(PipelineConfig(backend=backend, device=device, **dict(config)))


__all__ = ["PipelineConfig", "PipelineError", "SparpPipeline", "reconstruct_capture"]
