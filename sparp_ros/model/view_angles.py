"""A small CNN that reads a view's camera elevation and roll from its cell crop.

Why a second network: the per-view NOCS denoiser learns each view's *frame* through a per-pixel
loss, and on unseen objects it regresses the camera's elevation towards the mean (12.2° median
error, correlation 0.57 with the truth on the 25 eval captures; ``exp_decompose.py``). The
elevation is one number per view, and a network trained on that number alone, on the same
training samples, judges it better (8.8° in a 10-minute probe). The pipeline moves each view's
PnP frame to these angles (``geometry.view_angles.tilt_correction``) before the views are aligned.

Input: the pipeline's cell (RGB with the background grey, plus the mask), like the denoiser's
condition. Output: (elevation, roll) in degrees, conventions of ``geometry.view_angles``.

A weights folder holds ``config.json`` (architecture, cell size, training record) and
``model.safetensors``; nothing else is ever loaded (no pickle).

``sparp-ros train-angles --data DATA... --out DIR`` trains it on ``sparp-ros dataset`` shards: the
labels come from each view's ``T_camera_object`` (gravity-aligned frame), horizontal flips (roll
negated) and brightness changes augment the crops.
"""
from __future__ import annotations

import glob
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..geometry.view_angles import elevation_roll_deg
from .small_nets import (CONFIG_FILE, WEIGHTS_FILE, PackedCells, augment_brightness, cells_to_input,
                         conv_stage, input_stem, load_net, run_training, save_net, train_loop,
                         training_parser)

__all__ = ["CONFIG_FILE", "WEIGHTS_FILE", "ViewAngleEstimator", "ViewAngleNet", "angle_errors",
           "cells_to_input", "load_view_samples", "main", "train_view_angles"]
ANGLE_UNIT_DEG = 30.0          # the network's outputs are angles / 30°: order one for the loss


