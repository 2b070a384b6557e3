"""Training the view-angle network: labels from the views' poses, whole-sample batches, depth from
the NOCS targets, and short runs that learn the elevation (from the image, with context, from the
depth alone)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sparp_ros.conventions import unit_direction
from sparp_ros.geometry.view_angles import elevation_roll_deg
from sparp_ros.model.view_angles import ViewAngleEstimator, ViewAngleNet
from sparp_ros.render.capture_renderer import look_at
from sparp_ros.training.view_angles import (_sample_batches, angle_errors, load_view_samples, main,
                                            train_view_angles, view_groups)


def _estimator(width=8, cell=32, seed=0) -> ViewAngleEstimator:
    torch.manual_seed(seed)
    return ViewAngleEstimator(ViewAngleNet(width).eval(), cell, {"width": width, "cell": cell})


def _shard(path, n_samples, seed):
    """A dataset shard whose label is visible in the image: the camera's elevation sets the
    brightness of the upper half of a disc (a stand-in for the top face one sees from above)."""
    rng = np.random.default_rng(seed)
    S = 32
    yy, xx = np.mgrid[:S, :S]
    disc = (yy - 15.5) ** 2 + (xx - 15.5) ** 2 < 12 ** 2
    images = np.zeros((n_samples, 6, S, S, 3), np.uint8)
    masks = np.zeros((n_samples, 6, S, S), np.uint8)
    T = np.tile(np.eye(4, dtype=np.float32), (n_samples, 6, 1, 1))
    num_views = rng.integers(1, 4, n_samples).astype(np.int16)
    for i in range(n_samples):
        for v in range(num_views[i]):
            el = rng.uniform(-20, 50)
            T[i, v] = look_at(2.0 * unit_direction(rng.uniform(-3, 3), np.radians(el)), np.zeros(3))
            img = np.full((S, S, 3), 60, np.uint8)
            img[(yy < 16) & disc] = int(np.interp(el, [-20, 50], [40, 250]))
            images[i, v], masks[i, v] = img, disc
    np.savez(path / "shard_00000.npz", images=images, masks=masks, num_views=num_views,
             T_camera_object=T)


def test_labels_come_from_each_views_pose(tmp_path):
    _shard(tmp_path, 6, seed=1)
    images, masks, labels, cell = load_view_samples([tmp_path])[:4]
    with np.load(tmp_path / "shard_00000.npz") as d:
        expected = [elevation_roll_deg(d["T_camera_object"][i, v].astype(float))
                    for i, n in enumerate(d["num_views"]) for v in range(n)]
    assert cell == 32 and len(images) == len(masks) == len(labels) == len(expected)
    assert np.allclose(labels, expected)
    with pytest.raises(FileNotFoundError, match="sparp-ros dataset"):
        load_view_samples([tmp_path / "empty"])


def test_a_short_training_run_learns_the_elevation(tmp_path):
    train, val = tmp_path / "train", tmp_path / "val"
    train.mkdir(), val.mkdir()
    _shard(train, 40, seed=2)
    _shard(val, 10, seed=3)
    data = load_view_samples([val])
    before = np.median(angle_errors(_estimator(width=8, seed=0), *data[:3]), axis=0)
    lines = []
    est = train_view_angles([train], tmp_path / "out", [val], width=8, steps=150, batch_size=32,
                            lr=3e-3, val_every=75, seed=0, log=lines.append)
    after = np.median(angle_errors(est, *data[:3]), axis=0)
    assert after[0] < 0.5 * before[0] and after[0] < 8.0, (before, after)
    assert any("validation median error" in line for line in lines)
    saved = ViewAngleEstimator.from_folder(tmp_path / "out")
    assert saved.config["training"]["steps"] == 150 and len(saved.config["training"]["history"]) == 2
    assert main(["--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2


def test_context_batches_are_whole_samples(tmp_path):
    _shard(tmp_path, 30, seed=4)
    groups = view_groups([tmp_path])
    with np.load(tmp_path / "shard_00000.npz") as d:
        assert np.array_equal(np.bincount(groups), d["num_views"])
    idx, batch_groups = _sample_batches(groups, 12)(torch.Generator().manual_seed(0))
    for g in range(int(batch_groups[-1]) + 1):
        views = idx[batch_groups == g].numpy()
        assert len(set(groups[views])) == 1                          # one sample per group
        assert len(views) == np.sum(groups == groups[views[0]])      # all of its views
        assert np.array_equal(views, np.arange(views[0], views[0] + len(views)))


def test_a_short_context_training_run_learns_the_elevation(tmp_path):
    train, val = tmp_path / "train", tmp_path / "val"
    train.mkdir(), val.mkdir()
    _shard(train, 40, seed=2)
    _shard(val, 10, seed=3)
    data, groups = load_view_samples([val]), view_groups([val])
    est = train_view_angles([train], tmp_path / "out", [val], width=8, steps=150, batch_size=32,
                            lr=3e-3, val_every=75, seed=0, context=True, log=lambda _: None)
    after = np.median(angle_errors(est, *data[:3], groups=groups), axis=0)
    assert after[0] < 8.0, after
    assert ViewAngleEstimator.from_folder(tmp_path / "out").config["context"] is True


def _depth_shard(path, n_samples, seed, S=32):
    """A dataset shard whose elevation is visible only in the depth: every view is the same grey
    disc in the image (same mask), cut from an endless horizontal plane (the object frame's z = 0)
    seen from the camera's elevation, so only the slant of the surface tells it. The NOCS targets
    are the plane's points, as ``sparp-ros dataset`` stores them."""
    from sparp_ros.conventions import NOCS_PNG_RANGE
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:S, :S]
    disc = (yy - S / 2 + 0.5) ** 2 + (xx - S / 2 + 0.5) ** 2 < (0.25 * S) ** 2
    f, diag = 1.2 * S, 8.0        # the plane's points stay inside the NOCS box
    K = np.array([[f, 0, S / 2 - 0.5], [0, f, S / 2 - 0.5], [0, 0, 1]], np.float32)
    images = np.full((n_samples, 6, S, S, 3), 128, np.uint8)
    masks = np.zeros((n_samples, 6, S, S), np.uint8)
    nocs = np.zeros((n_samples, 6, S, S, 3), np.uint16)
    T = np.tile(np.eye(4, dtype=np.float32), (n_samples, 6, 1, 1))
    num_views = rng.integers(1, 4, n_samples).astype(np.int16)
    rays = np.stack([(xx - K[0, 2]) / f, (yy - K[1, 2]) / f, np.ones((S, S))], -1)
    for i in range(n_samples):
        for v in range(num_views[i]):
            el = rng.uniform(25, 60)
            T_co = look_at(1.5 * unit_direction(rng.uniform(-3, 3), np.radians(el)), np.zeros(3))
            R, t = T_co[:3, :3], T_co[:3, 3]
            c = -R.T @ t                                    # camera centre, object frame
            d = rays @ R                                    # ray directions, object frame
            p = c + d * (-c[2] / d[..., 2:])                # where each ray meets z = 0
            enc = np.round((p / diag + 0.5) * NOCS_PNG_RANGE + 1.0)
            nocs[i, v][disc] = np.clip(enc, 1, 65535).astype(np.uint16)[disc]
            T[i, v], masks[i, v] = T_co, disc
    K_all = np.broadcast_to(K, (n_samples, 6, 3, 3)).copy()
    np.savez(path / "shard_00000.npz", images=images, masks=masks, num_views=num_views,
             T_camera_object=T, nocs_ref=nocs, K=K_all, diagonal=np.full(n_samples, diag, np.float32))


