"""The training-data engine: determinism, resumability, and NOCS targets that agree with the
stored geometry (PnP recovers the poses; per-view frames are z-rotations of view 0's)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sparp_ros.camera import PinholeCamera
from sparp_ros.conventions import decode_nocs_png, rotation_angle_deg
from sparp_ros.geometry.pnp import solve_pnp_nocs
from sparp_ros.training.dataset import (DatasetConfig, DatasetError, ObjectSpec, ShardSampler, SparpDataset,
                                     build_dataset, find_objects, fixed_cameras, main, shard_path,
                                     split_nocs)

MESHES = ("Crayola_Crayons_24_count", "Schleich_Hereford_Bull")
S = 40


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def cfg(objects_dir: Path) -> DatasetConfig:
    objects = find_objects([objects_dir / f"{m}.glb" for m in MESHES])
    return DatasetConfig(objects=objects, cell_size=S, views=(2, 6), samples_per_object=3,
                         shard_size=3, seed=7)


@pytest.fixture(scope="module")
def data(cfg: DatasetConfig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    meta = build_dataset(root, cfg, progress=False)
    assert meta["complete"] and meta["num_shards"] == 2 and meta["num_samples"] == 6
    return root


def test_meta_and_shard_layout(data: Path) -> None:
    meta = json.loads((data / "meta.json").read_text())
    assert meta["objects"] == list(MESHES) and meta["cell_size"] == S
    z = _load(shard_path(data, 0))
    assert z["images"].shape == (3, 6, S, S, 3) and z["images"].dtype == np.uint8
    assert z["nocs_ref"].dtype == np.uint16 and z["fixed_rgba"].shape == (3, 6, S, S, 4)
    assert z["object"].dtype.kind == "U" and list(z["object"]) == [MESHES[0], MESHES[1], MESHES[0]]
    for i, n in enumerate(z["num_views"]):
        assert 2 <= n <= 6
        assert not z["images"][i, n:].any() and not z["nocs_ref"][i, n:].any()   # padding is zero
        assert z["masks"][i, :n].any(axis=(1, 2)).all()
        assert z["azimuth_self"][i, 0] == 0.0


def test_same_seed_same_data_and_resume(cfg: DatasetConfig, data: Path, tmp_path: Path) -> None:
    build_dataset(tmp_path, cfg, progress=False)
    for j in range(2):
        a, b = _load(shard_path(data, j)), _load(shard_path(tmp_path, j))
        assert a.keys() == b.keys()
        for k in a:
            assert np.array_equal(a[k], b[k]), k
    # Resume: a deleted shard is rebuilt identical; the other one is not touched.
    first = shard_path(tmp_path, 0)
    mtime = first.stat().st_mtime_ns
    shard_path(tmp_path, 1).unlink()
    meta = build_dataset(tmp_path, cfg, progress=False)
    assert meta["last_run"]["samples_rendered"] == 3 and first.stat().st_mtime_ns == mtime
    rebuilt, ref = _load(shard_path(tmp_path, 1)), _load(shard_path(data, 1))
    assert all(np.array_equal(rebuilt[k], ref[k]) for k in ref)
    other = DatasetConfig(objects=cfg.objects, cell_size=S, views=(1, 1), samples_per_object=3,
                          shard_size=3, seed=7)
    with pytest.raises(DatasetError, match="other settings"):
        build_dataset(tmp_path, other, progress=False)


def _pnp_rotation_error(nocs_enc: np.ndarray, K: np.ndarray, T: np.ndarray) -> float:
    nocs, mask = decode_nocs_png(nocs_enc)
    res = solve_pnp_nocs(nocs, mask, PinholeCamera(S, S, K.astype(np.float64)))
    assert res.ok, res.message
    return rotation_angle_deg(res.T_camera_unit[:3, :3] @ T[:3, :3].T.astype(np.float64))


def _check_input_views(z: dict[str, np.ndarray], i: int) -> int:
    """Sample ``i``'s input views agree with its poses; returns how many views were big enough."""
    checked = 0
    for k in range(int(z["num_views"][i])):
        if (z["nocs_ref"][i, k] > 0).any(axis=2).sum() < 40:
            continue                                  # too small to check this view
        # PnP on view k's NOCS in view 0's frame recovers view k's pose in that frame.
        assert _pnp_rotation_error(z["nocs_ref"][i, k], z["K"][i, k],
                                   z["T_camera_object"][i, k]) < 1.0
        # The per-view frame is view 0's frame turned by azimuth_self[k] about z.
        ref, mask = decode_nocs_png(z["nocs_ref"][i, k])
        own, own_mask = decode_nocs_png(z["nocs_self"][i, k])
        assert np.array_equal(mask, own_mask)
        a = float(z["azimuth_self"][i, k])
        Rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
        ref_from_own = (own[mask] - 0.5) @ Rz.T + 0.5
        assert np.abs(ref_from_own - ref[mask]).max() < 1e-3
        checked += 1
    return checked


