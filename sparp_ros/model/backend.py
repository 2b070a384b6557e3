"""The NOCS backend interface: cropped cell views in, one NOCS map per view out.

``oracle`` is a **test instrument**, not a model: it returns the ground-truth NOCS that the renderer
wrote (capture ``nocs/`` folder, or the node's ``oracle_nocs`` topic), cropped exactly like the
image. It measures the geometry (PnP, scale, mesh) in isolation from the learned model. ``model`` is
the diffusion model of issue 3. The types they speak are in ``interface.py``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .interface import (PER_VIEW_FRAME, REFERENCE_FRAME, BackendError, CellView, NocsBackend,
                        NocsPrediction)

__all__ = ["BACKENDS", "BackendError", "CellView", "DEFAULT_WEIGHTS", "NocsBackend", "NocsPrediction",
           "OracleBackend", "OraclePerViewBackend", "PAIR_AZIMUTH_DEPTH_FOLDER", "PAIR_AZIMUTH_FOLDER",
           "PER_VIEW_FRAME", "REFERENCE_FRAME", "VIEW_ANGLES_DEPTH_FOLDER", "VIEW_ANGLES_FOLDER",
           "make_backend"]

BACKENDS = ("oracle", "oracle_per_view", "model")


class OracleBackend:
    """Ground-truth NOCS, cropped like the images (test instrument; see module docstring)."""

    name = "oracle"

    def predict(self, views: list[CellView]) -> list[NocsPrediction]:
        out = []
        for i, v in enumerate(views):
            if v.gt_nocs is None:
                raise BackendError(f"the oracle backend needs ground-truth NOCS, and view {i} has none "
                                   "(captures rendered by `sparp-ros render` carry it; use --backend model "
                                   "for real images)")
            valid = np.any(v.gt_nocs > 0, axis=2)
            out.append(NocsPrediction(nocs=v.gt_nocs.astype(np.float32), mask=valid & v.mask))
        return out


class OraclePerViewBackend(OracleBackend):
    """Ground-truth NOCS re-expressed per view (test instrument for the per-view path).

    Each view's own canonical frame differs from view 0's by a rotation about z by that camera's
    azimuth in view 0's frame; the oracle finds it from the ground truth itself (PnP on the
    ground-truth NOCS) and rotates the NOCS into the view's own frame.
    """

    name = "oracle_per_view"

    def predict(self, views: list[CellView]) -> list[NocsPrediction]:
        from ..conventions import camera_azimuth, rot_z
        from ..geometry.pnp import solve_pnp_nocs
        out = []
        for i, (v, p) in enumerate(zip(views, super().predict(views))):
            r = solve_pnp_nocs(p.nocs, p.mask, v.camera)
            if not r.ok:
                raise BackendError(f"oracle_per_view: view {i}: {r.message}")
            delta = camera_azimuth(r.T_camera_unit)     # this camera's azimuth in frame 0
            own = (p.nocs - 0.5) @ rot_z(-delta).T + 0.5
            own[~p.mask] = 0.0
            out.append(NocsPrediction(nocs=own.astype(np.float32), mask=p.mask, frame=PER_VIEW_FRAME))
        return out


DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "tiny"
VIEW_ANGLES_FOLDER = "view_angles"   # the view-angle network, beside a model's weights (optional)
PAIR_AZIMUTH_FOLDER = "pair_azimuth"  # the pair-azimuth network, likewise
VIEW_ANGLES_DEPTH_FOLDER = "view_angles_depth"  # the RGB-D view-angle network, likewise
PAIR_AZIMUTH_DEPTH_FOLDER = "pair_azimuth_depth"  # the RGB-D pair-azimuth network, likewise


def make_backend(name: str, device: str = "cpu", weights: str | None = None,
                 domain: str = "nocs_self", num_samples: int = 1,
                 num_inference_steps: int | None = None, seed: int = 0) -> NocsBackend:
    """Build a backend by name; raises BackendError with the reason when it cannot run.

    ``weights`` (model only): a local folder from ``sparp-ros train`` (``final/`` or a checkpoint's
    ``pipeline/``); default the weights shipped in the package."""
    if name == "oracle":
        return OracleBackend()
    if name == "oracle_per_view":
        return OraclePerViewBackend()
    if name == "model":
        folder = Path(weights) if weights else DEFAULT_WEIGHTS
        if not folder.is_dir():
            raise BackendError(f"no model weights at {folder} (train with `sparp-ros train`, or use "
                               "--backend oracle on rendered captures)")
        from .diffusion import ModelNocsBackend
        return ModelNocsBackend(folder, device=device, domain=domain, num_samples=num_samples,
                                num_inference_steps=num_inference_steps, seed=seed)
    raise BackendError(f"unknown backend {name!r}; choose one of {BACKENDS}")
