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

``sparp-ros train-pair-azimuth --data DATA... --out DIR`` trains it on ``sparp-ros dataset`` shards
(``sparp_ros.training.pair_azimuth``): every ordered pair of views of a sample, labels from
``azimuth_self``; mirroring both images negates the label, brightness changes model lighting.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .small_nets import (BASE_CELL, DEPTH_CHANNELS, DepthReading, conv_stage, input_stem, load_net,
                         save_net)

__all__ = ["PairAzimuthEstimator", "PairAzimuthNet", "correlation_volume", "pair_probabilities"]


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


def pair_probabilities(net: PairAzimuthNet, x: torch.Tensor, first: torch.Tensor,
                       second: torch.Tensor, mirror: bool = True, batch: int = 512) -> np.ndarray:
    """Bin probabilities [P, bins] of the azimuth mapping view ``second[p]``'s frame onto view
    ``first[p]``'s, for views ``x`` [V,4,S,S] (each view encoded once); with ``mirror``, averaged
    with the mirrored pair's (bins reversed: k ↔ bins−1−k)."""
    def probs_of(views: torch.Tensor) -> torch.Tensor:
        f = net.features(views)
        return torch.cat([F.softmax(net.compare(f[first[i:i + batch]], f[second[i:i + batch]]), dim=1)
                          for i in range(0, len(first), batch)])
    with torch.no_grad():
        probs = probs_of(x)
        if mirror:
            probs = 0.5 * (probs + probs_of(x.flip(-1)).flip(1))
    return probs.numpy()
