"""Tiny networks and inputs shared by the model tests (what inference loads) and the training
tests (what trains it): one definition, so both sides test the same small model. Importable from
any test file (pytest puts test/, the conftest's folder, on sys.path)."""
from __future__ import annotations

import numpy as np
import torch

from sparp_ros.model.config import get_config
from sparp_ros.model.pair_azimuth import PairAzimuthEstimator, PairAzimuthNet

S = 8           # cell size of the tiny denoiser
SMALL = dict(sample_size=(3 * S, 2 * S), block_out_channels=(16, 32), layers_per_block=1,
             down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
             up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=2,
             cross_attention_dim=32, norm_num_groups=8, encoder_channels=(16, 32), encoder_grid=1)


def small_config(**denoiser):
    """The ``tiny`` config shrunk to ``SMALL`` (overrides in ``denoiser``), 3 inference steps."""
    return get_config("tiny", denoiser={**SMALL, **denoiser}, cell=S, num_inference_steps=3)


def pair_estimator(width=8, bins=12, cell=32, seed=0) -> PairAzimuthEstimator:
    """A randomly initialised pair-azimuth estimator (seeded)."""
    torch.manual_seed(seed)
    return PairAzimuthEstimator(PairAzimuthNet(width, bins, cell).eval(), cell,
                                {"width": width, "bins": bins, "cell": cell})


def random_cells(n, cell=32, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random RGB cells and masks."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, cell, cell, 3), dtype=np.uint8), rng.random((n, cell, cell)) > 0.3
