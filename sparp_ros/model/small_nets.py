"""What the pipeline's small CNNs share: their input (a cell as the diffusion model sees it), their
conv stage, a weights folder of ``config.json`` + ``model.safetensors`` (never pickle), and their
training loop and command-line skeleton, and how their training views are read."""
from __future__ import annotations

import argparse
import glob
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from .config import ModelLoadError
from .unet import load_safetensors_checked, read_json_checked

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
DEPTH_NOISE_MAX = 0.02      # training: per-view depth noise sd up to this (cell widths)
DEPTH_DROPOUT_MAX = 0.1     # training: up to this fraction of the depth pixels lost (holes)


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
        return _input_from(rgb, mask)
    return _input_from(rgb, mask, torch.from_numpy(np.ascontiguousarray(depth, np.float32)),
                       torch.from_numpy(np.ascontiguousarray(depth_valid, bool)))


def _input_from(rgb_u8: torch.Tensor, mask: torch.Tensor, depth: torch.Tensor | None = None,
                depth_valid: torch.Tensor | None = None) -> torch.Tensor:
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


class PackedCells:
    """Training cells kept as they are stored (uint8 RGB, bool mask; relative depth as float16),
    turned into the network input of :func:`cells_to_input` when indexed (``packed[idx]`` =
    ``cells_to_input(images[idx], masks[idx], ...)``, bit for bit without depth). Why: the input
    in float32 is 5.3× larger — eight 64 px datasets (77 000 views) took 5 GB plus as much again
    while converting, and two trainings side by side ran out of memory; a batch converts in
    microseconds."""

    def __init__(self, images: np.ndarray, masks: np.ndarray, depth: np.ndarray | None = None,
                 depth_valid: np.ndarray | None = None) -> None:
        if images.ndim != 4 or images.shape[-1] != 3 or masks.shape != images.shape[:3]:
            raise ValueError(f"cells N×S×S×3 and masks N×S×S expected, "
                             f"got {images.shape}, {masks.shape}")
        if depth is not None and (depth.shape != masks.shape or depth_valid is None
                                  or depth_valid.shape != masks.shape):
            raise ValueError(f"depth and its validity must be N×S×S like the masks {masks.shape}")
        self.rgb = torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8))   # no copy when
        self.mask = torch.from_numpy(np.ascontiguousarray(masks, dtype=bool))       # already packed
        self.depth = None if depth is None else torch.from_numpy(np.ascontiguousarray(depth, np.float16))
        self.depth_valid = None if depth is None else torch.from_numpy(np.ascontiguousarray(depth_valid, bool))

    def __len__(self) -> int:
        return len(self.rgb)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        n, s, w, _ = self.rgb.shape
        return (n, 4 if self.depth is None else 4 + DEPTH_CHANNELS, s, w)

    def __getitem__(self, idx) -> torch.Tensor:
        rgb, mask = self.rgb[idx], self.mask[idx]
        depth = valid = None
        if self.depth is not None:
            depth, valid = self.depth[idx], self.depth_valid[idx]
        if rgb.ndim == 3:                         # one integer index: keep the batch axis
            rgb, mask = rgb[None], mask[None]
            if depth is not None:
                depth, valid = depth[None], valid[None]
        return _input_from(rgb, mask, depth, valid)


@dataclass
class DatasetViews:
    """Every view of every sample of some ``sparp-ros dataset`` folders, in folder, shard and sample
    order: cells [N,S,S,3] uint8, masks [N,S,S] bool, the requested per-view arrays [N,...], and
    the view count of each sample (views of one sample are contiguous and show one object); when
    asked for, each view's relative depth [N,S,S] float16 and where it is measured [N,S,S] bool
    (:func:`relative_depth`)."""

    images: np.ndarray
    masks: np.ndarray
    fields: dict[str, np.ndarray]
    num_views: np.ndarray
    depth: np.ndarray | None = None
    depth_valid: np.ndarray | None = None

    @property
    def cell(self) -> int:
        return int(self.images.shape[1])


def dataset_shards(folders: list[str | Path]) -> list[str]:
    """The shard files of ``folders`` in order; a folder without any is an error that says how to
    make one."""
    paths = []
    for folder in folders:
        shards = sorted(glob.glob(str(Path(folder) / "shard_*.npz")))
        if not shards:
            raise FileNotFoundError(f"no shard_*.npz in {folder} (make one with `sparp-ros dataset`)")
        paths += shards
    return paths


def _view_counts(shards: list[str]) -> list[np.ndarray]:
    counts = []
    for path in shards:
        with np.load(path) as d:
            counts.append(d["num_views"].astype(int))
    return counts