class ViewAngleNet(nn.Module):
    """The input stem (``small_nets.input_stem``: cells above 32 px folded into channels), four conv
    stages (two 3x3 convs each, GroupNorm, SiLU; 2x average pooling between), global average
    pooling and an MLP: (elevation, roll) / ``ANGLE_UNIT_DEG``."""

    def __init__(self, width: int = 32, cell: int = 32) -> None:
        super().__init__()
        self.stem, c_in = input_stem(cell)
        chans = [c_in, width, 2 * width, 4 * width, 4 * width]
        self.stages = nn.ModuleList(conv_stage(i, o) for i, o in zip(chans[:-1], chans[1:]))
        self.head = nn.Sequential(nn.Linear(chans[-1], 128), nn.SiLU(), nn.Linear(128, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i < len(self.stages) - 1:
                x = F.avg_pool2d(x, 2)
        return self.head(x.mean(dim=(2, 3)))


@dataclass
class ViewAngleEstimator:
    """A loaded view-angle network and the cell size it was trained for."""

    net: ViewAngleNet
    cell: int
    config: dict

    @classmethod
    def from_folder(cls, folder: str | Path) -> "ViewAngleEstimator":
        """Load ``config.json`` + ``model.safetensors``; :class:`ModelLoadError` naming the file on
        any problem (missing, corrupt, pickle, shapes that do not fit the config)."""
        net, config = load_net(folder, lambda c: ViewAngleNet(int(c["width"]), int(c["cell"])),
                               ("width", "cell"))
        return cls(net, int(config["cell"]), config)

    def save(self, folder: str | Path) -> None:
        save_net(folder, self.net, self.config)

    @torch.no_grad()
    def predict(self, images: np.ndarray, masks: np.ndarray, mirror: bool = True) -> np.ndarray:
        """(elevation, roll) in degrees for each cell: an N×2 float array.

        ``mirror`` averages with the answer for the mirrored cell (same elevation, roll negated:
        the network was trained on mirrored cells too), a free second opinion."""
        if images.ndim != 4 or images.shape[1:] != (self.cell, self.cell, 3):
            raise ValueError(f"view-angle network needs N x {self.cell} x {self.cell} x 3 cells, "
                             f"got {images.shape}")
        x = cells_to_input(images, masks)
        out = self.net(x)
        if mirror:
            flipped = self.net(x.flip(-1)) * torch.tensor([1.0, -1.0])
            out = 0.5 * (out + flipped)
        return out.numpy().astype(np.float64) * ANGLE_UNIT_DEG


# ------------------------------------------------------------------------------------- training
def load_view_samples(folders: list[str | Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Every view of every sample in ``sparp-ros dataset`` shards: (cells N×S×S×3 uint8, masks
    N×S×S bool, labels N×2 degrees, cell size S)."""
    images, masks, labels = [], [], []
    for folder in folders:
        shards = sorted(glob.glob(str(Path(folder) / "shard_*.npz")))
        if not shards:
            raise FileNotFoundError(f"no shard_*.npz in {folder} (make one with `sparp-ros dataset`)")
        for path in shards:
            with np.load(path) as d:      # each array read once (indexing d reloads it)
                shard_images, shard_masks, shard_poses = d["images"], d["masks"], d["T_camera_object"]
                for i, n in enumerate(d["num_views"].astype(int)):
                    images.append(shard_images[i, :n])
                    masks.append(shard_masks[i, :n] > 0)
                    labels.extend(elevation_roll_deg(T.astype(np.float64)) for T in shard_poses[i, :n])
    x, m = np.concatenate(images), np.concatenate(masks)
    return x, m, np.asarray(labels, np.float64), int(x.shape[1])


def angle_errors(estimator: ViewAngleEstimator, images: np.ndarray, masks: np.ndarray,
                 labels: np.ndarray, batch: int = 512, mirror: bool = True) -> np.ndarray:
    """|predicted − true| (degrees) per view: N×2 (elevation, roll)."""
    pred = np.concatenate([estimator.predict(images[i:i + batch], masks[i:i + batch], mirror)
                           for i in range(0, len(images), batch)])
    return np.abs(pred - labels)


def train_view_angles(data: list[str | Path], out: str | Path, val_data: list[str | Path] | None = None,
                      width: int = 32, steps: int = 4500, batch_size: int = 128, lr: float = 2e-3,
                      max_minutes: float | None = None, seed: int = 0, val_every: int = 500,
                      threads: int | None = None, log=print) -> ViewAngleEstimator:
    """Train on shards ``data`` (one-cycle learning rate over ``steps``; ``max_minutes`` stops
    early), log the validation error on ``val_data`` (held-out objects) as it goes, save to
    ``out`` and return the estimator. Deterministic by ``seed`` on one thread count."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    t_start = time.time()
    images, masks, labels, cell = load_view_samples(data)
    val = load_view_samples(val_data) if val_data else None
    log(f"view-angle training: {len(images)} views of {cell} px cells ({time.time() - t_start:.0f} s to "
        f"load), elevation sd {labels[:, 0].std():.1f}°, roll sd {labels[:, 1].std():.1f}°")
    x_all = PackedCells(images, masks)
    y_all = torch.from_numpy(labels / ANGLE_UNIT_DEG).float()
    net = ViewAngleNet(width, cell)
    estimator = ViewAngleEstimator(net, cell, {})

    def batch_loss(gen: torch.Generator) -> torch.Tensor:
        idx = torch.randint(0, len(x_all), (batch_size,), generator=gen)
        x, y = x_all[idx], y_all[idx].clone()
        flip = torch.rand(batch_size, generator=gen) < 0.5      # a mirror image: roll negated
        x[flip] = x[flip].flip(-1)
        y[flip, 1] = -y[flip, 1]
        x = augment_brightness(x, 0.7 + 0.6 * torch.rand(batch_size, 1, 1, 1, generator=gen))
        return F.smooth_l1_loss(net(x), y, beta=0.1)

    def validate() -> tuple[dict, str]:
        e = np.median(angle_errors(estimator, *val[:3]), axis=0)
        return ({"val_elevation_deg": float(e[0]), "val_roll_deg": float(e[1])},
                f"validation median error elevation {e[0]:.1f}°, roll {e[1]:.1f}°")

    step, history, minutes = train_loop(net, batch_loss, steps, lr, seed, max_minutes,
                                        validate if val is not None else None, val_every, log)
    estimator.config = {"width": width, "cell": cell,
                        "training": {"data": [str(d) for d in data], "views": len(images),
                                     "steps": step, "batch_size": batch_size, "lr": lr, "seed": seed,
                                     "minutes": minutes,
                                     "history": history}}
    estimator.save(out)
    log(f"saved {out}")
    return estimator


def main(argv: list[str] | None = None) -> int:
    p = training_parser("sparp-ros train-angles", "train the view-angle network (camera elevation "
                        "and roll from a cell) on `sparp-ros dataset` shards", steps=4500, lr=2e-3)
    a = p.parse_args(argv)
    return run_training(p, a, lambda: train_view_angles(
        a.data, a.out, a.val_data, a.width, a.steps, a.batch_size, a.lr, a.max_minutes, a.seed,
        val_every=a.val_every, threads=a.threads))
