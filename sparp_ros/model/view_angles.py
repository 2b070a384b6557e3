"""A small CNN that reads a view's camera elevation and roll from its cell crop.

Why a second network: the per-view NOCS denoiser learns each view's *frame* through a per-pixel
loss, and on unseen objects it regresses the camera's elevation towards the mean (12.2° median
error, correlation 0.57 with the truth on the 25 eval captures; ``exp_decompose.py``). The
elevation is one number per view, and a network trained on that number alone, on the same
training samples, judges it better (8.8° in a 10-minute probe). The pipeline moves each view's
PnP frame to these angles (``geometry.view_angles.tilt_correction``) before the views are aligned.

Input: the pipeline's cell (RGB with the background grey, plus the mask), like the denoiser's
condition; a ``depth`` network also reads the view's depth inside the mask (RGB-D cameras), as
depth relative to its median in cell widths (``small_nets.relative_depth``): the slant of the
surfaces a camera sees is its elevation, which one image leaves to the network's guess of the
shape. Output: (elevation, roll) in degrees, conventions of ``geometry.view_angles``.

A weights folder holds ``config.json`` (architecture, cell size, training record) and
``model.safetensors``; nothing else is ever loaded (no pickle).

``sparp-ros train-angles --data DATA... --out DIR`` trains it on ``sparp-ros dataset`` shards: the
labels come from each view's ``T_camera_object`` (gravity-aligned frame), horizontal flips (roll
negated) and brightness changes augment the crops.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..geometry.view_angles import elevation_roll_deg
from .small_nets import (CONFIG_FILE, DEPTH_CHANNELS, WEIGHTS_FILE, DepthReading, PackedCells,
                         augment_brightness, augment_depth, cells_to_input, conv_stage, input_stem,
                         load_dataset_views, load_net, run_training, sample_view_counts, save_net,
                         train_loop, training_parser)

__all__ = ["CONFIG_FILE", "WEIGHTS_FILE", "ViewAngleEstimator", "ViewAngleNet", "ViewSamples",
           "angle_errors", "cells_to_input", "load_view_samples", "main", "others_mean",
           "train_view_angles", "view_groups"]
ANGLE_UNIT_DEG = 30.0          # the network's outputs are angles / 30°: order one for the loss


class ViewAngleNet(nn.Module):
    """The input stem (``small_nets.input_stem``: cells above 32 px folded into channels), four conv
    stages (two 3x3 convs each, GroupNorm, SiLU; 2x average pooling between), global average
    pooling and an MLP: (elevation, roll) / ``ANGLE_UNIT_DEG``.

    ``context``: the head also sees the mean feature of the *other* views of the same object
    (and whether there are any). Why: one view's elevation error is mostly a per-object bias —
    an unseen shape's proportions and its camera elevation trade off in a single image — while
    views from other elevations and sides show the shape that view alone leaves open.

    ``depth``: the input has the view's relative depth and its validity too
    (``small_nets.cells_to_input`` with depth: 6 channels instead of 4)."""

    def __init__(self, width: int = 32, cell: int = 32, context: bool = False, depth: bool = False) -> None:
        super().__init__()
        self.context = context
        self.depth = depth
        self.stem, c_in = input_stem(cell, 4 + (DEPTH_CHANNELS if depth else 0))
        chans = [c_in, width, 2 * width, 4 * width, 4 * width]
        self.stages = nn.ModuleList(conv_stage(i, o) for i, o in zip(chans[:-1], chans[1:]))
        head_in = 2 * chans[-1] + 1 if context else chans[-1]
        self.head = nn.Sequential(nn.Linear(head_in, 128), nn.SiLU(), nn.Linear(128, 2))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """One feature vector per view [N, C]."""
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i < len(self.stages) - 1:
                x = F.avg_pool2d(x, 2)
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor, groups: torch.Tensor | None = None) -> torch.Tensor:
        """``groups`` [N] (int): which object each view shows (views of one object share a
        number); None: all N views show one object. Only a ``context`` network uses it."""
        f = self.embed(x)
        if self.context:
            f = torch.cat([f, *others_mean(f, groups)], dim=1)
        return self.head(f)


def others_mean(f: torch.Tensor, groups: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """For features ``f`` [N, C] of views grouped by object (``groups`` [N], None: one group): the
    mean feature of the other views of each view's group [N, C] (zeros for a view alone) and
    whether it has any [N, 1] (0 or 1)."""
    if groups is None:
        groups = torch.zeros(len(f), dtype=torch.long)
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    sums = f.new_zeros(n_groups, f.shape[1]).index_add_(0, groups, f)
    counts = f.new_zeros(n_groups).index_add_(0, groups, f.new_ones(len(f)))
    others = (counts[groups] - 1.0)[:, None]
    return (sums[groups] - f) / others.clamp(min=1.0), (others > 0).to(f.dtype)


@dataclass
class ViewAngleEstimator(DepthReading):
    """A loaded view-angle network and the cell size it was trained for."""

    net: ViewAngleNet
    cell: int
    config: dict

    @classmethod
    def from_folder(cls, folder: str | Path) -> "ViewAngleEstimator":
        """Load ``config.json`` + ``model.safetensors``; :class:`ModelLoadError` naming the file on
        any problem (missing, corrupt, pickle, shapes that do not fit the config)."""
        def build(c: dict) -> ViewAngleNet:      # configs from before the options: no context, no depth
            return ViewAngleNet(int(c["width"]), int(c["cell"]), bool(c.get("context", False)),
                                bool(c.get("depth", False)))
        net, config = load_net(folder, build, ("width", "cell"))
        return cls(net, int(config["cell"]), config)

    def save(self, folder: str | Path) -> None:
        save_net(folder, self.net, self.config)

    @property
    def context(self) -> bool:
        return self.net.context

    @torch.no_grad()
    def predict(self, images: np.ndarray, masks: np.ndarray, mirror: bool = True,
                groups: np.ndarray | None = None, depth: np.ndarray | None = None,
                depth_valid: np.ndarray | None = None) -> np.ndarray:
        """(elevation, roll) in degrees for each cell: an N×2 float array. The cells are views of
        one object, or of the objects ``groups`` [N] numbers (a context network reads each view
        with the others of its object). A depth network needs ``depth`` and ``depth_valid``
        (N×S×S, ``small_nets.relative_depth`` of the cells' metric depth); others ignore them.

        ``mirror`` averages with the answer for the mirrored cells (same elevation, roll negated:
        the network was trained on mirrored cells too), a free second opinion."""
        if images.ndim != 4 or images.shape[1:] != (self.cell, self.cell, 3):
            raise ValueError(f"view-angle network needs N x {self.cell} x {self.cell} x 3 cells, "
                             f"got {images.shape}")
        g = None if groups is None else torch.as_tensor(np.asarray(groups), dtype=torch.long)
        if g is not None and (g.shape != (len(images),) or (len(g) and int(g.min()) < 0)):
            raise ValueError(f"groups must number each of the {len(images)} cells with an integer >= 0, "
                             f"got shape {tuple(g.shape)}")
        x = self._input(images, masks, depth, depth_valid, "view-angle")
        out = self.net(x, g)
        if mirror:
            flipped = self.net(x.flip(-1), g) * torch.tensor([1.0, -1.0])
            out = 0.5 * (out + flipped)
        return out.numpy().astype(np.float64) * ANGLE_UNIT_DEG



# ------------------------------------------------------------------------------------- training
class ViewSamples(NamedTuple):
    """Every view of some dataset folders: cells N×S×S×3 uint8, masks N×S×S bool, labels N×2
    degrees (elevation, roll), cell size S; with depth, the relative depth N×S×S and where it is
    measured (``small_nets.relative_depth``), else None."""

    images: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    cell: int
    depth: np.ndarray | None = None
    depth_valid: np.ndarray | None = None


def load_view_samples(folders: list[str | Path], with_depth: bool = False) -> ViewSamples:
    """Every view of every sample in ``sparp-ros dataset`` shards (``with_depth``: its depth too,
    made from the NOCS targets)."""
    views = load_dataset_views(folders, ("T_camera_object",), with_depth=with_depth)
    labels = [elevation_roll_deg(T) for T in views.fields["T_camera_object"].astype(np.float64)]
    return ViewSamples(views.images, views.masks, np.asarray(labels, np.float64).reshape(-1, 2),
                       views.cell, views.depth, views.depth_valid)


def view_groups(folders: list[str | Path]) -> np.ndarray:
    """For the views of :func:`load_view_samples` (same folders, same order), the number of the
    sample each belongs to [N] (int64): views of one sample show one object."""
    counts = sample_view_counts(folders)
    return np.repeat(np.arange(len(counts)), counts)


def angle_errors(estimator: ViewAngleEstimator, images: np.ndarray, masks: np.ndarray,
                 labels: np.ndarray, batch: int = 512, mirror: bool = True,
                 groups: np.ndarray | None = None, depth: np.ndarray | None = None,
                 depth_valid: np.ndarray | None = None) -> np.ndarray:
    """|predicted − true| (degrees) per view: N×2 (elevation, roll). ``groups`` [N]: the object of
    each view, views of one object contiguous (:func:`view_groups`); None: every view alone.
    ``depth``, ``depth_valid``: as :meth:`ViewAngleEstimator.predict` (a depth network needs them)."""
    if groups is None:
        groups = np.arange(len(images))
    cuts = [0, *(np.flatnonzero(np.diff(groups)) + 1), len(images)]    # batches end between objects
    pred, start = [], 0
    for k, end in enumerate(cuts[1:], 1):
        if end - start >= batch or k == len(cuts) - 1:
            g = groups[start:end]
            d = None if depth is None else depth[start:end].astype(np.float32)
            v = None if depth_valid is None else depth_valid[start:end]
            pred.append(estimator.predict(images[start:end], masks[start:end], mirror, g - g[0], d, v))
            start = end
    return np.abs(np.concatenate(pred) - labels)


def train_view_angles(data: list[str | Path], out: str | Path, val_data: list[str | Path] | None = None,
                      width: int = 32, steps: int = 4500, batch_size: int = 128, lr: float = 2e-3,
                      max_minutes: float | None = None, seed: int = 0, val_every: int = 500,
                      threads: int | None = None, context: bool = False, depth: bool = False,
                      log=print) -> ViewAngleEstimator:
    """Train on shards ``data`` (one-cycle learning rate over ``steps``; ``max_minutes`` stops
    early), log the validation error on ``val_data`` (held-out objects) as it goes, save to
    ``out`` and return the estimator. Deterministic by ``seed`` on one thread count.

    ``context`` (:class:`ViewAngleNet`): a batch is whole samples (about ``batch_size`` views),
    each view read with the other views of its sample; a mirror image mirrors the whole sample.
    ``depth``: an RGB-D network (:class:`ViewAngleNet`), its depth made from the shards' NOCS
    targets (exact), with noise and holes added in training as a depth camera has them."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    t_start = time.time()
    train = load_view_samples(data, with_depth=depth)
    images, masks, labels, cell = train[:4]
    val = load_view_samples(val_data, with_depth=depth) if val_data else None
    log(f"view-angle training: {len(images)} views of {cell} px cells{' with depth' if depth else ''} "
        f"({time.time() - t_start:.0f} s to load), elevation sd {labels[:, 0].std():.1f}°, "
        f"roll sd {labels[:, 1].std():.1f}°")
    x_all = PackedCells(images, masks, train.depth, train.depth_valid)
    del train
    y_all = torch.from_numpy(labels / ANGLE_UNIT_DEG).float()
    net = ViewAngleNet(width, cell, context, depth)
    estimator = ViewAngleEstimator(net, cell, {})
    draw = _sample_batches(view_groups(data), batch_size) if context else None
    val_groups = view_groups(val_data) if (context and val_data) else None

    def batch_loss(gen: torch.Generator) -> torch.Tensor:
        if draw is None:
            idx = torch.randint(0, len(x_all), (batch_size,), generator=gen)
            groups = None
            flip = torch.rand(batch_size, generator=gen) < 0.5      # a mirror image: roll negated
        else:
            idx, groups = draw(gen)
            flip = (torch.rand(int(groups[-1]) + 1, generator=gen) < 0.5)[groups]   # whole samples
        x, y = x_all[idx], y_all[idx].clone()
        x[flip] = x[flip].flip(-1)
        y[flip, 1] = -y[flip, 1]
        x = augment_brightness(x, 0.7 + 0.6 * torch.rand(len(idx), 1, 1, 1, generator=gen))
        if depth:
            x = augment_depth(x, gen)
        return F.smooth_l1_loss(net(x, groups), y, beta=0.1)

    def validate() -> tuple[dict, str]:
        e = np.median(angle_errors(estimator, *val[:3], groups=val_groups, depth=val.depth,
                                   depth_valid=val.depth_valid), axis=0)
        return ({"val_elevation_deg": float(e[0]), "val_roll_deg": float(e[1])},
                f"validation median error elevation {e[0]:.1f}°, roll {e[1]:.1f}°")

    step, history, minutes = train_loop(net, batch_loss, steps, lr, seed, max_minutes,
                                        validate if val is not None else None, val_every, log)
    estimator.config = {"width": width, "cell": cell, "context": context, "depth": depth,
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
    p.add_argument("--context", action="store_true",
                   help="read each view with the other views of its object (a set network: the "
                        "pipeline passes all views of a capture)")
    p.add_argument("--depth", action="store_true",
                   help="an RGB-D network: read each view's depth too (made from the NOCS targets; "
                        "the pipeline uses it where the views have depth)")
    a = p.parse_args(argv)
    return run_training(p, a, lambda: train_view_angles(
        a.data, a.out, a.val_data, a.width, a.steps, a.batch_size, a.lr, a.max_minutes, a.seed,
        val_every=a.val_every, threads=a.threads, context=a.context, depth=a.depth))



def _sample_batches(groups: np.ndarray, batch_size: int):
    """A function drawing whole samples of about ``batch_size`` views in all (their count over the
    mean sample size): (view indices, group of each view numbered 0… in the batch)."""
    starts = torch.from_numpy(np.flatnonzero(np.r_[True, np.diff(groups) != 0]))
    sizes = torch.diff(torch.cat([starts, torch.tensor([len(groups)])]))
    per_batch = max(1, int(round(batch_size / float(sizes.float().mean()))))

    def draw(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        pick = torch.randint(0, len(starts), (per_batch,), generator=gen)
        n = sizes[pick]
        group = torch.repeat_interleave(torch.arange(per_batch), n)
        first = torch.repeat_interleave(torch.cumsum(n, 0) - n, n)
        return starts[pick][group] + torch.arange(len(group)) - first, group
    return draw
