"""Training the pair-azimuth network (``model.pair_azimuth``): ``sparp-ros train-pair-azimuth
--data DATA... --out DIR`` on ``sparp-ros dataset`` shards, every ordered pair of views of a sample,
labels from ``azimuth_self``; mirroring both images negates the label, brightness changes model
lighting, one recolouring per pair hides which training object it is. A trained network can seed
a wider one (``load_widened``: more inputs, starting at zero weights)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..model.config import ModelLoadError
from ..model.pair_azimuth import PairAzimuthEstimator, PairAzimuthNet, pair_probabilities
from .augment import augment_brightness, augment_colour, augment_depth, random_colour_mix
from .small_nets import (PackedCells, as_input, load_dataset_views, run_training, train_loop,
                         training_parser)

__all__ = ["load_pair_samples", "load_widened", "main", "pair_errors", "train_pair_azimuth"]


def load_pair_samples(folders: list[str | Path], with_depth: bool = False
                      ) -> tuple[PackedCells, torch.Tensor, np.ndarray, int]:
    """Every view (network input [V,4,S,S] when indexed; ``with_depth`` [V,6,S,S]) and every ordered
    pair of views of one sample (index pairs [P,2]) with its azimuth in degrees [P] (maps the
    second view's frame onto the first's), and the cell size S."""
    views = load_dataset_views(folders, ("azimuth_self",), with_depth=with_depth)
    all_az = np.degrees(views.fields["azimuth_self"].astype(np.float64))
    pairs, azimuths = [], []
    count = 0
    for n in views.num_views:
        az = all_az[count:count + n]
        for a in range(n):
            for b in range(n):
                if a != b:          # p_ref = Rz(az_k) p_k  ⇒  p_a = Rz(az_b − az_a) p_b
                    pairs.append((count + a, count + b))
                    azimuths.append((az[b] - az[a]) % 360.0)
        count += n
    x = PackedCells(views.images, views.masks, views.depth, views.depth_valid)
    return x, torch.tensor(pairs, dtype=torch.long).reshape(-1, 2), np.asarray(azimuths), int(x.shape[-1])


def pair_errors(estimator: PairAzimuthEstimator, x: torch.Tensor | PackedCells, pairs: torch.Tensor,
                azimuths: np.ndarray, mirror: bool = False) -> np.ndarray:
    """|most likely bin's centre − true azimuth| in degrees, per pair (``mirror``: as
    ``model.pair_azimuth.pair_probabilities``)."""
    probs = pair_probabilities(estimator.net, as_input(x), pairs[:, 0], pairs[:, 1], mirror)
    centre = (probs.argmax(1) + 0.5) * (360.0 / estimator.bins)
    return np.abs((centre - azimuths + 180.0) % 360.0 - 180.0)


def _error_summary(e: np.ndarray) -> tuple[dict, str]:
    """Median / within-30° / flipped share of azimuth errors: a history record and a log line."""
    median, acc30, flip = float(np.median(e)), float(np.mean(e < 30)), float(np.mean(e > 150))
    return ({"val_median_deg": median, "val_acc30": acc30, "val_flip": flip},
            f"validation median error {median:.1f}°, within 30° {acc30:.2f}, flipped (>150°) {flip:.2f}")


def load_widened(net: nn.Module, trained: nn.Module) -> None:
    """Load ``trained``'s weights into ``net``, whose convolutions may take more input channels
    (appended after the trained ones, as ``PairAzimuthNet.compare`` appends the fine correlation
    and the input stem folds the depth channels in after the image's):
    those get zero weights, so ``net`` starts as exactly the trained network's function and
    training grows the new inputs' use from there, instead of from scratch.
    ValueError for any other difference."""
    theirs = trained.state_dict()
    state = net.state_dict()
    if set(state) != set(theirs):
        raise ValueError(f"cannot widen: parameters differ ({sorted(set(state) ^ set(theirs))[:4]} ...)")
    for name, value in state.items():
        old = theirs[name]
        if old.shape == value.shape:
            value.copy_(old)
        elif value.ndim == 4 and old.ndim == 4 and value.shape[0] == old.shape[0] \
                and value.shape[2:] == old.shape[2:] and value.shape[1] > old.shape[1]:
            value.zero_()
            value[:, :old.shape[1]] = old
        else:
            raise ValueError(f"cannot widen {name}: {tuple(old.shape)} → {tuple(value.shape)}")
    net.load_state_dict(state)


def train_pair_azimuth(data: list[str | Path], out: str | Path, val_data: list[str | Path] | None = None,
                       width: int = 32, bins: int = 36, steps: int = 3000, batch_size: int = 128,
                       lr: float = 5e-4, max_minutes: float | None = None, seed: int = 0,
                       val_every: int = 500, threads: int | None = None, colour: bool = True,
                       init: str | Path | None = None, correlation: bool = False,
                       attention: int = 0, fine_correlation: bool = False, depth: bool = False,
                       log=print) -> PairAzimuthEstimator:
    """Train on shards ``data`` (one-cycle lr over ``steps``; ``max_minutes`` stops early), log
    the validation error on ``val_data`` (held-out objects), save to ``out``. ``colour``: one
    random channel permutation and hue shift per pair (``augment.random_colour_mix``).
    ``init``: start from a trained network's folder (its width, bins, cell size and options must
    match: a :class:`ModelLoadError` otherwise), to continue training with a new schedule; a
    network without the fine correlation or the depth may start one with them (:func:`load_widened`).
    ``correlation``: the network compares the views through a correlation volume too;
    ``attention``: through that many cross-view transformer layers; ``fine_correlation``: through
    a correlation volume at the finer scale too; ``depth``: an RGB-D network, its depth made from
    the shards' NOCS targets, with noise and holes added in training (:class:`PairAzimuthNet`)."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    t_start = time.time()
    x_all, pairs, azimuths, cell = load_pair_samples(data, with_depth=depth)
    val = load_pair_samples(val_data, with_depth=depth) if val_data else None
    log(f"pair-azimuth training: {len(pairs)} ordered pairs of {len(x_all)} views, {cell} px cells "
        f"({time.time() - t_start:.0f} s to load)")
    labels = torch.from_numpy(np.floor(azimuths / (360.0 / bins)).astype(np.int64) % bins)
    options = (correlation, attention, fine_correlation, depth)
    net = PairAzimuthNet(width, bins, cell, *options)
    if init is not None:
        start = PairAzimuthEstimator.from_folder(init)
        theirs = (int(start.config["width"]), start.bins, start.cell, start.net.correlation,
                  start.net.attention, start.net.fine_correlation, start.net.depth)
        added = [name for name, new, old in (("the fine correlation", fine_correlation, theirs[5]),
                                             ("the depth", depth, theirs[6])) if new and not old]
        widened = theirs[:5] == (width, bins, cell, correlation, attention) and bool(added) and \
            all(new or not old for new, old in zip((fine_correlation, depth), theirs[5:]))
        if theirs != (width, bins, cell, *options) and not widened:
            raise ModelLoadError(f"--init {init}: width, bins, cell, correlation, attention, fine "
                                 f"correlation, depth {theirs} do not match {(width, bins, cell, *options)}")
        if widened:
            load_widened(net, start.net)
            log(f"starting from {init}, widened to {' and '.join(added)} (new inputs at 0)")
        else:
            net.load_state_dict(start.net.state_dict())
            log(f"starting from {init}")
    estimator = PairAzimuthEstimator(net, cell, {})

    def batch_loss(gen: torch.Generator) -> torch.Tensor:
        idx = torch.randint(0, len(pairs), (batch_size,), generator=gen)
        a, b, y = x_all[pairs[idx, 0]], x_all[pairs[idx, 1]], labels[idx].clone()
        flip = torch.rand(batch_size, generator=gen) < 0.5      # mirror both: the azimuth negates
        a[flip], b[flip] = a[flip].flip(-1), b[flip].flip(-1)
        y[flip] = bins - 1 - y[flip]
        gain = 0.7 + 0.6 * torch.rand(batch_size, 1, 1, 1, generator=gen)    # one light per pair
        if colour:                                   # one recolouring per pair: same object
            mix = random_colour_mix(batch_size, gen)
            a, b = augment_colour(a, mix), augment_colour(b, mix)
        if depth:                                    # each view its own sensor noise and holes
            a, b = augment_depth(a, gen), augment_depth(b, gen)
        return F.cross_entropy(net(augment_brightness(a, gain), augment_brightness(b, gain)), y,
                               label_smoothing=0.05)

    def validate() -> tuple[dict, str]:
        return _error_summary(pair_errors(estimator, *val[:3]))

    step, history, minutes = train_loop(net, batch_loss, steps, lr, seed, max_minutes,
                                        validate if val is not None else None, val_every, log)
    training = {"data": [str(d) for d in data], "pairs": len(pairs), "steps": step,
                "batch_size": batch_size, "lr": lr, "seed": seed, "colour_augment": colour,
                "init": str(init) if init is not None else None,
                "minutes": minutes, "history": history}
    if val is not None:      # what the pipeline uses: both the pair and its mirror image
        training["val_mirror_averaged"], message = _error_summary(
            pair_errors(estimator, *val[:3], mirror=True))
        log(f"final, mirror-averaged: {message}")
    estimator.config = {"width": width, "bins": bins, "cell": cell, "correlation": correlation,
                        "attention": attention, "fine_correlation": fine_correlation, "depth": depth,
                        "training": training}
    estimator.save(out)
    log(f"saved {out}")
    return estimator


