import numpy as np
import torch

from sparp_ros.model.tiling import tile, untile


def test_tile_round_trip_numpy_and_torch():
    cells = np.random.default_rng(0).integers(0, 255, (4, 8, 8, 3)).astype(np.uint8)
    t = tile(cells)
    assert t.shape == (24, 16, 3)
    back = untile(t)
    assert all(np.array_equal(back[k], cells[k]) for k in range(4))
    assert not back[4].any() and not back[5].any()          # missing views are blank
    tt = tile(torch.from_numpy(cells).permute(0, 3, 1, 2), channels_last=False)
    assert tt.shape == (3, 24, 16)
    assert torch.equal(tt.permute(1, 2, 0), torch.from_numpy(t))
    assert torch.equal(untile(tt, channels_last=False)[3], torch.from_numpy(cells[3]).permute(2, 0, 1))
