"""The small networks' training augmentations, on network inputs from
``model.small_nets.cells_to_input`` (RGB in [-1, 1] with the background 0, the mask as ±1, then
the relative depth and its validity for RGB-D networks): lighting, colour and depth-sensor changes
that keep the labels, so a network learns the geometry and not the 69 training objects'
appearance or the renderer's exact depth."""
from __future__ import annotations

import numpy as np
import torch

DEPTH_NOISE_MAX = 0.02      # training: per-view depth noise sd up to this (cell widths)
DEPTH_DROPOUT_MAX = 0.1     # training: up to this fraction of the depth pixels lost (holes)


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
