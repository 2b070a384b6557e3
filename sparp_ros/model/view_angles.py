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

``sparp-ros train-angles --data DATA... --out DIR`` trains it on ``sparp-ros dataset`` shards
(``sparp_ros.training.view_angles``): the labels come from each view's ``T_camera_object``
(gravity-aligned frame), horizontal flips (roll negated) and brightness changes augment the crops.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .small_nets import (CONFIG_FILE, DEPTH_CHANNELS, WEIGHTS_FILE, DepthReading, cells_to_input,
                         conv_stage, input_stem, load_net, save_net)

__all__ = ["ANGLE_UNIT_DEG", "CONFIG_FILE", "WEIGHTS_FILE", "ViewAngleEstimator", "ViewAngleNet",
           "cells_to_input", "others_mean"]
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
