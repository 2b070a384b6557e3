"""What the small networks' training shares: their training views read from ``sparp-ros dataset``
shards and kept packed, their optimisation loop, and their command-line skeleton. The networks
themselves, their input and their weights folders are the runtime's (``model.small_nets``)."""
from __future__ import annotations

import argparse
import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from ..model.config import ModelLoadError
from ..model.small_nets import DEPTH_CHANNELS, input_from_tensors, relative_depth


class PackedCells:
    """Training cells kept as they are stored (uint8 RGB, bool mask; relative depth as float16),
    turned into the network input of ``model.small_nets.cells_to_input`` when indexed (``packed[idx]`` =
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
        return input_from_tensors(rgb, mask, depth, valid)


@dataclass
class DatasetViews:
    """Every view of every sample of some ``sparp-ros dataset`` folders, in folder, shard and sample
    order: cells [N,S,S,3] uint8, masks [N,S,S] bool, the requested per-view arrays [N,...], and
    the view count of each sample (views of one sample are contiguous and show one object); when
    asked for, each view's relative depth [N,S,S] float16 and where it is measured [N,S,S] bool
    (``model.small_nets.relative_depth``)."""

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


def train_loop(net: nn.Module, batch_loss: Callable[[torch.Generator], torch.Tensor], steps: int,
               lr: float, seed: int, max_minutes: float | None = None,
               validate: Callable[[], tuple[dict, str]] | None = None, val_every: int = 500,
               log: Callable[[str], None] = print) -> tuple[int, list[dict], float]:
    """The small networks' optimisation, on the one loop (``training.loop.run_loop``): AdamW with
    a one-cycle learning rate over ``steps``; ``batch_loss(generator)`` draws a batch (from the
    seeded generator, so a run repeats) and returns its loss. ``max_minutes`` stops early (the
    schedule is then not finished: size ``steps`` to the time). Every ``val_every`` steps and at
    the last, ``validate()`` runs with the network in eval mode and returns (a record for the
    history, a line for the log).

    Returns (steps done, history, minutes)."""
    from .loop import LoopSpec, run_loop

    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)

    def lr_at(step: int) -> float:
        """The one-cycle rate of ``step``: the torch scheduler moved on once per step done."""
        if step > 0:
            sched.step()
        return opt.param_groups[0]["lr"]

    state = run_loop(net, opt, lambda step: batch_loss(gen), LoopSpec(
        steps=steps, max_minutes=max_minutes, val_every=val_every), lr_at=lr_at,
        validate=validate, log=log)
    return state.step, state.history, state.minutes


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
