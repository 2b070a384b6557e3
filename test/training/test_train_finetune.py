"""Fine-tuning options of the training loop (tiny seeded configs, CPU, seconds): ``init`` starts
from a saved denoiser exactly, ``cache_data`` trains from items decoded once into memory,
``snapshot_every`` keeps EMA denoisers for curves, ``warmup_steps`` replaces the config's."""
from __future__ import annotations

import json

import pytest
import torch

from sparp_ros.model.unet import SparpDenoiser
from sparp_ros.training.train import MemoryData, TrainArgs, TrainError, train
from test_train import ListDataset
from tiny_nets import small_config


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def test_init_cache_snapshots_and_warmup(tmp_path):
    cfg = small_config()
    data = ListDataset(16)
    base = TrainArgs(config="tiny", out=str(tmp_path / "a"), domains=("nocs_self",), steps=4,
                     batch_size=4, lr=1e-3, save_every=2, log_every=1, threads=1)
    train(base, dataset=data, model_config=cfg, progress=lambda s: None)
    src = tmp_path / "a" / "final" / "denoiser"
    # init: the run starts from exactly those weights (lr 0 keeps them), from memory batches
    seen = []
    args = TrainArgs(**{**base.__dict__, "out": str(tmp_path / "b"), "init": str(src), "lr": 1e-12,
                        "cache_data": True, "snapshot_every": 2, "warmup_steps": 1})
    train(args, dataset=data, model_config=small_config(), progress=seen.append)
    assert any(s.startswith("initialised from") for s in seen)
    assert any(s.startswith("cached 16 items") for s in seen)
    a = SparpDenoiser.from_pretrained(src).state_dict()
    b = SparpDenoiser.from_pretrained(tmp_path / "b" / "final" / "denoiser").state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert sorted(p.name for p in (tmp_path / "b" / "snapshots").iterdir()) == \
        ["step_0000002", "step_0000004"]
    rows = [json.loads(x) for x in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert rows[0]["lr"] == pytest.approx(1e-12)          # warm-up of 1 step: full rate at once
    with pytest.raises(TrainError):
        train(TrainArgs(**{**args.__dict__, "out": str(tmp_path / "c"), "init": str(tmp_path)}),
              dataset=data, model_config=small_config(), progress=lambda s: None)


def test_memory_data_keeps_what_the_loss_needs():
    data = ListDataset(10)
    mem = MemoryData(data, chunk=4)
    assert len(mem) == 10 and mem.tensors["cond"].dtype == torch.float16
    assert mem.tensors["nocs_mask"].dtype == torch.bool
    batches = list(mem.batches(4, seed=0))
    assert len(batches) == 2 and batches[0]["cond"].dtype == torch.float32
    i = int(torch.randperm(10, generator=torch.Generator().manual_seed(0))[0])
    assert torch.allclose(batches[0]["cond"][0], data[i]["cond"], atol=1e-3)
