"""Training the view-angle network (``model.view_angles``): ``sparp-ros train-angles --data DATA...
--out DIR`` on ``sparp-ros dataset`` shards. The labels come from each view's ``T_camera_object``
(gravity-aligned frame); horizontal flips (roll negated) and brightness changes augment the crops,
noise and holes the depth of an RGB-D network."""
from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from ..geometry.view_angles import elevation_roll_deg
from ..model.config import ModelLoadError
from ..model.view_angles import ANGLE_UNIT_DEG, ViewAngleEstimator, ViewAngleNet
from .augment import augment_brightness, augment_depth
from .small_nets import (PackedCells, load_dataset_views, run_training, sample_view_counts,
                         train_loop, training_parser)

__all__ = ["ViewSamples", "angle_errors", "load_view_samples", "main", "train_view_angles",
           "view_groups"]


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
                      init: str | Path | None = None, log=print) -> ViewAngleEstimator:
    """Train on shards ``data`` (one-cycle learning rate over ``steps``; ``max_minutes`` stops
    early), log the validation error on ``val_data`` (held-out objects) as it goes, save to
    ``out`` and return the estimator. Deterministic by ``seed`` on one thread count.

    ``context`` (:class:`ViewAngleNet`): a batch is whole samples (about ``batch_size`` views),
    each view read with the other views of its sample; a mirror image mirrors the whole sample.
    ``depth``: an RGB-D network (:class:`ViewAngleNet`), its depth made from the shards' NOCS
    targets (exact), with noise and holes added in training as a depth camera has them.
    ``init``: start from a trained network's folder (fine-tuning, e.g. on realism data); its
    width, cell size, context and depth must be these."""
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
    if init is not None:
        start = ViewAngleEstimator.from_folder(init)
        theirs = (int(start.config["width"]), start.cell, start.context, bool(start.net.depth))
        if theirs != (width, cell, context, depth):
            raise ModelLoadError(f"--init {init}: width, cell, context, depth {theirs} do not match "
                                 f"{(width, cell, context, depth)}")
        net.load_state_dict(start.net.state_dict())
        log(f"starting from {init}")
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
                                     "init": str(init) if init is not None else None,
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
    p.add_argument("--init", help="start from this trained view-angle folder (fine-tune)")
    a = p.parse_args(argv)
    return run_training(p, a, lambda: train_view_angles(
        a.data, a.out, a.val_data, a.width, a.steps, a.batch_size, a.lr, a.max_minutes, a.seed,
        val_every=a.val_every, threads=a.threads, context=a.context, depth=a.depth, init=a.init))


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
