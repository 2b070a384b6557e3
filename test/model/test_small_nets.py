"""What the small networks share: the colour augmentation of their training, and the packed
training cells that turn into exactly the network input when indexed."""
from __future__ import annotations

import numpy as np
import torch

import pytest

from sparp_ros.model.small_nets import (PackedCells, as_input, augment_colour, cells_to_input,
                                        random_colour_mix)


def test_packed_cells_index_to_the_network_input_bit_for_bit():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (7, 16, 16, 3), dtype=np.uint8)
    masks = rng.random((7, 16, 16)) < 0.5
    packed = PackedCells(images, masks)
    assert len(packed) == 7 and packed.shape == (7, 4, 16, 16)
    assert packed.rgb.dtype == torch.uint8 and packed.mask.dtype == torch.bool    # stored small
    idx = torch.tensor([4, 0, 4, 6])
    assert torch.equal(packed[idx], cells_to_input(images[idx.numpy()], masks[idx.numpy()]))
    assert torch.equal(packed[2], cells_to_input(images[2:3], masks[2:3]))
    assert torch.equal(as_input(packed), cells_to_input(images, masks))
    x = cells_to_input(images, masks)
    assert as_input(x) is x
    with pytest.raises(ValueError, match="masks"):
        PackedCells(images, masks[:, :8])


def test_colour_mixes_are_seeded_hue_rotations_of_channel_permutations():
    mix = random_colour_mix(64, torch.Generator().manual_seed(7))
    again = random_colour_mix(64, torch.Generator().manual_seed(7))
    assert mix.shape == (64, 3, 3) and torch.equal(mix, again)
    eye = torch.eye(3).expand(64, 3, 3)
    assert torch.allclose(mix @ mix.transpose(1, 2), eye, atol=1e-5)        # orthogonal: no gain
    assert torch.allclose(mix @ torch.ones(3), torch.ones(64, 3), atol=1e-5)  # grey axis kept
    assert not torch.allclose(mix, eye, atol=1e-2)                           # it does change colours
    plain = random_colour_mix(64, torch.Generator().manual_seed(7), hue=False)
    assert set(plain.unique().tolist()) == {0.0, 1.0}                        # permutations only


def test_augment_colour_recolours_the_object_and_leaves_grey_and_background():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    images[1] = 200                                                          # a grey object
    masks = np.zeros((2, 8, 8), bool)
    masks[:, 2:6, 2:6] = True
    x = cells_to_input(images, masks)
    mix = random_colour_mix(2, torch.Generator().manual_seed(1))
    out = augment_colour(x, mix)
    assert out.shape == x.shape and torch.equal(out[:, 3], x[:, 3])          # mask untouched
    background = x[:, 3] < 0
    assert torch.all(out[:, :3].permute(1, 0, 2, 3)[:, background] == 0)
    assert torch.allclose(out[1, :3], x[1, :3], atol=1e-5)                   # grey stays grey
    fg = x[0, 3] > 0
    assert not torch.allclose(out[0, :3, fg], x[0, :3, fg], atol=1e-2)
    expected = (mix[0] @ x[0, :3, fg]).clamp(-1, 1)
    assert torch.allclose(out[0, :3, fg], expected, atol=1e-5)
    assert out.abs().max() <= 1.0