def test_shard_depth_comes_from_the_nocs_targets_and_relative_depth_is_scale_free(tmp_path):
    from sparp_ros.training.dataset import view_depth
    from sparp_ros.model.small_nets import relative_depth
    _depth_shard(tmp_path, 3, seed=5)
    with np.load(tmp_path / "shard_00000.npz") as d:
        z = view_depth(d["nocs_ref"], d["T_camera_object"], d["diagonal"])
        K, mask, T = d["K"][0, 0], d["masks"][0, 0] > 0, d["T_camera_object"][0, 0].astype(float)
    # the camera-frame point of each pixel, from its depth, lies on the plane z = 0 of the object
    v, u = np.nonzero(mask)
    pc = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones(len(u))], 1) * z[0, 0][v, u, None]
    p_object = (pc - T[:3, 3]) @ T[:3, :3]
    assert np.abs(p_object[:, 2]).max() < 1e-3 and np.all(z[0, 0][~mask] == 0)
    rel, valid = relative_depth(z[0, :1], mask[None], K[None, 0, 0])
    assert np.array_equal(valid[0], mask) and abs(np.median(rel[0][mask])) < 1e-6
    # an object twice as large, twice as far: the same relative depth
    rel2, _ = relative_depth(2.0 * z[0, :1], mask[None], K[None, 0, 0])
    assert np.allclose(rel, rel2, atol=1e-6)
    # holes and non-finite depth are not measured
    holes = z[0, :1].copy()
    holes[0, v[0], u[0]], holes[0, v[1], u[1]] = 0.0, np.inf
    _, valid_h = relative_depth(holes, mask[None], K[None, 0, 0])
    assert valid_h.sum() == mask.sum() - 2


