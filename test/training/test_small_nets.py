"""What the small networks share: the colour augmentation of their training, the packed
training cells that turn into exactly the network input when indexed, and the reader of their
training views."""
from __future__ import annotations

import numpy as np
import torch

import pytest

from sparp_ros.model.small_nets import cells_to_input
from sparp_ros.training.augment import augment_brightness, augment_colour, random_colour_mix
from sparp_ros.training.small_nets import PackedCells, as_input, load_dataset_views


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


def test_cells_with_depth_pack_and_augment_with_the_depth_left_alone():
    """Depth channels come after RGB and mask; the colour and light augmentations change the RGB
    on the object (the mask channel says where) and never read or change the depth."""
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    masks = np.zeros((3, 8, 8), bool)
    masks[:, 1:7, 1:7] = True
    depth = rng.uniform(-1, 1, (3, 8, 8)).astype(np.float32)
    valid = masks & (rng.random((3, 8, 8)) < 0.8)
    x = cells_to_input(images, masks, depth, valid)
    assert x.shape == (3, 6, 8, 8)
    assert torch.equal(x[:, 5] > 0, torch.from_numpy(valid))
    assert torch.allclose(x[:, 4], torch.from_numpy(np.where(valid, depth, 0)))
    packed = PackedCells(images, masks, depth, valid)
    assert packed.shape == (3, 6, 8, 8)
    assert torch.allclose(packed[torch.arange(3)], x, atol=1e-3)     # depth stored as float16
    for out in (augment_brightness(x, torch.full((3, 1, 1, 1), 1.3)),
                augment_colour(x, random_colour_mix(3, torch.Generator().manual_seed(0)))):
        assert torch.equal(out[:, 3:], x[:, 3:])
        # every object pixel's RGB is changed the same way, whatever the sign of its depth
        fg = torch.from_numpy(masks)[:, None].expand(-1, 3, -1, -1)
        assert torch.all(out[:, :3][~fg] == 0) and not torch.allclose(out[:, :3][fg], x[:, :3][fg])
    bright = augment_brightness(x, torch.full((3, 1, 1, 1), 0.5))
    assert torch.allclose(bright[:, :3], 0.5 * x[:, :3])


def _write_shard(path, rng, samples: int, max_views: int = 6, S: int = 8):
    num_views = rng.integers(1, max_views + 1, samples)
    images = rng.integers(0, 256, (samples, max_views, S, S, 3), dtype=np.uint8)
    masks = (rng.random((samples, max_views, S, S)) < 0.5).astype(np.uint8) * 255
    azimuth = rng.uniform(-3, 3, (samples, max_views)).astype(np.float32)
    np.savez(path, images=images, masks=masks, num_views=num_views, azimuth_self=azimuth)
    return [(images[i, :n], masks[i, :n] > 0, azimuth[i, :n]) for i, n in enumerate(num_views)]


def test_dataset_views_are_every_sample_s_views_in_order(tmp_path):
    rng = np.random.default_rng(5)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    expected = (_write_shard(tmp_path / "a" / "shard_00000.npz", rng, 4)
                + _write_shard(tmp_path / "a" / "shard_00001.npz", rng, 3)
                + _write_shard(tmp_path / "b" / "shard_00000.npz", rng, 5))
    views = load_dataset_views([tmp_path / "a", tmp_path / "b"], ("azimuth_self",))
    assert views.cell == 8 and views.images.dtype == np.uint8 and views.masks.dtype == bool
    assert views.num_views.tolist() == [len(e[0]) for e in expected]
    assert np.array_equal(views.images, np.concatenate([e[0] for e in expected]))
    assert np.array_equal(views.masks, np.concatenate([e[1] for e in expected]))
    assert np.array_equal(views.fields["azimuth_self"], np.concatenate([e[2] for e in expected]))
    packed = PackedCells(views.images, views.masks)          # packing the loaded views copies nothing
    assert np.shares_memory(packed.rgb.numpy(), views.images)
    assert np.shares_memory(packed.mask.numpy(), views.masks)


def test_dataset_views_name_a_folder_without_shards(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty.*sparp-ros dataset"):
        load_dataset_views([tmp_path / "empty"])