def sample_view_counts(folders: list[str | Path]) -> np.ndarray:
    """The view count of every sample of ``folders``, in :func:`load_dataset_views`' order."""
    counts = _view_counts(dataset_shards(folders))
    return np.concatenate(counts) if counts else np.zeros(0, int)


def load_dataset_views(folders: list[str | Path], fields: tuple[str, ...] = (),
                       with_depth: bool = False) -> DatasetViews:
    """Read every view of ``folders`` into arrays allocated once at their final size. Why: the
    small networks train on a few hundred thousand 64 px views (5 GB for 32 datasets); gathering
    them in lists and concatenating held twice that at the peak, and two trainings side by side
    were killed for memory while loading. ``with_depth``: each view's relative depth too, made
    from its NOCS target (``dataset.view_depth``) shard by shard (the NOCS are never all held)."""
    shards = dataset_shards(folders)
    counts = _view_counts(shards)        # a first pass reads only the view counts (npz is lazy)
    num_views = np.concatenate(counts) if counts else np.zeros(0, int)
    total = int(num_views.sum())
    images = masks = depth = depth_valid = None
    out: dict[str, np.ndarray] = {}
    depth_keys = ("nocs_ref", "T_camera_object", "diagonal", "K") if with_depth else ()
    start = 0
    for path, shard_counts in zip(shards, counts):
        with np.load(path) as d:         # each array read once (indexing d reloads it)
            arrays = {key: d[key] for key in {"images", "masks", *fields, *depth_keys}}
        if images is None:
            images = np.empty((total, *arrays["images"].shape[2:]), np.uint8)
            masks = np.empty((total, *arrays["masks"].shape[2:]), bool)
            out = {key: np.empty((total, *arrays[key].shape[2:]), arrays[key].dtype) for key in fields}
            if with_depth:
                depth = np.empty(masks.shape, np.float16)
                depth_valid = np.empty(masks.shape, bool)
        if with_depth:
            from .dataset import view_depth      # the renderer's module: imported only when used
            z = view_depth(arrays["nocs_ref"], arrays["T_camera_object"], arrays["diagonal"])
        for i, n in enumerate(shard_counts):
            images[start:start + n] = arrays["images"][i, :n]
            masks[start:start + n] = arrays["masks"][i, :n] > 0
            for key in fields:
                out[key][start:start + n] = arrays[key][i, :n]
            if with_depth:
                rel, valid = relative_depth(z[i, :n], masks[start:start + n], arrays["K"][i, :n, 0, 0])
                depth[start:start + n] = rel
                depth_valid[start:start + n] = valid
            start += n
    if images is None:
        raise FileNotFoundError(f"no views in {[str(f) for f in folders]}")
    return DatasetViews(images, masks, out, num_views, depth, depth_valid)


def as_input(x: "torch.Tensor | PackedCells") -> torch.Tensor:
    """The float network input of ``x`` (a :class:`PackedCells` or already a tensor)."""
    return x[:] if isinstance(x, PackedCells) else x