def test_a_depth_network_learns_the_elevation_from_the_surface_alone(tmp_path):
    """Every image and mask is the same, so only the depth channel can tell the elevation."""
    train, val = tmp_path / "train", tmp_path / "val"
    train.mkdir(), val.mkdir()
    _depth_shard(train, 60, seed=6)
    _depth_shard(val, 12, seed=7)
    data = load_view_samples([val], with_depth=True)
    assert data.depth is not None and data.depth_valid.sum() > 0
    torch.manual_seed(0)
    untrained = ViewAngleEstimator(ViewAngleNet(8, 32, depth=True).eval(), 32, {})
    before = np.median(angle_errors(untrained, *data[:3], depth=data.depth,
                                    depth_valid=data.depth_valid), axis=0)
    est = train_view_angles([train], tmp_path / "out", [val], width=8, steps=200, batch_size=32,
                            lr=3e-3, val_every=100, seed=0, depth=True, log=lambda line: None)
    after = np.median(angle_errors(est, *data[:3], depth=data.depth, depth_valid=data.depth_valid), axis=0)
    assert after[0] < 0.5 * before[0] and after[0] < 6.0, (before, after)
    saved = ViewAngleEstimator.from_folder(tmp_path / "out")
    assert saved.uses_depth and saved.config["depth"] is True
    with pytest.raises(ValueError, match="reads depth"):
        saved.predict(data.images[:2], data.masks[:2])
    # the metric entry point gives what the relative one does
    from sparp_ros.training.dataset import view_depth
    with np.load(val / "shard_00000.npz") as d:
        z = view_depth(d["nocs_ref"], d["T_camera_object"], d["diagonal"])[0, :1]
        K = d["K"][0, 0]
    metric = saved.predict_with_depth(data.images[:1], data.masks[:1], z, K[None, 0, 0])
    relative = saved.predict(data.images[:1], data.masks[:1], depth=data.depth[:1].astype(np.float32),
                             depth_valid=data.depth_valid[:1])
    assert np.allclose(metric, relative, atol=0.05)


def test_fine_tuning_starts_from_the_given_network(tmp_path):
    """``--init``: a trained network's weights are the start (a run at a vanishing rate keeps its
    accuracy, a fresh one at that rate stays at chance); a network of another shape is refused."""
    from sparp_ros.model.config import ModelLoadError

    train, val = tmp_path / "train", tmp_path / "val"
    train.mkdir(), val.mkdir()
    _shard(train, 40, seed=2)
    _shard(val, 10, seed=3)
    data = load_view_samples([val])
    first = train_view_angles([train], tmp_path / "first", None, width=8, steps=150, batch_size=32,
                              lr=3e-3, seed=0, log=lambda _: None)
    trained = np.median(angle_errors(first, *data[:3]), axis=0)[0]
    lines = []
    tuned = train_view_angles([train], tmp_path / "tuned", None, width=8, steps=2, batch_size=32,
                              lr=1e-9, seed=1, init=tmp_path / "first", log=lines.append)
    fresh = train_view_angles([train], tmp_path / "fresh", None, width=8, steps=2, batch_size=32,
                              lr=1e-9, seed=1, log=lambda _: None)
    assert np.median(angle_errors(tuned, *data[:3]), axis=0)[0] == pytest.approx(trained, abs=0.5)
    assert np.median(angle_errors(fresh, *data[:3]), axis=0)[0] > 2 * trained
    assert any("starting from" in line for line in lines)
    assert ViewAngleEstimator.from_folder(tmp_path / "tuned").config["training"]["init"] == str(tmp_path / "first")
    with pytest.raises(ModelLoadError, match="do not match"):
        train_view_angles([train], tmp_path / "wide", None, width=16, steps=1, batch_size=32,
                          init=tmp_path / "first", log=lambda _: None)
