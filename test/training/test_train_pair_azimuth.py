"""Training the pair-azimuth network: labels per ordered pair, short runs that learn the relative
azimuth, continuing from a trained network and growing a wider one from it (fine correlation,
depth), refusals of networks that do not fit."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sparp_ros.model.config import ModelLoadError
from sparp_ros.model.pair_azimuth import PairAzimuthEstimator, PairAzimuthNet
from sparp_ros.training.pair_azimuth import (load_pair_samples, load_widened, main, pair_errors,
                                             train_pair_azimuth)
from tiny_nets import pair_estimator as _estimator, random_cells as _cells  # noqa: E402




def _shard(path, n_samples, seed):
    """Samples whose relative azimuths can be seen: every view shows a bar whose angle in the
    image is the view's own azimuth (the stand-in for an object turning with the camera)."""
    rng = np.random.default_rng(seed)
    S = 32
    yy, xx = np.mgrid[:S, :S] - 15.5
    images = np.zeros((n_samples, 6, S, S, 3), np.uint8)
    masks = np.zeros((n_samples, 6, S, S), np.uint8)
    azimuth_self = np.zeros((n_samples, 6), np.float32)
    num_views = rng.integers(2, 4, n_samples).astype(np.int16)
    for i in range(n_samples):
        own = rng.choice(np.radians(np.arange(0, 360, 90)), num_views[i], replace=False)
        for v in range(num_views[i]):
            azimuth_self[i, v] = own[v] - own[0]
            direction = np.array([np.cos(own[v]), np.sin(own[v])])
            along = xx * direction[0] + yy * direction[1]
            across = -xx * direction[1] + yy * direction[0]
            bar = (np.abs(across) < 3) & (along > 0) & (along < 13)
            images[i, v] = 40
            images[i, v][bar] = 230
            masks[i, v] = (xx ** 2 + yy ** 2) < 14 ** 2
    np.savez(path / "shard_00000.npz", images=images, masks=masks, num_views=num_views,
             azimuth_self=azimuth_self)


def test_labels_are_the_azimuth_from_the_second_view_to_the_first(tmp_path):
    _shard(tmp_path, 5, seed=1)
    x, pairs, azimuths, cell = load_pair_samples([tmp_path])
    with np.load(tmp_path / "shard_00000.npz") as d:
        n = d["num_views"].astype(int)
        assert len(x) == n.sum() and len(pairs) == int((n * (n - 1)).sum()) and cell == 32
        own = np.degrees(d["azimuth_self"][0, :n[0]])
    # the first sample's pair (0, 1): p_0 = Rz(az_1 − az_0) p_1
    assert azimuths[0] == pytest.approx((own[1] - own[0]) % 360.0)
    assert list(pairs[0]) == [0, 1]


@pytest.mark.parametrize("correlation, attention, fine", [(False, 0, False), (True, 0, False), (True, 1, False),
                                                       (True, 0, True)])
def test_a_short_training_run_learns_the_relative_azimuth(tmp_path, correlation, attention, fine):
    train, val = tmp_path / "train", tmp_path / "val"
    train.mkdir(), val.mkdir()
    _shard(train, 60, seed=2)
    _shard(val, 15, seed=3)
    data = load_pair_samples([val])
    before = np.median(pair_errors(_estimator(width=8, bins=12), *data[:3]))
    lines = []
    est = train_pair_azimuth([train], tmp_path / "out", [val], width=8, bins=12, steps=120,
                             batch_size=24, lr=3e-3, val_every=60, correlation=correlation,
                             attention=attention, fine_correlation=fine, log=lines.append)
    errors = pair_errors(est, *data[:3])
    assert np.median(errors) < 0.5 * before and np.mean(errors < 30) > 0.8, (before, np.median(errors))
    assert any("within 30°" in line for line in lines)
    back = PairAzimuthEstimator.from_folder(tmp_path / "out")
    assert back.config["training"]["steps"] == 120 and back.net.correlation == correlation
    assert back.net.attention == attention and back.net.fine_correlation == fine
    assert main(["--data", str(tmp_path / "none"), "--out", str(tmp_path / "x")]) == 2