def main(argv: list[str] | None = None) -> int:
    p = training_parser("sparp-ros train-pair-azimuth", "train the pair-azimuth network (relative "
                        "azimuth of two views) on `sparp-ros dataset` shards", steps=3000, lr=5e-4,
                        lr_help=" (2e-3 left the network at the label prior)")
    p.add_argument("--bins", type=int, default=36)
    p.add_argument("--no-colour-augment", dest="colour", action="store_false",
                   help="keep the objects' colours (default: one random channel permutation and hue "
                        "shift per pair, so the network cannot tell training objects by colour)")
    p.add_argument("--init", help="start from this trained pair-azimuth folder (continue training)")
    p.add_argument("--correlation", action="store_true",
                   help="compare the views through a correlation volume of their feature maps too")
    p.add_argument("--attention", type=int, default=0, metavar="LAYERS",
                   help="let the two views' feature maps attend to each other in this many transformer "
                        "layers before they are compared (default 0: none)")
    p.add_argument("--fine-correlation", action="store_true",
                   help="compare the views through a correlation volume of their finer (16×16) feature "
                        "maps too")
    p.add_argument("--depth", action="store_true",
                   help="an RGB-D network: read each view's depth too (made from the NOCS targets; "
                        "with --init from a network without it, the depth inputs start at 0)")
    a = p.parse_args(argv)
    if a.attention < 0:
        p.error("--attention must be 0 or more")
    return run_training(p, a, lambda: train_pair_azimuth(
        a.data, a.out, a.val_data, a.width, a.bins, a.steps, a.batch_size, a.lr, a.max_minutes,
        a.seed, val_every=a.val_every, threads=a.threads, colour=a.colour, init=a.init,
        correlation=a.correlation, attention=a.attention, fine_correlation=a.fine_correlation,
        depth=a.depth),
        ("steps", "batch_size", "val_every", "bins"))
