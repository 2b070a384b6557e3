"""The view-angle network: shapes, safetensors round trip, refusal of bad weights, mirror and
context reading (its training: test/training/test_train_view_angles.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sparp_ros.model.config import ModelLoadError
from sparp_ros.model.view_angles import (CONFIG_FILE, WEIGHTS_FILE, ViewAngleEstimator, ViewAngleNet,
                                         others_mean)


def _estimator(width=8, cell=32, seed=0) -> ViewAngleEstimator:
    torch.manual_seed(seed)
    return ViewAngleEstimator(ViewAngleNet(width).eval(), cell, {"width": width, "cell": cell})


def _cells(n, cell=32, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, cell, cell, 3), dtype=np.uint8),
            rng.random((n, cell, cell)) > 0.3)


def test_predict_gives_degrees_per_view_and_checks_the_cell_size():
    est = _estimator()
    images, masks = _cells(5)
    out = est.predict(images, masks)
    assert out.shape == (5, 2) and out.dtype == np.float64 and np.all(np.isfinite(out))
    with pytest.raises(ValueError, match="32 x 32"):
        est.predict(*_cells(2, cell=16))


def test_save_load_round_trip_is_bit_exact(tmp_path):
    est = _estimator(seed=4)
    est.save(tmp_path / "va")
    assert sorted(p.name for p in (tmp_path / "va").iterdir()) == sorted([CONFIG_FILE, WEIGHTS_FILE])
    back = ViewAngleEstimator.from_folder(tmp_path / "va")
    for k, v in est.net.state_dict().items():
        assert torch.equal(v, back.net.state_dict()[k]), k
    images, masks = _cells(3)
    assert np.array_equal(est.predict(images, masks), back.predict(images, masks))


def test_bad_weights_are_refused_with_the_file_named(tmp_path):
    folder = tmp_path / "va"
    _estimator().save(folder)
    (folder / WEIGHTS_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match="corrupt or unreadable safetensors"):
        ViewAngleEstimator.from_folder(folder)
    (folder / WEIGHTS_FILE).unlink()
    (folder / "model.pt").write_bytes(b"pickle")
    with pytest.raises(ModelLoadError, match="pickle"):
        ViewAngleEstimator.from_folder(folder)
    _estimator(width=8).save(folder)
    (folder / CONFIG_FILE).write_text(json.dumps({"width": 16, "cell": 32}))
    with pytest.raises(ModelLoadError, match="do not fit"):
        ViewAngleEstimator.from_folder(folder)
    (folder / CONFIG_FILE).write_text(json.dumps({"cell": 32}))
    with pytest.raises(ModelLoadError, match="width"):
        ViewAngleEstimator.from_folder(folder)
    (folder / CONFIG_FILE).write_text(json.dumps({"width": 8, "cell": 48}))
    with pytest.raises(ModelLoadError, match="multiple of it, got 48"):
        ViewAngleEstimator.from_folder(folder)


def test_larger_cells_fold_into_channels_and_round_trip(tmp_path):
    """A 64 px view-angle network has the 32 px one's stages after a pixel-unshuffle stem (same
    cost per step), loads back bit-exact, and odd cell sizes are refused at construction."""
    torch.manual_seed(2)
    est = ViewAngleEstimator(ViewAngleNet(8, 64).eval(), 64, {"width": 8, "cell": 64})
    small = ViewAngleNet(8, 32)
    assert sum(p.numel() for p in est.net.parameters()) - sum(p.numel() for p in small.parameters()) \
        == 8 * 12 * 9                       # only the first convolution takes 12 more channels
    images, masks = _cells(3, cell=64)
    out = est.predict(images, masks)
    assert out.shape == (3, 2) and np.all(np.isfinite(out))
    est.save(tmp_path / "va64")
    back = ViewAngleEstimator.from_folder(tmp_path / "va64")
    assert back.cell == 64 and np.array_equal(back.predict(images, masks), out)
    with pytest.raises(ValueError, match="multiple"):
        ViewAngleNet(8, 48)


def test_mirror_averaging_is_mirror_consistent():
    """With ``mirror`` the mirrored cell gets the same elevation and the opposite roll exactly;
    without it an untrained network does not."""
    est = _estimator(seed=6)
    images, masks = _cells(4, seed=1)
    flipped = images[:, :, ::-1], masks[:, :, ::-1]
    a, b = est.predict(images, masks), est.predict(*flipped)
    assert np.allclose(a[:, 0], b[:, 0], atol=1e-4) and np.allclose(a[:, 1], -b[:, 1], atol=1e-4)
    a, b = est.predict(images, masks, mirror=False), est.predict(*flipped, mirror=False)
    assert not np.allclose(a[:, 1], -b[:, 1], atol=1e-3)


def test_others_mean_averages_the_other_views_of_each_group():
    f = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0], [7.0, 7.0]])
    ctx, has = others_mean(f, torch.tensor([0, 0, 0, 1]))
    assert torch.allclose(ctx[0], torch.tensor([4.0, 3.0])) and torch.allclose(ctx[2], torch.tensor([2.0, 1.0]))
    assert torch.equal(ctx[3], torch.zeros(2)) and has[:, 0].tolist() == [1.0, 1.0, 1.0, 0.0]
    ctx_all, _ = others_mean(f)                      # no groups: all views show one object
    assert torch.allclose(ctx_all[3], f[:3].mean(0))


def test_a_context_network_reads_each_view_with_its_own_objects_views_only(tmp_path):
    torch.manual_seed(3)
    est = ViewAngleEstimator(ViewAngleNet(8, 32, context=True).eval(), 32,
                             {"width": 8, "cell": 32, "context": True})
    images, masks = _cells(5, seed=2)
    groups = np.array([0, 0, 0, 1, 1])
    together = est.predict(images, masks, groups=groups)
    assert np.allclose(together[:3], est.predict(images[:3], masks[:3]), atol=1e-5)
    assert np.allclose(together[3:], est.predict(images[3:], masks[3:]), atol=1e-5)
    with pytest.raises(ValueError, match="groups must number each of the 5 cells"):
        est.predict(images, masks, groups=groups[:4])
    alone = est.predict(images[:1], masks[:1])
    assert not np.allclose(alone, together[:1], atol=1e-3)          # the other views matter
    est.save(tmp_path / "ctx")
    back = ViewAngleEstimator.from_folder(tmp_path / "ctx")
    assert back.context and np.array_equal(back.predict(images, masks, groups=groups), together)
    _estimator().save(tmp_path / "old")              # a config from before the option
    config = json.loads((tmp_path / "old" / CONFIG_FILE).read_text())
    config.pop("context", None)
    (tmp_path / "old" / CONFIG_FILE).write_text(json.dumps(config))
    assert not ViewAngleEstimator.from_folder(tmp_path / "old").context