def test_training_can_start_from_a_trained_network(tmp_path):
    """``init`` continues from a trained folder (its answers, not a fresh network's, after a step
    at a tiny learning rate); a folder of another width is exit code 2 from the command line."""
    train = tmp_path / "train"
    train.mkdir()
    _shard(train, 10, seed=5)
    start = _estimator(width=8, bins=12, seed=9)
    start.save(tmp_path / "start")
    est = train_pair_azimuth([train], tmp_path / "more", width=8, bins=12, steps=1, batch_size=4,
                             lr=1e-9, init=tmp_path / "start", log=lambda line: None)
    cells = _cells(3)
    assert np.allclose(est.predict(*cells), start.predict(*cells), atol=1e-5)
    assert est.config["training"]["init"] == str(tmp_path / "start")
    fresh = train_pair_azimuth([train], tmp_path / "fresh", width=8, bins=12, steps=1, batch_size=4,
                               lr=1e-9, log=lambda line: None)
    assert not np.allclose(fresh.predict(*cells), start.predict(*cells), atol=1e-3)
    assert main(["--data", str(train), "--out", str(tmp_path / "x"), "--width", "16", "--bins", "12",
                 "--init", str(tmp_path / "start"), "--steps", "1"]) == 2


def test_init_from_a_network_without_the_correlation_is_refused(tmp_path):
    """``init`` from a network of the other kind is refused (exit 2 from the command line)."""
    _estimator(seed=2).save(tmp_path / "plain")           # config without "correlation"
    train = tmp_path / "train"
    train.mkdir()
    _shard(train, 4, seed=5)
    with pytest.raises(ModelLoadError, match="correlation"):
        train_pair_azimuth([train], tmp_path / "x", width=8, bins=12, steps=1, batch_size=4,
                           init=tmp_path / "plain", correlation=True, log=lambda line: None)
    assert main(["--data", str(train), "--out", str(tmp_path / "y"), "--width", "8", "--bins", "12",
                 "--init", str(tmp_path / "plain"), "--steps", "1", "--correlation"]) == 2


def test_a_negative_attention_is_refused_on_the_command_line(tmp_path):
    with pytest.raises(SystemExit):
        main(["--data", str(tmp_path), "--out", str(tmp_path / "x"), "--attention", "-1"])


def test_a_fine_correlation_network_round_trips_and_grows_from_a_trained_one(tmp_path):
    """The fine correlation is in the config and comes back from it (old configs load without it);
    a trained network without it seeds one with it (``--init``): the new inputs start at zero, so
    the widened network answers exactly as the trained one before training moves it; other
    differences are still refused."""
    torch.manual_seed(4)
    plain = PairAzimuthEstimator(PairAzimuthNet(8, 12, 64, correlation=True).eval(), 64,
                                 {"width": 8, "bins": 12, "cell": 64, "correlation": True})
    plain.save(tmp_path / "corr")
    assert not PairAzimuthEstimator.from_folder(tmp_path / "corr").net.fine_correlation
    fine = PairAzimuthNet(8, 12, 64, correlation=True, fine_correlation=True).eval()
    assert fine.features(torch.zeros(1, 4, 64, 64)).shape == (1, 16, 16, 16)    # before the last pooling
    cells = _cells(3, cell=64)
    fresh = PairAzimuthEstimator(fine, 64, {}).predict(*cells)
    load_widened(fine, plain.net)
    widened = PairAzimuthEstimator(fine, 64, {"width": 8, "bins": 12, "cell": 64, "correlation": True,
                                              "fine_correlation": True})
    assert np.allclose(widened.predict(*cells), plain.predict(*cells), atol=1e-6)
    assert not np.allclose(fresh, plain.predict(*cells), atol=1e-3)
    widened.save(tmp_path / "fine")
    back = PairAzimuthEstimator.from_folder(tmp_path / "fine")
    assert back.net.fine_correlation and np.array_equal(back.predict(*cells), widened.predict(*cells))
    with pytest.raises(ValueError, match="cannot widen"):
        load_widened(PairAzimuthNet(16, 12, 64, correlation=True, fine_correlation=True), plain.net)
    train = tmp_path / "train"
    train.mkdir()
    _shard(train, 4, seed=5)
    PairAzimuthEstimator(PairAzimuthNet(8, 12, 32, correlation=True), 32,          # the shard's cells
                         {"width": 8, "bins": 12, "cell": 32, "correlation": True}).save(tmp_path / "corr32")
    lines = []
    est = train_pair_azimuth([train], tmp_path / "grown", width=8, bins=12, steps=2, batch_size=4,
                             init=tmp_path / "corr32", correlation=True, fine_correlation=True,
                             log=lines.append)
    assert est.net.fine_correlation and any("widened" in line for line in lines)
    with pytest.raises(ModelLoadError, match="fine"):          # fine → plain is not a widening
        train_pair_azimuth([train], tmp_path / "z", width=8, bins=12, steps=1, batch_size=4,
                           init=tmp_path / "grown", correlation=True, log=lambda line: None)


