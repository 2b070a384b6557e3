"""The pair-azimuth network: output layout, safetensors round trip, bad weights, correlation and
attention options (its training: test/training/test_train_pair_azimuth.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sparp_ros.model.config import ModelLoadError
from sparp_ros.model.pair_azimuth import PairAzimuthEstimator, PairAzimuthNet, correlation_volume
from sparp_ros.model.small_nets import CONFIG_FILE, WEIGHTS_FILE
from tiny_nets import pair_estimator as _estimator, random_cells as _cells  # noqa: E402




def test_predict_gives_a_distribution_per_ordered_pair():
    est = _estimator()
    out = est.predict(*_cells(4))
    assert out.shape == (4, 4, 12)
    off = ~np.eye(4, dtype=bool)
    assert np.allclose(out[off].sum(-1), 1.0) and np.all(out[off] > 0)
    assert np.all(out[np.eye(4, dtype=bool)] == 0)
    assert est.predict(*_cells(1)).shape == (1, 1, 12)
    with pytest.raises(ValueError, match="32 x 32"):
        est.predict(*_cells(2, cell=16))


def test_mirror_averaging_makes_the_answer_mirror_consistent():
    """Mirroring both images negates the azimuth; with ``mirror`` the prediction obeys that
    exactly (bins reversed), without it an untrained network does not."""
    est = _estimator(seed=3)
    images, masks = _cells(3, seed=4)
    flipped = images[:, :, ::-1].copy(), masks[:, :, ::-1].copy()
    off = ~np.eye(3, dtype=bool)
    a, b = est.predict(images, masks), est.predict(*flipped)
    assert np.allclose(a[off], b[off][:, ::-1], atol=1e-6)
    a, b = est.predict(images, masks, mirror=False), est.predict(*flipped, mirror=False)
    assert not np.allclose(a[off], b[off][:, ::-1], atol=1e-3)


def test_save_load_round_trip_and_bad_weights(tmp_path):
    est = _estimator(seed=5)
    est.save(tmp_path / "pa")
    back = PairAzimuthEstimator.from_folder(tmp_path / "pa")
    cells = _cells(3)
    assert np.array_equal(est.predict(*cells), back.predict(*cells))
    (tmp_path / "pa" / WEIGHTS_FILE).write_bytes(b"\x00" * 16)
    with pytest.raises(ModelLoadError, match="corrupt or unreadable"):
        PairAzimuthEstimator.from_folder(tmp_path / "pa")
    est.save(tmp_path / "pa")
    (tmp_path / "pa" / CONFIG_FILE).write_text('{"width": 8, "bins": 36, "cell": 32}')
    with pytest.raises(ModelLoadError, match="do not fit"):
        PairAzimuthEstimator.from_folder(tmp_path / "pa")


def test_larger_cells_fold_into_channels_and_round_trip(tmp_path):
    """A 64 px network (pixel-unshuffle stem) answers per ordered pair, loads back bit-exact from
    its folder, and cells that are not 32 px or a multiple of it are refused at construction."""
    est = _estimator(cell=64, seed=5)
    images, masks = _cells(3, cell=64)
    out = est.predict(images, masks)
    assert out.shape == (3, 3, 12) and np.allclose(out[~np.eye(3, dtype=bool)].sum(-1), 1.0)
    est.save(tmp_path / "pa64")
    back = PairAzimuthEstimator.from_folder(tmp_path / "pa64")
    assert back.cell == 64 and np.array_equal(back.predict(images, masks), out)
    with pytest.raises(ValueError, match="32 x 32|64 x 64"):
        est.predict(*_cells(2, cell=32))
    with pytest.raises(ValueError, match="multiple"):
        PairAzimuthNet(8, 12, 48)


def test_correlation_volume_finds_where_each_feature_went():
    """Channel m at (y, x) is the cosine similarity of first[:, :, y, x] with the second map's flat
    position m: for a second map that is the first shifted, the peak channel names the shifted
    position, with similarity 1."""
    torch.manual_seed(0)
    first = torch.randn(2, 16, 8, 8)
    second = torch.roll(first, shifts=(1, 2), dims=(2, 3))
    corr = correlation_volume(first, second)
    assert corr.shape == (2, 64, 8, 8)
    ys, xs = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    expected = ((ys + 1) % 8) * 8 + (xs + 2) % 8
    assert np.array_equal(corr.argmax(1)[0].numpy(), expected)
    assert torch.allclose(corr.amax(1), torch.ones(2, 8, 8), atol=1e-5)


def test_a_correlation_network_round_trips_and_old_configs_load_without_it(tmp_path):
    """The correlation option is in the config and comes back from it; a config written before the
    option existed loads as a network without it (``init`` from a network of the other kind:
    test/training/test_train_pair_azimuth.py)."""
    torch.manual_seed(1)
    est = PairAzimuthEstimator(PairAzimuthNet(8, 12, 64, correlation=True).eval(), 64,
                               {"width": 8, "bins": 12, "cell": 64, "correlation": True})
    est.save(tmp_path / "corr")
    back = PairAzimuthEstimator.from_folder(tmp_path / "corr")
    cells = _cells(3, cell=64)
    assert back.net.correlation and np.array_equal(back.predict(*cells), est.predict(*cells))
    _estimator(seed=2).save(tmp_path / "plain")           # config without "correlation"
    assert not PairAzimuthEstimator.from_folder(tmp_path / "plain").net.correlation


def test_cross_view_attention_mixes_the_views_and_round_trips(tmp_path):
    """With attention the first view's features depend on the second view (without it they do
    not); the option comes back from the config, old configs load without it, and bad values are
    refused."""
    torch.manual_seed(3)
    net = PairAzimuthNet(8, 12, 64, correlation=True, attention=2).eval()
    f = torch.randn(3, 16, 8, 8)
    a1, _ = net._attend(f[:1], f[1:2])
    a2, _ = net._attend(f[:1], f[2:3])
    assert a1.shape == (1, 16, 8, 8) and not torch.allclose(a1, a2)
    est = PairAzimuthEstimator(net, 64, {"width": 8, "bins": 12, "cell": 64, "correlation": True,
                                         "attention": 2})
    est.save(tmp_path / "att")
    back = PairAzimuthEstimator.from_folder(tmp_path / "att")
    cells = _cells(3, cell=64)
    probs = back.predict(*cells)
    assert back.net.attention == 2 and np.array_equal(probs, est.predict(*cells))
    assert probs.shape == (3, 3, 12) and np.allclose(probs[~np.eye(3, dtype=bool)].sum(-1), 1.0)
    _estimator(seed=2).save(tmp_path / "plain")           # config without "attention"
    assert PairAzimuthEstimator.from_folder(tmp_path / "plain").net.attention == 0
    with pytest.raises(ValueError, match="even width"):
        PairAzimuthNet(7, 12, 32, attention=1)
