"""The NOCS backend interface: cropped cell views in, one NOCS map per view out.

``oracle`` is a **test instrument**, not a model: it returns the ground-truth NOCS that the renderer
wrote (capture ``nocs/`` folder, or the node's ``oracle_nocs`` topic), cropped exactly like the
image. It measures the geometry (PnP, scale, mesh) in isolation from the learned model. ``model`` is
the diffusion model of issue 3.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..camera import PinholeCamera

BACKENDS = ("oracle", "model")


class BackendError(RuntimeError):
    """A backend cannot run (missing inputs, missing or invalid weights)."""


@dataclass
class CellView:
    """One input view after segmentation, crop and resize to the model's cell."""

    image: np.ndarray                 # SxSx3 uint8 RGB
    mask: np.ndarray                  # SxS bool
    camera: PinholeCamera             # the cell's intrinsics
    gt_nocs: np.ndarray | None = None  # SxSx3 float32, oracle only


@dataclass
class NocsPrediction:
    nocs: np.ndarray                  # SxSx3 float32 in [0, 1], all views in view 0's object frame
    mask: np.ndarray                  # SxS bool, where the NOCS is valid


class NocsBackend(Protocol):
    name: str

    def predict(self, views: list[CellView]) -> list[NocsPrediction]:
        ...


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


def make_backend(name: str, device: str = "cpu", weights: str | None = None) -> NocsBackend:
    """Build a backend by name; raises BackendError with the reason when it cannot run."""
    if name == "oracle":
        return OracleBackend()
    if name == "model":
        raise BackendError("the diffusion-model backend is not available yet (issue 3: "
                           "sparp_ros/model/weights/tiny); use --backend oracle on rendered captures")
    raise BackendError(f"unknown backend {name!r}; choose one of {BACKENDS}")
