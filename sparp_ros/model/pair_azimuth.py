"""A small CNN that judges the relative azimuth between two views of an object from their cells.

Why: in per-view mode the views' frames differ by one azimuth each, and the visibility search
(``geometry.azimuth``) chooses them from the predicted shapes alone; with the NOCS model's blurry
32 px shapes it is within 30° for only ~40 % of the views and flips boxes and bottles by 180°,
while the true azimuths would put the relative rotation at the bar (``MODEL_CARD.md``). This
network looks at the two images together (appearance: which side, which colours, which
silhouette) and gives a distribution over the azimuth, which the joint search adds to its
visibility score as a cost (−log p, ``geometry.azimuth.pair_cost_curve``).

Input: two cells (as ``small_nets.cells_to_input``). A shared encoder brings each to an 8×8
feature map, a joint stage compares them, a linear head gives ``bins`` logits over the azimuth
``D`` that maps the second view's frame onto the first's (``p_first = Rz(D) p_second``; bin k
covers [k, k+1) · 360°/bins).

``sparp-ros train-pair-azimuth --data DATA... --out DIR`` trains it on ``sparp-ros dataset`` shards:
every ordered pair of views of a sample, labels from ``azimuth_self``; mirroring both images
negates the label, brightness changes model lighting.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelLoadError
from .small_nets import (BASE_CELL, DEPTH_CHANNELS, DepthReading, PackedCells, as_input,
                         augment_brightness, augment_colour, augment_depth, conv_stage, input_stem,
                         load_dataset_views, load_net, random_colour_mix, run_training, save_net,
                         train_loop, training_parser)

__all__ = ["PairAzimuthEstimator", "PairAzimuthNet", "correlation_volume", "load_pair_samples",
           "load_widened", "main", "pair_errors", "pair_probabilities", "train_pair_azimuth"]


class PairAzimuthNet(nn.Module):
    """Shared input stem (``small_nets.input_stem``: cells above 32 px folded into channels) and
    two-stage encoder per view (→ 8×8 for 32 px), two joint stages on the concatenated features
    (→ 4×4), an MLP head of ``bins`` logits.

    ``correlation`` adds, at every position of the first view's feature map, the cosine similarity
    of its feature with every position of the second's (a correlation volume, as relative-pose and
    optical-flow networks use): which part of one view reappears where in the other is what the
    azimuth is, and the joint convolutions only see the two maps side by side position by
    position.

    ``attention`` (layers, 0 = none) lets the two feature maps attend to each other before they are
    compared: both maps' positions are tokens of one transformer (with a position and a view
    embedding), so a feature can take in what the other view shows anywhere, not only at the same
    position or through one similarity per position pair.

    ``fine_correlation`` adds a second correlation volume at the encoder's finer scale (its last
    stage before pooling: 16×16 for 32 px), average-pooled over the first view's positions to the
    8×8 grid: one 8×8 cell of the coarse map blurs a handle or a label's edge into its
    neighbours, and which small part reappears where is what tells one side from the next.

    ``depth``: each view's input has its relative depth and validity too (RGB-D cameras:
    ``small_nets.cells_to_input`` with depth), so the views' surfaces are compared, not only their
    images."""

    def __init__(self, width: int = 32, bins: int = 36, cell: int = 32, correlation: bool = False,
                 attention: int = 0, fine_correlation: bool = False, depth: bool = False) -> None:
        super().__init__()
        if attention < 0 or (attention and width % 2):
            raise ValueError(f"attention layers must be ≥ 0 and need an even width (4 heads over "
                             f"2·width channels), got {attention} layers at width {width}")
        self.bins = bins
        self.correlation = correlation
        self.attention = attention
        self.fine_correlation = fine_correlation
        self.depth = depth
        self.stem, c_in = input_stem(cell, 4 + (DEPTH_CHANNELS if depth else 0))
        self.encoder = nn.ModuleList([conv_stage(c_in, width), conv_stage(width, 2 * width)])
        feature_side = min(cell, BASE_CELL) // 4
        if attention:
            self.token_position = nn.Parameter(0.02 * torch.randn(feature_side ** 2, 2 * width))
            self.token_view = nn.Parameter(0.02 * torch.randn(2, 2 * width))
            layer = nn.TransformerEncoderLayer(2 * width, nhead=4, dim_feedforward=4 * width, dropout=0.0,
                                               activation="gelu", batch_first=True, norm_first=True)
            self.cross_view = nn.TransformerEncoder(layer, attention, enable_nested_tensor=False)
        c_joint = (4 * width + (feature_side ** 2 if correlation else 0)
                   + ((2 * feature_side) ** 2 if fine_correlation else 0))
        self.joint = nn.ModuleList([conv_stage(c_joint, 4 * width), conv_stage(4 * width, 4 * width)])
        side = min(cell, BASE_CELL) // 8
        self.head = nn.Sequential(nn.Linear(4 * width * side * side, 256), nn.SiLU(), nn.Linear(256, bins))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Each view's feature map, computed once per view and compared per pair: the 8×8 map (for
        32 px), or with ``fine_correlation`` the last stage's 16×16 map before its pooling."""
        x = self.stem(x)
        x = F.avg_pool2d(self.encoder[0](x), 2)
        x = self.encoder[1](x)
        return x if self.fine_correlation else F.avg_pool2d(x, 2)

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        return self.compare(self.features(first), self.features(second))

    def compare(self, f_first: torch.Tensor, f_second: torch.Tensor) -> torch.Tensor:
        fine = []
        if self.fine_correlation:
            fine = [F.avg_pool2d(correlation_volume(f_first, f_second), 2)]
            f_first, f_second = F.avg_pool2d(f_first, 2), F.avg_pool2d(f_second, 2)
        if self.attention:
            f_first, f_second = self._attend(f_first, f_second)
        parts = [f_first, f_second]
        if self.correlation:
            parts.append(correlation_volume(f_first, f_second))
        x = torch.cat(parts + fine, dim=1)
        x = self.joint[1](F.avg_pool2d(self.joint[0](x), 2))
        return self.head(x.flatten(1))

    def _attend(self, f_first: torch.Tensor, f_second: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both maps [B,C,H,W] through the cross-view transformer, as maps again (residual)."""
        b, c, h, w = f_first.shape
        tokens = torch.cat([f_first.flatten(2).transpose(1, 2) + self.token_view[0],
                            f_second.flatten(2).transpose(1, 2) + self.token_view[1]], dim=1)
        tokens = self.cross_view(tokens + self.token_position.repeat(2, 1))
        maps = tokens.transpose(1, 2).reshape(b, c, 2, h, w)
        return f_first + maps[:, :, 0], f_second + maps[:, :, 1]


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


def correlation_volume(f_first: torch.Tensor, f_second: torch.Tensor) -> torch.Tensor:
    """[B, H·W, H, W]: channel m at position (y, x) is the cosine similarity of the first map's
    feature at (y, x) with the second map's feature at flat position m."""
    b, _, h, w = f_first.shape
    a = F.normalize(f_first.flatten(2), dim=1)
    c = F.normalize(f_second.flatten(2), dim=1)
    return torch.einsum("bcn,bcm->bmn", a, c).reshape(b, h * w, h, w)


@dataclass
class PairAzimuthEstimator(DepthReading):
    """A loaded pair-azimuth network, its cell size and bin count."""

    net: PairAzimuthNet
    cell: int
    config: dict

    @classmethod
    def from_folder(cls, folder: str | Path) -> "PairAzimuthEstimator":
        """Load ``config.json`` + ``model.safetensors``; :class:`ModelLoadError` naming the file."""
        def build(c: dict) -> PairAzimuthNet:    # configs from before the options: neither
            return PairAzimuthNet(int(c["width"]), int(c["bins"]), int(c["cell"]),
                                  bool(c.get("correlation", False)), int(c.get("attention", 0)),
                                  bool(c.get("fine_correlation", False)), bool(c.get("depth", False)))
        net, config = load_net(folder, build, ("width", "bins", "cell"))
        return cls(net, int(config["cell"]), config)

    def save(self, folder: str | Path) -> None:
        save_net(folder, self.net, self.config)

    @property
    def bins(self) -> int:
        return self.net.bins

    @torch.no_grad()
    def predict(self, images: np.ndarray, masks: np.ndarray, mirror: bool = True,
                depth: np.ndarray | None = None, depth_valid: np.ndarray | None = None) -> np.ndarray:
        """For N cells, an N×N×bins array: ``[i, j]`` the probabilities of the azimuth mapping view
        j's frame onto view i's (the diagonal is unused, zeros).

        ``mirror`` averages with the mirrored pair's answer (mirroring both images negates the
        azimuth, which the network was trained to know): a free second opinion. A depth network
        needs ``depth`` and ``depth_valid`` (``small_nets.relative_depth``); others ignore them."""
        if images.ndim != 4 or images.shape[1:] != (self.cell, self.cell, 3):
            raise ValueError(f"pair-azimuth network needs N x {self.cell} x {self.cell} x 3 cells, "
                             f"got {images.shape}")
        x = self._input(images, masks, depth, depth_valid, "pair-azimuth")
        n = len(images)
        out = np.zeros((n, n, self.bins))
        ii, jj = np.nonzero(~np.eye(n, dtype=bool))
        if len(ii):
            out[ii, jj] = pair_probabilities(self.net, x, torch.from_numpy(ii), torch.from_numpy(jj), mirror)
        return out



def pair_probabilities(net: PairAzimuthNet, x: torch.Tensor | PackedCells, first: torch.Tensor,
                       second: torch.Tensor, mirror: bool = True, batch: int = 512) -> np.ndarray:
    """Bin probabilities [P, bins] of the azimuth mapping view ``second[p]``'s frame onto view
    ``first[p]``'s, for views ``x`` [V,4,S,S] (each view encoded once); with ``mirror``, averaged
    with the mirrored pair's (bins reversed: k ↔ bins−1−k)."""
    def probs_of(views: torch.Tensor) -> torch.Tensor:
        f = net.features(views)
        return torch.cat([F.softmax(net.compare(f[first[i:i + batch]], f[second[i:i + batch]]), dim=1)
                          for i in range(0, len(first), batch)])
    x = as_input(x)
    with torch.no_grad():
        probs = probs_of(x)
        if mirror:
            probs = 0.5 * (probs + probs_of(x.flip(-1)).flip(1))
    return probs.numpy()


# ------------------------------------------------------------------------------------- training
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
    :func:`pair_probabilities`)."""
    probs = pair_probabilities(estimator.net, x, pairs[:, 0], pairs[:, 1], mirror)
    centre = (probs.argmax(1) + 0.5) * (360.0 / estimator.bins)
    return np.abs((centre - azimuths + 180.0) % 360.0 - 180.0)


def _error_summary(e: np.ndarray) -> tuple[dict, str]:
    """Median / within-30° / flipped share of azimuth errors: a history record and a log line."""
    median, acc30, flip = float(np.median(e)), float(np.mean(e < 30)), float(np.mean(e > 150))
    return ({"val_median_deg": median, "val_acc30": acc30, "val_flip": flip},
            f"validation median error {median:.1f}°, within 30° {acc30:.2f}, flipped (>150°) {flip:.2f}")


def train_pair_azimuth(data: list[str | Path], out: str | Path, val_data: list[str | Path] | None = None,
                       width: int = 32, bins: int = 36, steps: int = 3000, batch_size: int = 128,
                       lr: float = 5e-4, max_minutes: float | None = None, seed: int = 0,
                       val_every: int = 500, threads: int | None = None, colour: bool = True,
                       init: str | Path | None = None, correlation: bool = False,
                       attention: int = 0, fine_correlation: bool = False, depth: bool = False,
                       log=print) -> PairAzimuthEstimator:
    """Train on shards ``data`` (one-cycle lr over ``steps``; ``max_minutes`` stops early), log
    the validation error on ``val_data`` (held-out objects), save to ``out``. ``colour``: one
    random channel permutation and hue shift per pair (``small_nets.random_colour_mix``).
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