def test_nocs_agrees_with_poses(data: Path) -> None:
    fixed_K, fixed_T = fixed_cameras(S)
    checked = 0
    for j in range(2):
        z = _load(shard_path(data, j))
        for i, n in enumerate(z["num_views"]):
            assert np.allclose(z["fixed_K"][i], fixed_K) and np.allclose(z["fixed_T_camera_object"][i], fixed_T)
            checked += _check_input_views(z, i)
            # The fixed views: their NOCS + fixed_K give back the fixed poses.
            for k in range(6):
                assert z["fixed_rgba"][i, k, ..., 3].max() == 255
                assert _pnp_rotation_error(z["fixed_nocs"][i, k], z["fixed_K"][i],
                                           z["fixed_T_camera_object"][i, k]) < 1.0
            # View 0's camera sits at azimuth 0 of its own frame: in front of +x.
            c0 = -z["T_camera_object"][i, 0, :3, :3].T @ z["T_camera_object"][i, 0, :3, 3]
            assert c0[0] > 0 and abs(c0[1]) < 1e-4 * np.linalg.norm(c0)
    assert checked >= 10


def test_variants(objects_dir: Path, tmp_path: Path) -> None:
    """``--variants K``: K stretched / turned / re-textured objects per mesh, drawn by the seed,
    whose labels are computed after the change (they still agree with the poses), and a variant
    dataset resumes (its config survives meta.json)."""
    from sparp_ros.training import dataset as ds
    paths = [objects_dir / f"{m}.glb" for m in MESHES]
    specs = find_objects(paths, variants=4, seed=3)
    assert [s.name for s in specs] == [f"{m}~{k}" for m in MESHES for k in range(4)]
    assert specs == find_objects(paths, variants=4, seed=3) != find_objects(paths, variants=4, seed=4)
    lo, hi = np.exp(-ds.VARIANT_LOG_STRETCH), np.exp(ds.VARIANT_LOG_STRETCH)
    for s in specs:
        assert s.is_variant and all(lo <= x <= hi for x in s.stretch)
        assert s.texture_from in ("", *(str(p.resolve()) for p in paths)) and s.texture_from != s.path
    assert not any(s.is_variant for s in find_objects(paths))
    # The mesh: the file's points through the variant's map; a donor's texture when it has one.
    base = ds._load_object(find_objects(paths[:1])[0], 0).mesh
    for s in specs[:4]:
        m = ds._load_object(s, 0).mesh
        assert np.allclose(m.vertices, base.vertices @ ds.variant_transform(s).T.astype(np.float32),
                           atol=1e-6)
        donor = ds._load_object(find_objects(paths[1:])[0], 0).mesh
        assert np.shares_memory(m.texture, donor.texture if s.texture_from else base.texture)
    swapped = ObjectSpec(name="x~0", path=str(paths[0].resolve()), texture_from=str(paths[1].resolve()))
    assert np.shares_memory(ds._load_object(swapped, 0).mesh.texture, donor.texture)
    with pytest.raises(DatasetError, match="variants"):
        find_objects(paths, variants=-1)
    wide = find_objects(paths, variants=40, seed=3, variant_stretch=0.7)   # flat and long ones too
    factors = np.array([s.stretch for s in wide])
    assert factors.min() >= np.exp(-0.7) - 1e-4 and factors.max() <= np.exp(0.7) + 1e-4
    assert factors.min() < lo and factors.max() > hi
    with pytest.raises(DatasetError, match="stretch"):
        find_objects(paths, variants=1, variant_stretch=-0.1)
    # Samples of variants: labels agree with the poses; resuming renders nothing new.
    cfg = DatasetConfig(objects=specs[::3], cell_size=S, views=(3, 4), samples_per_object=1,
                        shard_size=2, seed=5, fixed_views=False)
    build_dataset(tmp_path, cfg, progress=False)
    z = _load(shard_path(tmp_path, 0))
    assert list(z["object"]) == [specs[0].name, specs[3].name]
    assert sum(_check_input_views(z, i) for i in range(2)) >= 4
    assert build_dataset(tmp_path, cfg, progress=False)["last_run"]["samples_rendered"] == 0
    out = tmp_path / "cli"
    assert main(["--meshes", *map(str, paths), "--variants", "2", "--out", str(out), "--quiet",
                 "--samples-per-object", "1", "--cell-size", "16", "--views-per-sample", "1..1",
                 "--no-fixed-views"]) == 0
    assert json.loads((out / "meta.json").read_text())["objects"] == [
        f"{m}~{k}" for m in MESHES for k in range(2)]


