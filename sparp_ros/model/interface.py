"""What a NOCS backend takes and gives: cell views in, one NOCS map per view out.

Why its own module: the backends' registry (``backend.py``) builds the diffusion backend
(``diffusion.py``), and the diffusion backend speaks these types; with them in ``backend.py`` the
two modules imported each other. Here both import them, and ``backend.py`` re-exports them for the
pipeline.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..camera import PinholeCamera

REFERENCE_FRAME = "reference"   # every view's NOCS in view 0's canonical frame (SpaRP tiled mode)
PER_VIEW_FRAME = "per_view"     # each view's NOCS in its own gravity-aligned frame (per-view mode)


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
    nocs: np.ndarray                  # SxSx3 float32 in [0, 1]
    mask: np.ndarray                  # SxS bool, where the NOCS is valid
    frame: str = REFERENCE_FRAME      # which canonical frame ``nocs`` is expressed in


class NocsBackend(Protocol):
    name: str

    def predict(self, views: list[CellView]) -> list[NocsPrediction]:
        ...
