"""Validation through the real pose path: predicted NOCS → PnP (with the cell intrinsics) →
rotation error against ground truth, on held-apart objects.

Used as the training hook (`sparp-ros train --validate sparp_ros.training.validate:pose_validator`).
For ``nocs_self`` each view's pose is compared in that view's own gravity-aligned frame
(``p_ref = Rz(azimuth_self) p_self``), which is what per-view mode gets from the network before
the azimuth search; for ``nocs_ref`` in view 0's frame.
"""
from __future__ import annotations

import os

import numpy as np

from ..camera import PinholeCamera
from ..conventions import rotation_angle_deg
from ..geometry.azimuth import rot_z
from ..geometry.pnp import solve_pnp_nocs

VAL_ITEMS = int(os.environ.get("SPARP_VAL_ITEMS", "32"))


def view_rotation_errors(pipe, dataset, domain: str = "nocs_self", items: int = VAL_ITEMS,
                         seed: int = 0) -> list[float]:
    """Per-view rotation errors (degrees; 180 when PnP fails) over the first ``items`` items."""
    from ..model.diffusion import split_nocs_tiles
    errors: list[float] = []
    for i in range(min(items, len(dataset))):
        item = dataset[i]
        n = int(item["num_views"])
        out = pipe(item["cond"], item["cond_mask"], n, domain, seed=seed + i)[0]
        for k, (nocs, mask) in enumerate(split_nocs_tiles(out, n)):
            K = item["K"][k].numpy().astype(np.float64)
            S = nocs.shape[0]
            r = solve_pnp_nocs(nocs, mask, PinholeCamera(S, S, K))
            if not r.ok:
                errors.append(180.0)
                continue
            R_gt = item["T_camera_object"][k].numpy()[:3, :3].astype(np.float64)
            if domain == "nocs_self":
                R_gt = R_gt @ rot_z(float(item["azimuth_self"][k]))
            errors.append(rotation_angle_deg(r.T_camera_unit[:3, :3] @ R_gt.T))
    return errors


def pose_validator(pipe, val_data: str) -> dict:
    """Training hook: median per-view rotation error and Acc@15/30 on ``val_data``."""
    from .dataset import SparpDataset
    ds = SparpDataset(val_data, domains=("nocs_self",))
    metrics = {}
    for domain in ("nocs_self",):
        e = np.asarray(view_rotation_errors(pipe, ds, domain))
        metrics[f"{domain}_median_deg"] = float(np.median(e))
        metrics[f"{domain}_acc15"] = float(np.mean(e < 15))
        metrics[f"{domain}_acc30"] = float(np.mean(e < 30))
    return metrics