def test_torch_dataset_items(data: Path) -> None:
    ds = SparpDataset(data, cache_shards=1)
    assert len(ds) == 6
    it = ds[4]
    n = int(it["num_views"])
    for key, c in (("cond", 3), ("cond_mask", 1), ("nocs_ref", 3), ("nocs_self", 3), ("nocs_mask", 1),
                   ("fixed_rgb", 3), ("fixed_alpha", 1), ("fixed_nocs", 3), ("fixed_mask", 1)):
        assert it[key].shape == (c, 3 * S, 2 * S) and it[key].dtype == torch.float32, key
        assert it[key].min() >= -1.0 and it[key].max() <= 1.0, key
    assert it["K"].shape == (6, 3, 3) and it["T_camera_object"].shape == (6, 4, 4)
    assert it["azimuth_self"].shape == (6,) and it["fixed_T_camera_object"].shape == (6, 4, 4)
    # Blank cells: cond 0, NOCS background (-1); the NOCS mask is recovered from the values alone.
    if n < 6:
        assert it["cond"][:, 2 * S:, S:].abs().max() == 0
        assert (it["nocs_ref"][:, 2 * S:, S:] == -1).all()
    _, mask = split_nocs(it["nocs_ref"])
    assert torch.equal(mask.float(), it["nocs_mask"])
    _, fmask = split_nocs(it["fixed_nocs"])
    assert torch.equal(fmask.float(), it["fixed_mask"])
    assert set(it["fixed_alpha"].unique().tolist()) >= {0.0, 1.0}
    # Grey background: cond is 0 wherever the mask is 0.
    assert (it["cond"] * (1 - it["cond_mask"])).abs().max() == 0
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4, sampler=ShardSampler(ds, 1))))
    assert batch["cond"].shape == (4, 3, 3 * S, 2 * S) and len(batch["object"]) == 4
    order = list(ShardSampler(ds, shards_at_once=1, seed=3))
    assert sorted(order) == list(range(6))
    assert {ds.shard_of(i) for i in order[:3]} in ({0}, {1})        # one shard at a time


def test_cli_errors(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path / "x"), "--quiet"]) == 2             # no objects
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "x"), "--procedural", "1", "--views-per-sample", "a..b"])