def _add_depth(path, slope=0.3):
    """Give a ``_shard`` NOCS targets, intrinsics and poses, as ``sparp-ros dataset`` stores them:
    every view's object is a plane 1 m in front of the camera, tilted along the bar's direction
    (so the depth shows the azimuth too)."""
    from sparp_ros.conventions import NOCS_PNG_RANGE
    with np.load(path) as d:
        arrays = dict(d)
    n, S = arrays["images"].shape[0], arrays["images"].shape[2]
    f = 1.2 * S
    K = np.array([[f, 0, S / 2 - 0.5], [0, f, S / 2 - 0.5], [0, 0, 1]], np.float32)
    T = np.tile(np.eye(4, dtype=np.float32), (n, 6, 1, 1))
    T[..., 2, 3] = 1.0
    yy, xx = np.mgrid[:S, :S]
    rays = np.stack([(xx - K[0, 2]) / f, (yy - K[1, 2]) / f, np.ones((S, S))], -1)
    nocs = np.zeros((n, 6, S, S, 3), np.uint16)
    for i in range(n):
        for v in range(int(arrays["num_views"][i])):
            own = arrays["azimuth_self"][i, v]
            z = 1.0 + slope * (rays[..., 0] * np.cos(own) + rays[..., 1] * np.sin(own))
            p = rays * z[..., None] - [0, 0, 1.0]
            enc = np.clip(np.round((p / 2.0 + 0.5) * NOCS_PNG_RANGE + 1.0), 1, 65535).astype(np.uint16)
            m = arrays["masks"][i, v] > 0
            nocs[i, v][m] = enc[m]
    np.savez(path, **arrays, nocs_ref=nocs, T_camera_object=T, K=np.broadcast_to(K, (n, 6, 3, 3)).copy(),
             diagonal=np.full(n, 2.0, np.float32))


def test_a_depth_network_grows_from_an_rgb_one_and_reads_metric_depth(tmp_path):
    """--depth with --init from an RGB network: the depth inputs start at zero weights (the same
    answers), training goes on with depth; it refuses to run without depth, and its metric entry
    point (depth in metres and the cell's focal length) gives what the relative one does."""
    from sparp_ros.training.dataset import view_depth
    from sparp_ros.model.small_nets import relative_depth
    train = tmp_path / "train"
    train.mkdir()
    _shard(train, 8, seed=4)
    _add_depth(train / "shard_00000.npz")
    x, pairs, azimuths, cell = load_pair_samples([train], with_depth=True)
    assert x.shape[1] == 6 and cell == 32
    rgb = PairAzimuthEstimator(PairAzimuthNet(8, 12, 32, correlation=True).eval(), 32,
                               {"width": 8, "bins": 12, "cell": 32, "correlation": True})
    rgb.save(tmp_path / "rgb")
    grown_net = PairAzimuthNet(8, 12, 32, correlation=True, depth=True)
    load_widened(grown_net, rgb.net)
    grown = PairAzimuthEstimator(grown_net.eval(), 32, {})
    with np.load(train / "shard_00000.npz") as d:
        images, masks = d["images"][0, :2], d["masks"][0, :2] > 0
        z = view_depth(d["nocs_ref"], d["T_camera_object"], d["diagonal"])[0, :2]
        K = d["K"][0, :2]
    rel, valid = relative_depth(z, masks, K[:, 0, 0])
    assert valid.sum() > 0.9 * masks.sum() and np.abs(rel[valid]).max() > 0.01
    assert np.allclose(grown.predict(images, masks, depth=rel, depth_valid=valid),
                       rgb.predict(images, masks), atol=1e-6)
    with pytest.raises(ValueError, match="reads depth"):
        grown.predict(images, masks)
    lines = []
    est = train_pair_azimuth([train], tmp_path / "rgbd", width=8, bins=12, steps=3, batch_size=8,
                             init=tmp_path / "rgb", correlation=True, depth=True, log=lines.append)
    assert any("widened to the depth" in line for line in lines)
    back = PairAzimuthEstimator.from_folder(tmp_path / "rgbd")
    assert back.uses_depth and back.config["depth"] is True
    assert np.allclose(back.predict_with_depth(images, masks, z, K[:, 0, 0]),
                       back.predict(images, masks, depth=rel, depth_valid=valid), atol=1e-6)
    with pytest.raises(ModelLoadError, match="depth"):           # depth → RGB is not a widening
        train_pair_azimuth([train], tmp_path / "z", width=8, bins=12, steps=1, batch_size=4,
                           init=tmp_path / "rgbd", correlation=True, log=lambda line: None)
