"""The diffusion model's training loop on tiny seeded configs (CPU, seconds): the loss goes down,
a run resumes, the options are checked and used, the latent (sd21) path trains."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sparp_ros.model.config import get_config
from sparp_ros.model.diffusion import SparpDiffusionPipeline, make_scheduler
from sparp_ros.model.unet import SparpDenoiser
from sparp_ros.training.train import TrainArgs, diffusion_loss, make_batch, train
from tiny_nets import S, SMALL, small_config  # noqa: E402

@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)          # tiny ops: one thread beats two on a shared 2-core machine


def synthetic_item(rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """One item shaped like SparpDataset's: squares whose NOCS is a function of their colour."""
    n = int(rng.integers(1, 7))
    cond = torch.zeros(3, 3 * S, 2 * S)
    mask = torch.zeros(1, 3 * S, 2 * S)
    nocs = torch.full((3, 3 * S, 2 * S), -1.0)
    for k in range(n):
        r, c = divmod(k, 2)
        a, b = (int(x) for x in rng.integers(0, S // 2, 2))
        colour = torch.tensor(rng.uniform(-1, 1, 3), dtype=torch.float32)[:, None, None]
        sl = (slice(r * S + a, r * S + a + S // 2), slice(c * S + b, c * S + b + S // 2))
        cond[(slice(None),) + sl] = colour
        mask[(slice(None),) + sl] = 1.0
        nocs[(slice(None),) + sl] = colour.flip(0) * 0.8
    fixed_alpha = mask.clone()
    return {"cond": cond, "cond_mask": mask, "nocs_ref": nocs, "nocs_self": nocs.clone(),
            "nocs_mask": mask.clone(), "fixed_rgb": torch.where(mask > 0, cond, torch.ones_like(cond)),
            "fixed_alpha": fixed_alpha, "fixed_nocs": nocs.clone(), "fixed_mask": fixed_alpha.clone(),
            "num_views": torch.tensor(n)}


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, n: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.items = [synthetic_item(rng) for _ in range(n)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def test_short_training_lowers_the_loss_and_resumes(tmp_path):
    cfg = small_config()
    data = ListDataset(32)
    args = TrainArgs(config="tiny", out=str(tmp_path / "run"), domains=("nocs_ref", "nocs_self"), steps=40,
                     batch_size=8, lr=3e-3, save_every=1000, log_every=10, threads=1)
    cfg.train.warmup_steps = 5
    sched = make_scheduler("ddim", cfg.scheduler)
    gen = torch.Generator().manual_seed(123)
    batch = {k: torch.stack([data[i][k] for i in range(16)]) for k in data[0]}
    b = make_batch(batch, ("nocs_ref",), (1.0,), gen, 1.0, 0.1)
    noise = torch.randn(b["target"].shape, generator=gen)
    t = torch.linspace(50, 950, 16).long()

    def fixed_loss(model):
        with torch.no_grad():
            return float(diffusion_loss(model.eval(), sched, b, noise, t)[0])
    torch.manual_seed(args.seed)
    before = fixed_loss(SparpDenoiser(**cfg.denoiser))
    result = train(args, dataset=data, model_config=cfg, progress=lambda s: None)
    assert result.step == 40
    run = tmp_path / "run"
    ckpt = run / json.loads((run / "latest.json").read_text())["checkpoint"]
    after = fixed_loss(SparpDenoiser.from_pretrained(ckpt / "model"))
    assert after < 0.7 * before, (before, after)
    rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20, 30, 40] and rows[-1]["loss"] < rows[0]["loss"]
    assert (run / "loss.png").is_file() and (run / "final" / "pipeline.json").is_file()
    assert (ckpt / "optimizer.safetensors").is_file()
    assert not list(run.rglob("*.bin")) and not list(run.rglob("*.pt"))
    SparpDiffusionPipeline.from_pretrained(run / "final")

    # resume to 44 steps with a validation hook that sees the EMA pipeline
    seen = []
    args2 = TrainArgs(**{**args.__dict__, "steps": 44, "resume": True, "val_every": 2})
    result2 = train(args2, dataset=data, model_config=cfg, progress=lambda s: None,
                    validate=lambda p: seen.append(p) or {"score": 1.0})
    assert result2.step == 44 and len(seen) == 2 and isinstance(seen[0], SparpDiffusionPipeline)
    rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert any(r.get("val") == {"score": 1.0} and r["step"] == 42 for r in rows)


def test_min_timestep_is_checked_and_used(tmp_path, monkeypatch):
    """``--min-timestep`` trains a 1-step model on the high-noise regime only: out-of-range values
    are refused, and every sampled timestep respects it."""
    from sparp_ros.training import train as train_mod
    cfg = small_config()
    data = ListDataset(8)
    bad = TrainArgs(config="tiny", out=str(tmp_path / "bad"), domains=("nocs_self",), steps=1,
                    batch_size=4, threads=1, min_timestep=1000)
    with pytest.raises(train_mod.TrainError, match="min-timestep"):
        train(bad, dataset=data, model_config=cfg, progress=lambda s: None)
    seen = []
    real_loss = train_mod.diffusion_loss

    def spy(model, sched, b, noise, t, *a, **k):
        seen.append(t.clone())
        return real_loss(model, sched, b, noise, t, *a, **k)
    monkeypatch.setattr(train_mod, "diffusion_loss", spy)
    args = TrainArgs(config="tiny", out=str(tmp_path / "run"), domains=("nocs_self",), steps=3,
                     batch_size=4, threads=1, save_every=1000, min_timestep=900)
    train(args, dataset=data, model_config=cfg, progress=lambda s: None)
    t = torch.cat(seen)
    assert len(seen) == 3 and int(t.min()) >= 900 and int(t.max()) < 1000


def test_latent_training_with_a_local_vae(tmp_path):
    """The sd21 code path (VAE latents, v-prediction) trains on a tiny local VAE (its sampling:
    test/model/test_model.py)."""
    from diffusers import AutoencoderKL
    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8),
                        layers_per_block=1, latent_channels=4, norm_num_groups=4, sample_size=3 * S)
    vae.save_pretrained(tmp_path / "vae")
    cfg = get_config("sd21", cell=S, vae_path=str(tmp_path / "vae"), num_inference_steps=3,
                     denoiser={**SMALL, "sample_size": (3 * S // 2, 2 * S // 2), "target_channels": 4,
                               "cond_channels": 4, "latent_factor": 2, "use_linear_projection": True})
    data = ListDataset(8)
    cfg.train.warmup_steps = 1
    result = train(TrainArgs(config="sd21", out=str(tmp_path / "run"), domains=("fixed_rgb", "nocs_ref"),
                             steps=2, batch_size=4, threads=1, log_every=1),
                   dataset=data, model_config=cfg, progress=lambda s: None)
    assert result.step == 2 and np.isfinite(result.last_loss)


def test_lr_schedule_warms_up_then_decays_by_steps_or_time():
    from sparp_ros.training.train import TrainError, lr_factor
    assert lr_factor(0, 10, "constant", 0.0) == pytest.approx(0.1)
    assert lr_factor(50, 10, "constant", 0.9) == 1.0
    assert lr_factor(50, 10, "cosine", 0.0) == pytest.approx(1.0)
    assert lr_factor(50, 10, "cosine", 0.5) == pytest.approx(0.525)
    assert lr_factor(50, 10, "cosine", 1.0) == pytest.approx(0.05)
    assert lr_factor(50, 10, "cosine", 3.0) == pytest.approx(0.05)    # past the end: stays at the floor
    with pytest.raises(TrainError, match="schedule"):
        lr_factor(0, 10, "linear", 0.0)


def test_a_clock_stop_checkpoints_and_a_resume_finishes_on_schedule(tmp_path):
    """The trainer runs on the one loop (``training.loop.run_loop``): ``max_minutes`` stops it
    with a checkpoint that ``resume`` continues from; the resumed run logs every step, validates
    every ``val_every`` steps only (not at the last) and checkpoints every ``save_every`` and at
    the end."""
    cfg = small_config()
    data = ListDataset(16)
    run = tmp_path / "run"
    args = TrainArgs(config="tiny", out=str(run), domains=("nocs_self",), steps=5, batch_size=4,
                     save_every=2, val_every=2, log_every=1, threads=1, max_minutes=0.0)
    lines = []
    stopped = train(args, dataset=data, model_config=cfg, progress=lines.append)
    assert stopped.stopped_by == "time" and stopped.step == 0
    assert json.loads((run / "latest.json").read_text())["step"] == 0
    assert any("minutes reached" in line for line in lines)
    seen = []
    done = train(TrainArgs(**{**args.__dict__, "resume": True, "max_minutes": None}), dataset=data,
                 model_config=cfg, progress=lambda s: None,
                 validate=lambda p: seen.append(p) or {"n": len(seen)})
    assert done.stopped_by == "steps" and done.step == 5 and np.isfinite(done.last_loss)
    rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4, 5]
    assert [(r["step"], r["val"]) for r in rows if "val" in r] == [(2, {"n": 1}), (4, {"n": 2})]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_0000004", "step_0000005"]
    assert json.loads((run / "latest.json").read_text())["step"] == 5
