"""What the pipeline's small CNNs share at inference: their input (a cell as the diffusion model
sees it, with the view's relative depth for RGB-D networks), their conv stage and input stem, and a
weights folder of ``config.json`` + ``model.safetensors`` (never pickle).

Their training (the loop, the augmentations, the packed training cells, the reading of dataset
shards and the command-line skeleton) is in ``sparp_ros.training.small_nets``: the runtime imports
no training code."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from .config import ModelLoadError
from .unet import load_weights_into, read_json_checked

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def conv_stage(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 convolutions with GroupNorm and SiLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(8, c_out), nn.SiLU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(8, c_out), nn.SiLU())


BASE_CELL = 32              # the small networks' stages are sized for 32 px after the stem


def input_stem(cell: int, channels: int = 4) -> tuple[nn.Module, int]:
    """(stem, channels after it) for cells of side ``cell``: cells larger than 32 px are folded
    into channels (pixel unshuffle by ``cell // 32``), so a 64 px cell costs the stages what a
    32 px one does while its first convolution still sees every pixel. Why: the frames' crops
    are 250–400 px, and the 32 px cells of the diffusion model keep too little of the texture
    and outline that the camera's elevation and the azimuth between views are read from."""
    if cell <= BASE_CELL:
        return nn.Identity(), channels
    if cell % BASE_CELL:
        raise ValueError(f"small networks take cells of at most {BASE_CELL} px or a multiple of it, got {cell}")
    f = cell // BASE_CELL
    return nn.PixelUnshuffle(f), channels * f * f


DEPTH_CHANNELS = 2          # relative depth, and where it is measured (±1)
RELATIVE_DEPTH_CLIP = 2.0   # cell widths: farther from the object's median depth is not the object


def relative_depth(depth: np.ndarray, masks: np.ndarray, focal_px: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Metric depth cells (N×S×S, metres, 0 = none) → (depth relative to each cell's median on
    the object, in cell widths at that distance, N×S×S float32; where it is measured, N×S×S
    bool). ``focal_px`` [N]: each cell camera's focal length in cell pixels.

    Why this unit: (z − z_med)·f / (S·z_med) is the depth in the unit of the cell's lateral
    extent, so an object's depth map does not change with its size or distance, as its image does
    not: a network learns shape, not the metric scale of the 69 training scans."""
    depth = np.asarray(depth, np.float32)
    valid = np.asarray(masks, bool) & np.isfinite(depth) & (depth > 0)
    rel = np.zeros(depth.shape, np.float32)
    size = depth.shape[-1]
    for k in range(len(depth)):
        if not valid[k].any():
            continue
        z_med = float(np.median(depth[k][valid[k]]))
        unit = size * z_med / float(focal_px[k])
        rel[k][valid[k]] = np.clip((depth[k][valid[k]] - z_med) / unit,
                                   -RELATIVE_DEPTH_CLIP, RELATIVE_DEPTH_CLIP)
    return rel, valid


def cells_to_input(images: np.ndarray, masks: np.ndarray, depth: np.ndarray | None = None,
                   depth_valid: np.ndarray | None = None) -> torch.Tensor:
    """Cells (N×S×S×3 uint8, N×S×S bool/0-1) → the network input [N, 4, S, S]: RGB in [-1, 1]
    with the background 0 (grey, as the denoiser's condition), the mask as ±1. With ``depth``
    (:func:`relative_depth`'s two arrays): [N, 6, S, S], the relative depth (0 where not
    measured) and where it is measured (±1) after them."""
    rgb = torch.from_numpy(np.ascontiguousarray(images))
    mask = torch.from_numpy(np.ascontiguousarray(masks).astype(np.float32))
    if depth is None:
        return input_from_tensors(rgb, mask)
    return input_from_tensors(rgb, mask, torch.from_numpy(np.ascontiguousarray(depth, np.float32)),
                       torch.from_numpy(np.ascontiguousarray(depth_valid, bool)))


def input_from_tensors(rgb_u8: torch.Tensor, mask: torch.Tensor, depth: torch.Tensor | None = None,
                depth_valid: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`cells_to_input` on tensors (uint8 RGB [N,S,S,3], mask [N,S,S]; depth and its validity
    [N,S,S]): the one place the network input is made, also from packed training cells."""
    rgb = rgb_u8.float().permute(0, 3, 1, 2) / 127.5 - 1.0
    m = mask.float()[:, None]
    rgb = torch.where(m > 0.5, rgb, torch.zeros_like(rgb))
    parts = [rgb, m * 2.0 - 1.0]
    if depth is not None:
        v = depth_valid.float()[:, None]
        parts += [depth.float()[:, None] * v, v * 2.0 - 1.0]
    return torch.cat(parts, dim=1)


class DepthReading:
    """What the small networks' estimators share about depth: whether the loaded network reads it
    (its ``depth`` option), its input with or without it (a clear error when a depth network is
    given none), and prediction from metric depth. The estimator has ``net`` and a ``predict``
    taking ``depth`` and ``depth_valid`` (:func:`relative_depth`'s arrays) by keyword."""

    net: nn.Module

    @property
    def uses_depth(self) -> bool:
        return bool(getattr(self.net, "depth", False))

    def _input(self, images: np.ndarray, masks: np.ndarray, depth: np.ndarray | None,
               depth_valid: np.ndarray | None, what: str) -> torch.Tensor:
        """:func:`cells_to_input`, with the depth channels when the network reads them (others
        ignore a given depth)."""
        if not self.uses_depth:
            return cells_to_input(images, masks)
        if depth is None or depth_valid is None:
            raise ValueError(f"this {what} network reads depth: give depth and depth_valid")
        return cells_to_input(images, masks, depth, depth_valid)

    def predict_with_depth(self, images: np.ndarray, masks: np.ndarray, depth_m: np.ndarray,
                           focal_px: np.ndarray, mirror: bool = True) -> np.ndarray:
        """``predict`` of a depth network from metric depth cells (N×S×S metres, 0 = none) and
        each cell camera's focal length in cell pixels [N]."""
        rel, valid = relative_depth(depth_m, masks, focal_px)
        return self.predict(images, masks, mirror, depth=rel, depth_valid=valid)


def save_net(folder: str | Path, net: nn.Module, config: dict) -> None:
    from safetensors.torch import save_file
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
              str(folder / WEIGHTS_FILE))
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n")


def load_net(folder: str | Path, build: Callable[[dict], nn.Module], required: tuple[str, ...]
             ) -> tuple[nn.Module, dict]:
    """(network in eval mode, config) from a folder; :class:`ModelLoadError` naming the file on any
    problem (missing, corrupt, pickle, a config without the integer keys ``required``, weights
    that do not fit the config)."""
    folder = Path(folder)
    config = read_json_checked(folder / CONFIG_FILE)
    try:
        for key in required:
            int(config[key])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"{folder / CONFIG_FILE}: needs integer {', '.join(repr(k) for k in required)} "
                             f"({exc!r})") from exc
    try:
        net = build(config)
    except ValueError as exc:           # e.g. a cell size the networks cannot take
        raise ModelLoadError(f"{folder / CONFIG_FILE}: {exc}") from exc
    return load_weights_into(net, folder / WEIGHTS_FILE, folder / CONFIG_FILE), config