def test_cli_procedural(tmp_path: Path) -> None:
    out = tmp_path / "p"
    assert main(["--procedural", "2", "--out", str(out), "--samples-per-object", "1",
                 "--cell-size", "16", "--views-per-sample", "1..2", "--quiet"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["objects"] == ["procedural_00000", "procedural_00001"] and meta["complete"]
    assert "--procedural 2" in meta["command"]
    assert len(SparpDataset(out)) == 2


def test_data_without_fixed_views(cfg: DatasetConfig, data: Path, tmp_path: Path) -> None:
    """``--no-fixed-views``: the same input views and NOCS (same seed), empty fixed-view arrays, and
    training refuses the fixed domains instead of learning from blanks."""
    from dataclasses import replace

    from sparp_ros.training.train import TrainArgs, TrainError, train
    lean = replace(cfg, fixed_views=False)
    build_dataset(tmp_path, lean, progress=False)
    a, b = _load(shard_path(data, 0)), _load(shard_path(tmp_path, 0))
    for k in ("images", "masks", "nocs_ref", "nocs_self", "T_camera_object"):
        assert np.array_equal(a[k], b[k]), k
    assert a["fixed_rgba"].any() and not b["fixed_rgba"].any() and not b["fixed_nocs"].any()
    assert SparpDataset(tmp_path).config.fixed_views is False
    args = TrainArgs(data=str(tmp_path), out=str(tmp_path / "run"), domains=("nocs_self", "fixed_rgb"),
                     steps=1, batch_size=2, cell=S)
    with pytest.raises(TrainError, match="no-fixed-views"):
        train(args, progress=lambda s: None)


def test_datasets_from_before_the_fixed_views_option_resume(cfg: DatasetConfig, data: Path,
                                                             tmp_path: Path) -> None:
    import shutil
    shutil.copytree(data, tmp_path / "old")
    meta_path = tmp_path / "old" / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["config"]["fixed_views"]
    meta_path.write_text(json.dumps(meta))
    assert build_dataset(tmp_path / "old", cfg, progress=False)["last_run"]["samples_rendered"] == 0


def test_items_for_chosen_domains_only(data: Path) -> None:
    """``domains=``: the same tensors for what is asked, nothing else (the others cost decoding)."""
    full = SparpDataset(data)
    for domains, keys, absent in ((("nocs_self",), {"nocs_self", "nocs_mask"},
                                   {"nocs_ref", "fixed_rgb", "fixed_nocs", "fixed_mask", "fixed_alpha"}),
                                  (("fixed_rgb", "nocs_ref"), {"nocs_ref", "nocs_mask", "fixed_rgb", "fixed_alpha"},
                                   {"nocs_self", "fixed_nocs", "fixed_mask"})):
        lean = SparpDataset(data, domains=domains)
        for i in (0, 4):
            a, b = full[i], lean[i]
            assert not absent & set(b) and keys <= set(b)
            for k, v in b.items():
                if torch.is_tensor(v):
                    assert torch.equal(v, a[k]), k
    with pytest.raises(DatasetError, match="unknown domains"):
        SparpDataset(data, domains=("rgb",))


def test_first_objects_only(data: Path) -> None:
    """``objects=N`` keeps the samples of the first N objects (sample i shows object i mod the
    object count), the same items as without it, and refuses a count the data does not have."""
    full = SparpDataset(data, domains=("nocs_self",))
    first = SparpDataset(data, domains=("nocs_self",), objects=1)
    assert len(full) == 6 and len(first) == 3
    assert {first[i]["object"] for i in range(len(first))} == {MESHES[0]}
    kept = [i for i in range(len(full)) if full[i]["object"] == MESHES[0]]
    for i, j in enumerate(kept):
        assert torch.equal(first[i]["nocs_self"], full[j]["nocs_self"])
    for bad in (0, 3):
        with pytest.raises(DatasetError, match="objects must be in 1..2"):
            SparpDataset(data, objects=bad)


def test_mixed_folders_are_one_dataset_with_their_shards_apart(data: Path, tmp_path: Path) -> None:
    """``MixedDataset``: the items of both folders in order, shards of the second folder told
    apart from the first's (ShardSampler groups by them), every item drawn once per epoch."""
    from sparp_ros.training.dataset import MixedDataset
    a = SparpDataset(data, domains=("nocs_self",))
    b = SparpDataset(data, domains=("nocs_self",), objects=1)
    mixed = MixedDataset([a, b])
    assert len(mixed) == len(a) + len(b) == 9
    assert torch.equal(mixed[len(a)]["nocs_self"], b[0]["nocs_self"])
    assert torch.equal(mixed[-1]["nocs_self"], b[len(b) - 1]["nocs_self"])
    assert {mixed.shard_of(i) for i in range(len(a))} == {0, 1}
    assert {mixed.shard_of(i) for i in range(len(a), 9)} == {MixedDataset.SHARD_ID_STRIDE + j for j in (0, 1)}
    order = list(ShardSampler(mixed, shards_at_once=2, seed=3))
    assert sorted(order) == list(range(9))
    with pytest.raises(IndexError):
        mixed[9]