def augment_brightness(x: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """Scale the RGB of inputs from ``cells_to_input`` by ``gain`` [N,1,1,1] (lighting changes),
    background kept at 0."""
    return _with_object_rgb(x, x[:, :3] * gain)


def _with_object_rgb(x: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
    """``x`` with its RGB replaced by ``rgb`` (clamped to [-1, 1]) on the object (channel 3, the
    mask; channels after it, such as depth, are kept as they are), 0 elsewhere."""
    out = x.clone()
    out[:, :3] = torch.where(x[:, 3:4] > 0, rgb.clamp(-1, 1), torch.zeros_like(rgb))
    return out


def random_colour_mix(n: int, gen: torch.Generator, hue: bool = True) -> torch.Tensor:
    """[n,3,3] colour transforms: a random permutation of the RGB channels, then (``hue``) a
    rotation by a random angle about the grey axis (a hue shift that keeps brightness).

    Why: the pair-azimuth network reads the azimuth between two views of the *same* object, and
    on the 69 training objects it learns to know them: 18.4° on new views of training objects
    against 29.3° on unseen ones (``runs/pair64``, ``benchmarks/experiments/exp_pair_gap.py``).
    The azimuth does not depend on which colours the object has, only on how they are laid out,
    so applying one transform to both views of a pair keeps the label and removes the shortcut."""
    perm = torch.stack([torch.randperm(3, generator=gen) for _ in range(n)])
    mix = torch.eye(3)[perm]                                     # rows permuted: out_c = in_perm[c]
    if hue:
        angle = 2.0 * np.pi * torch.rand(n, generator=gen)
        k = torch.full((3,), 1.0 / np.sqrt(3.0))
        K = torch.tensor([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
        rot = (torch.eye(3) + torch.sin(angle)[:, None, None] * K
               + (1.0 - torch.cos(angle))[:, None, None] * (K @ K))  # Rodrigues about (1,1,1)/√3
        mix = rot @ mix
    return mix


def augment_colour(x: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
    """Apply colour transforms ``mix`` [N,3,3] (:func:`random_colour_mix`) to the RGB of inputs
    from ``cells_to_input`` (grey = 0 is the transforms' fixed point), background kept at 0."""
    return _with_object_rgb(x, torch.einsum("nij,njhw->nihw", mix, x[:, :3]))


def augment_depth(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Depth as a depth camera gives it, on inputs with depth channels (4: relative depth, 5:
    validity ±1): per view, Gaussian noise of a random sd up to ``DEPTH_NOISE_MAX`` and a random
    fraction up to ``DEPTH_DROPOUT_MAX`` of the pixels lost. Why: the targets' depth is exact, a
    sensor's is not, and a network that trusts every pixel would read its noise as slant."""
    n = len(x)
    valid = x[:, 5:6] > 0
    sd = DEPTH_NOISE_MAX * torch.rand(n, 1, 1, 1, generator=gen)
    noisy = x[:, 4:5] + sd * torch.randn(x[:, 4:5].shape, generator=gen)
    lost = torch.rand(x[:, 4:5].shape, generator=gen) < DEPTH_DROPOUT_MAX * torch.rand(n, 1, 1, 1, generator=gen)
    keep = valid & ~lost
    out = x.clone()
    out[:, 4:5] = torch.where(keep, noisy, torch.zeros_like(noisy))
    out[:, 5:6] = keep.float() * 2.0 - 1.0
    return out


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
    state = load_safetensors_checked(folder / WEIGHTS_FILE)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(f"{folder / WEIGHTS_FILE} does not fit {folder / CONFIG_FILE}: {exc}") from exc
    return net.eval(), config


# ------------------------------------------------------------------------------------- training
def train_loop(net: nn.Module, batch_loss: Callable[[torch.Generator], torch.Tensor], steps: int,
               lr: float, seed: int, max_minutes: float | None = None,
               validate: Callable[[], tuple[dict, str]] | None = None, val_every: int = 500,
               log: Callable[[str], None] = print) -> tuple[int, list[dict], float]:
    """The small networks' optimisation: AdamW with a one-cycle learning rate over ``steps``;
    ``batch_loss(generator)`` draws a batch (from the seeded generator, so a run repeats) and
    returns its loss. ``max_minutes`` stops early (the schedule is then not finished: size
    ``steps`` to the time). Every ``val_every`` steps and at the last, ``validate()`` runs with
    the network in eval mode and returns (a record for the history, a line for the log).

    Returns (steps done, history, minutes)."""
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    history: list[dict] = []
    t0 = time.time()
    step = 0
    net.train()
    while step < steps:
        if max_minutes is not None and time.time() - t0 > 60.0 * max_minutes:
            log(f"stopping at step {step}: --max-minutes {max_minutes} reached")
            break
        loss = batch_loss(gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        if validate is not None and (step % val_every == 0 or step == steps):
            net.eval()
            record, message = validate()
            net.train()
            history.append({"step": step, "loss": loss.item(), **record})
            log(f"step {step}/{steps} ({time.time() - t0:.0f} s): loss {loss.item():.4f}, {message}")
    net.eval()
    return step, history, round((time.time() - t0) / 60.0, 2)


def training_parser(prog: str, description: str, steps: int, lr: float, lr_help: str = ""
                    ) -> argparse.ArgumentParser:
    """The options every small network's trainer takes (its own ones are added by the caller)."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--data", nargs="+", required=True, help="dataset folders (training objects)")
    p.add_argument("--val-data", nargs="*", help="dataset folders of held-out objects")
    p.add_argument("--out", required=True, help="weights folder to write")
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=lr, help="peak of the one-cycle schedule" + lr_help)
    p.add_argument("--max-minutes", type=float)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-every", type=int, default=500, help="steps between validation passes")
    p.add_argument("--threads", type=int)
    return p


def run_training(parser: argparse.ArgumentParser, args: argparse.Namespace, train: Callable[[], object],
                 positive: tuple[str, ...] = ("steps", "batch_size", "val_every")) -> int:
    """Check the positive options, run ``train``; a missing dataset or a starting network that
    cannot be used (:class:`ModelLoadError`) is exit code 2 with its reason."""
    if min(getattr(args, name) for name in positive) < 1:
        parser.error(", ".join("--" + n.replace("_", "-") for n in positive) + " must be positive")
    try:
        train()
    except (FileNotFoundError, ModelLoadError) as exc:
        print(f"error: {exc}")
        return 2
    return 0
