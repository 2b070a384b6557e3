"""``sparp-ros train``: train a SparpDenoiser with accelerate, AdamW, EMA, safetensors checkpoints.

The optimisation runs on the one loop of every network (``training.loop.run_loop``: the rate per
step, gradient clipping, validation and checkpoint schedule, ``--max-minutes``); what is the
diffusion model's own is here, passed to it: the batch loss (epochs of the loader, domains, noise
and timesteps drawn from one seeded generator), the EMA step and the log rows after each step.

    sparp-ros train --config tiny --data DATA --out RUN [--domains nocs_self,nocs_ref] [--steps N]
                    [--batch-size B] [--lr LR] [--resume] [--val-data DIR] [--val-every N]
                    [--validate MODULE:FUNC] [--max-minutes M]

``accelerate launch -m sparp_ros.training.train ...`` scales the same script to several GPUs; on a GPU
it trains in mixed precision (bf16 where supported, else fp16).

The run folder::

    RUN/train_config.json           the arguments and the model config
    RUN/log.jsonl                   one JSON line per log interval (loss, per-domain loss, lr,
                                    s/step, samples/s) and per validation (``"val": {...}``)
    RUN/loss.png                    loss (and validation) curves
    RUN/checkpoints/step_XXXXXXX/   pipeline/ (EMA weights: loadable and shippable), model/ (raw
                                    weights), optimizer.safetensors, state.json
    RUN/latest.json                 the newest complete checkpoint (``--resume`` reads it)
    RUN/final/                      the EMA pipeline at the end of the run

Everything is safetensors + JSON: nothing is pickled, not even the optimizer state.

Loss: per-pixel weighted MSE between the model output and its target (x0, noise or v by the
scheduler's ``prediction_type``), weight ``fg_weight`` on the target's foreground (NOCS mask or
fixed-view mask) and ``bg_weight`` elsewhere, normalised by the weights' sum. Each sample draws its
domain from ``--domains`` with the config's ``domain_weights`` as probabilities.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import json
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from ..model.config import CONFIG_NAMES, DOMAINS, ModelConfig, get_config
from ..model.diffusion import SparpDiffusionPipeline, make_scheduler
from ..model.unet import SparpDenoiser, load_safetensors_checked, read_json_checked
from .loop import LoopSpec, LoopState, run_loop

Validator = Callable[[SparpDiffusionPipeline], dict]
"""A validation hook: gets a pipeline with the EMA weights, returns metrics (JSON-serialisable)."""

KEEP_CHECKPOINTS = 2


class TrainError(RuntimeError):
    """Bad training arguments, data without a requested domain, or a run folder that cannot resume."""


@dataclass
class TrainArgs:
    config: str = "tiny"
    data: str | list[str] = ""
    """A dataset folder, or several to mix (``dataset.MixedDataset``)."""
    out: str = ""
    domains: tuple[str, ...] = ("nocs_self", "nocs_ref")
    steps: int = 1000
    batch_size: int | None = None
    lr: float | None = None
    resume: bool = False
    val_data: str | None = None
    val_every: int = 500
    val_samples: int = 16
    validate: str | None = None
    max_minutes: float | None = None
    save_every: int = 500
    log_every: int = 10
    seed: int = 0
    mixed_precision: str = "auto"
    workers: int = 0
    threads: int = 2
    reference_grad: bool = True
    gradient_checkpointing: bool = False
    min_timestep: int = 0
    vae: str | None = None
    init_unet: str | None = None
    init: str | None = None
    """A SparpDenoiser folder (the shipped ``weights/tiny/denoiser``, a run's ``final/denoiser``)
    to fine-tune from: its config and weights replace the fresh model (not when resuming)."""
    cell: int | None = None
    """Tile-cell size in pixels (default: the config's); must match the data's."""
    denoiser_overrides: dict[str, Any] = field(default_factory=dict)
    cache_data: bool = False
    """Decode every item once into memory (on the training device) and draw batches from there:
    no loader work per step (a GPU run was loader-bound). Float16 images/targets, bool masks."""
    warmup_steps: int | None = None
    """Linear warm-up of the learning rate (default: the config's); short for a fine-tune."""
    snapshot_every: int = 0
    """Keep the EMA denoiser of every N-th step in ``RUN/snapshots/step_XXXXXXX`` (checkpoints
    keep only the last two): the curve of error against steps is measured on them afterwards."""
    objects: int | None = None
    """Train on the samples of the data's first N objects only (the curve of error against the
    number of training objects, from one rendered folder)."""
    lr_schedule: str = "constant"
    """``constant`` after warm-up, or ``cosine`` down to 5 % by the end of ``steps`` or of
    ``max_minutes``, whichever comes first (a time-boxed GPU run then ends at a low rate)."""


@dataclass
class TrainResult:
    step: int
    last_loss: float
    run_dir: Path
    stopped_by: str          # "steps" or "time"


# ------------------------------------------------------------------------------ batches
TARGET_MASK = {"nocs_ref": "nocs_mask", "nocs_self": "nocs_mask", "fixed_rgb": "fixed_mask",
               "fixed_nocs": "fixed_mask"}


def _fg_mask(batch: dict[str, torch.Tensor], domain: str) -> torch.Tensor:
    key = TARGET_MASK[domain]
    if key in batch:
        return batch[key]
    if key == "fixed_mask" and "fixed_alpha" in batch:
        return (batch["fixed_alpha"] > 0.5).float()
    raise TrainError(f"the data has no {key!r}, needed for domain {domain!r}")


def make_batch(batch: dict[str, torch.Tensor], domains: Sequence[str], probs: Sequence[float],
               generator: torch.Generator, fg_weight: float, bg_weight: float) -> dict[str, torch.Tensor]:
    """Pick a domain per sample; returns target, per-pixel loss weight, condition and domain index."""
    B = batch["cond"].shape[0]
    pick = torch.multinomial(torch.tensor(probs, dtype=torch.float), B, replacement=True, generator=generator)
    targets, weights = [], []
    for b in range(B):
        d = domains[int(pick[b])]
        if d not in batch:
            raise TrainError(f"the data has no {d!r} target; it has {sorted(batch)}")
        targets.append(batch[d][b])
        fg = _fg_mask(batch, d)[b]
        weights.append(fg * fg_weight + (1 - fg) * bg_weight)
    return {"target": torch.stack(targets), "weight": torch.stack(weights),
            "cond": batch["cond"], "cond_mask": batch["cond_mask"],
            "num_views": batch["num_views"].reshape(-1),
            "domain": torch.tensor([DOMAINS.index(domains[int(i)]) for i in pick], dtype=torch.long)}


def diffusion_loss(model, noise_scheduler, b: dict[str, torch.Tensor], noise: torch.Tensor,
                   timesteps: torch.Tensor, vae=None, latent_scale: float | None = None,
                   reference_grad: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss, per-sample loss [B]) of one batch from ``make_batch`` at given noise/timesteps."""
    x0, cond, weight = b["target"], b["cond"], b["weight"]
    cond_image = None
    if vae is not None:
        with torch.no_grad():
            x0 = vae.encode(x0).latent_dist.sample() * latent_scale
            cond_image, cond = cond, vae.encode(cond).latent_dist.mode() * latent_scale
        weight = F.interpolate(weight, x0.shape[-2:], mode="area")
    noisy = noise_scheduler.add_noise(x0, noise, timesteps)
    pred_type = noise_scheduler.config.prediction_type
    if pred_type == "sample":
        target = x0
    elif pred_type == "epsilon":
        target = noise
    elif pred_type == "v_prediction":
        target = noise_scheduler.get_velocity(x0, noise, timesteps)
    else:
        raise TrainError(f"unsupported prediction_type {pred_type!r}")
    out = model(noisy, timesteps, cond, b["cond_mask"], b["num_views"], b["domain"], cond_image=cond_image,
                reference_grad=reference_grad)
    err = (out.float() - target.float()).square().mean(dim=1, keepdim=True) * weight
    per_sample = err.flatten(1).sum(1) / weight.flatten(1).sum(1).clamp_min(1e-6)
    return per_sample.mean(), per_sample.detach()


# ------------------------------------------------------------------------------ optimizer IO
def save_optimizer(optimizer: torch.optim.Optimizer, path: Path) -> None:
    """AdamW state as safetensors (tensors) + JSON (param groups, scalars): no pickle."""
    from safetensors.torch import save_file
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v.detach().contiguous().cpu()
            else:
                scalars[f"{pid}.{k}"] = v
    save_file(tensors, str(path.with_suffix(".safetensors")))
    path.with_suffix(".json").write_text(json.dumps({"param_groups": sd["param_groups"], "scalars": scalars}))


def load_optimizer(optimizer: torch.optim.Optimizer, path: Path) -> None:
    tensors = load_safetensors_checked(path.with_suffix(".safetensors"))
    meta = read_json_checked(path.with_suffix(".json"))
    state: dict[int, dict[str, Any]] = {}
    for key, v in list(tensors.items()) + list(meta["scalars"].items()):
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


# ------------------------------------------------------------------------------ logging / plot
def plot_log(log_path: Path, out_png: Path) -> None:
    """Loss (and validation metrics) against step, from ``log.jsonl``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    train = [r for r in rows if "loss" in r]
    val = [r for r in rows if "val" in r]
    fig, axes = plt.subplots(1, 2 if val else 1, figsize=(11 if val else 6, 4), squeeze=False)
    ax = axes[0, 0]
    if train:
        steps = [r["step"] for r in train]
        ax.plot(steps, [r["loss"] for r in train], label="loss", lw=1)
        for d in DOMAINS:
            pts = [(r["step"], r[f"loss_{d}"]) for r in train if r.get(f"loss_{d}") is not None]
            if pts:
                ax.plot(*zip(*pts), lw=0.8, alpha=0.7, label=d)
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title("training loss")
    ax.legend(fontsize=7)
    if val:
        ax = axes[0, 1]
        keys = sorted({k for r in val for k, v in r["val"].items() if isinstance(v, (int, float))})
        for k in keys:
            pts = [(r["step"], r["val"][k]) for r in val if isinstance(r["val"].get(k), (int, float))]
            ax.plot(*zip(*pts), marker="o", ms=3, label=k)
        ax.set_xlabel("step")
        ax.set_title("validation")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------------------ validation
def default_validator(val_dataset, domains: Sequence[str], num_samples: int = 16, seed: int = 0) -> Validator:
    """Sampled-output error on the first ``num_samples`` items of ``val_dataset`` per domain:
    mean |error| on the target's foreground and IoU of the predicted foreground (NOCS domains)."""
    from ..model.diffusion import NOCS_FOREGROUND_THRESHOLD

    def validate(pipe: SparpDiffusionPipeline) -> dict:
        metrics: dict[str, float] = {}
        n = min(num_samples, len(val_dataset))
        for d in domains:
            l1, iou = [], []
            for i in range(n):
                item = val_dataset[i]
                out = pipe(item["cond"], item["cond_mask"], int(item["num_views"]), d, seed=seed + i)[0]
                fg = _fg_mask({k: v[None] for k, v in item.items() if torch.is_tensor(v)}, d)[0, 0] > 0.5
                err = (out - item[d].to(out)).abs().mean(0)
                l1.append(float(err[fg].mean()) if fg.any() else 0.0)
                if d != "fixed_rgb":
                    pred = ((out + 1) / 2).norm(dim=0) > NOCS_FOREGROUND_THRESHOLD
                    union = (pred | fg).sum()
                    iou.append(float((pred & fg).sum() / union) if union else 1.0)
            metrics[f"l1_{d}"] = sum(l1) / max(len(l1), 1)
            if iou:
                metrics[f"iou_{d}"] = sum(iou) / len(iou)
        return metrics
    return validate


def load_validator(spec: str, val_data: str | None) -> Validator:
    """``MODULE:FUNC`` → ``FUNC(pipeline, val_data) -> dict`` as a validator."""
    mod, _, name = spec.partition(":")
    if not mod or not name:
        raise TrainError(f"--validate must be MODULE:FUNCTION, got {spec!r}")
    try:
        fn = getattr(importlib.import_module(mod), name)
    except (ImportError, AttributeError) as e:
        raise TrainError(f"cannot import validator {spec!r}: {e}") from e
    return lambda pipe: fn(pipe, val_data)


# ------------------------------------------------------------------------------ training
def _open_dataset(path: str | Sequence[str], domains: Sequence[str] | None = None,
                  objects: int | None = None):
    """One dataset folder, or several mixed (``dataset.MixedDataset``); ``objects`` applies to
    each folder."""
    from .dataset import MixedDataset, SparpDataset
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    parts = [SparpDataset(p, domains=domains, objects=objects) for p in paths]
    return parts[0] if len(parts) == 1 else MixedDataset(parts)


class _EpochSampler(torch.utils.data.Sampler):
    """A seeded random permutation per epoch (``set_epoch``), for datasets without shards."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())


LR_SCHEDULES = ("constant", "cosine")


def lr_factor(step: int, warmup_steps: int, schedule: str, done: float) -> float:
    """Multiplier of the peak learning rate: linear warm-up, then constant or cosine to 5 %.

    ``done`` is the fraction of the run behind us (steps or time, whichever is further)."""
    warm = min(1.0, (step + 1) / max(warmup_steps, 1))
    if schedule == "constant":
        return warm
    if schedule == "cosine":
        return warm * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, done)))))
    raise TrainError(f"lr schedule must be one of {LR_SCHEDULES}, got {schedule!r}")


def _loader(dataset, batch_size: int, seed: int, workers: int):
    if hasattr(dataset, "shard_of"):
        from .dataset import ShardSampler
        sampler = ShardSampler(dataset, seed=seed)
    else:
        sampler = _EpochSampler(len(dataset), seed)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True,
                                       num_workers=workers, collate_fn=_collate,
                                       pin_memory=torch.cuda.is_available(),
                                       persistent_workers=workers > 0)


class MemoryData:
    """A dataset's items decoded once (``DataLoader`` workers in parallel) into stacked tensors on
    ``device``: images and targets float16, masks bool, the rest as they are. ``batches`` draws
    shuffled batches by indexing (no per-item Python work). Memory: ~0.35 MB per item at 64 px."""

    KEYS = frozenset({"cond", "cond_mask", "num_views", "nocs_mask", "fixed_mask", "fixed_alpha",
                      *DOMAINS})

    def __init__(self, dataset, device: str | torch.device = "cpu", workers: int = 0,
                 chunk: int = 256) -> None:
        loader = torch.utils.data.DataLoader(dataset, batch_size=chunk, shuffle=False,
                                             num_workers=workers, collate_fn=_collate)
        parts: dict[str, list[torch.Tensor]] = {}
        for batch in loader:
            for k, v in batch.items():
                if k not in self.KEYS:                     # geometry: not used by the loss
                    continue
                if v.is_floating_point():
                    v = v.bool() if k.endswith("mask") else v.half()
                parts.setdefault(k, []).append(v.to(device))
        self.tensors = {k: torch.cat(v) for k, v in parts.items()}
        self.device = device
        self.epoch = 0

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def batches(self, batch_size: int, seed: int):
        g = torch.Generator().manual_seed(seed * 100003 + self.epoch)
        order = torch.randperm(len(self), generator=g)
        for i in range(0, len(order) - batch_size + 1, batch_size):
            idx = order[i:i + batch_size].to(self.device)
            yield {k: (v[idx].float() if v.dtype in (torch.float16, torch.bool) else v[idx])
                   for k, v in self.tensors.items()}


def _collate(items: list[dict]) -> dict:
    return {k: torch.stack([it[k] for it in items]) for k in items[0] if torch.is_tensor(items[0][k])}


def _mixed_precision(choice: str) -> str:
    if choice != "auto":
        return choice
    if not torch.cuda.is_available():
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def _ema_pipeline(cfg: ModelConfig, ema, template: SparpDenoiser, vae) -> SparpDiffusionPipeline:
    model = SparpDenoiser.from_config(template.config)
    ema.copy_to(model.parameters())
    model.to(next(template.parameters()).device).eval()
    return SparpDiffusionPipeline.from_config(cfg, denoiser=model, vae=vae)


def _save_checkpoint(run: Path, step: int, epoch: int, cfg: ModelConfig, model: SparpDenoiser, ema,
                     optimizer, vae) -> Path:
    ckpts = run / "checkpoints"
    final = ckpts / f"step_{step:07d}"
    tmp = ckpts / f".tmp_step_{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _ema_pipeline(cfg, ema, model, vae).save_pretrained(tmp / "pipeline")
    model.save_pretrained(tmp / "model", safe_serialization=True)
    save_optimizer(optimizer, tmp / "optimizer")
    ema_state = {k: v for k, v in ema.state_dict().items() if k != "shadow_params"}
    (tmp / "state.json").write_text(json.dumps({"step": step, "epoch": epoch, "ema": ema_state}))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    (run / "latest.json").write_text(json.dumps({"checkpoint": str(final.relative_to(run)), "step": step}))
    old = sorted(p for p in ckpts.iterdir() if p.name.startswith("step_"))[:-KEEP_CHECKPOINTS]
    for p in old:
        shutil.rmtree(p)
    return final


def train(args: TrainArgs, dataset=None, val_dataset=None, validate: Validator | None = None,
          model_config: ModelConfig | None = None, progress: Callable[[str], None] = print) -> TrainResult:
    """Train (or resume) a run; returns where it stopped. ``dataset`` overrides ``args.data``."""
    from accelerate import Accelerator
    from diffusers.training_utils import EMAModel

    torch.set_num_threads(args.threads)
    if args.lr_schedule not in LR_SCHEDULES:      # refused before any data or model is loaded
        raise TrainError(f"lr schedule must be one of {LR_SCHEDULES}, got {args.lr_schedule!r}")
    bad = [d for d in args.domains if d not in DOMAINS]
    if bad or not args.domains:
        raise TrainError(f"--domains must be a non-empty subset of {DOMAINS}, got {list(args.domains)}")
    try:
        cfg = model_config or get_config(args.config, denoiser=args.denoiser_overrides or None,
                                         **({"vae_path": args.vae} if args.vae else {}),
                                         **({"cell": args.cell} if args.cell else {}))
    except ValueError as e:
        raise TrainError(str(e)) from e
    known = set(inspect.signature(SparpDenoiser.__init__).parameters) - {"self"}
    if set(cfg.denoiser) - known:
        raise TrainError(f"unknown denoiser settings {sorted(set(cfg.denoiser) - known)}; known: {sorted(known)}")
    tcfg = cfg.train
    batch_size = args.batch_size or tcfg.batch_size
    lr = args.lr or tcfg.learning_rate
    run = Path(args.out)
    if not args.out:
        raise TrainError("--out (the run folder) is required")
    if (run / "latest.json").exists() and not args.resume:
        raise TrainError(f"{run} already holds a run; pass --resume to continue it or choose another --out")

    if dataset is None:
        if not args.data:
            raise TrainError("--data (a dataset folder from `sparp-ros dataset`) is required")
        dataset = _open_dataset(args.data, args.domains, args.objects)
    if len(dataset) < batch_size:
        raise TrainError(f"the data has {len(dataset)} samples, fewer than one batch of {batch_size}")
    data_cfg = getattr(dataset, "config", None)
    if data_cfg is not None and not getattr(data_cfg, "fixed_views", True):
        fixed = [d for d in args.domains if d.startswith("fixed")]
        if fixed:
            raise TrainError(f"the data was made with --no-fixed-views, so it cannot train {fixed}")
    cell = getattr(dataset, "cell_size", None)
    if cell is not None and cell != cfg.cell:
        raise TrainError(f"the data has {cell} px cells but config {cfg.name!r} uses {cfg.cell} px "
                         f"(pass --cell-size {cell})")
    if validate is None and args.validate:
        validate = load_validator(args.validate, args.val_data)
    if validate is None and (val_dataset is not None or args.val_data):
        validate = default_validator(val_dataset or _open_dataset(args.val_data), args.domains,
                                     args.val_samples, args.seed)

    run.mkdir(parents=True, exist_ok=True)
    accelerator = Accelerator(mixed_precision=_mixed_precision(args.mixed_precision),
                              cpu=not torch.cuda.is_available())
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(args.seed)
    model = SparpDenoiser(**cfg.denoiser)
    resuming = args.resume and (run / "latest.json").exists()
    if args.init and not resuming:
        folder = Path(args.init)
        if not (folder / "config.json").is_file():
            raise TrainError(f"--init {folder}: not a SparpDenoiser folder (no config.json)")
        model = SparpDenoiser.from_pretrained(folder).train()          # its config wins
        cfg.denoiser = {k: v for k, v in model.config.items() if not k.startswith("_")}
        progress(f"initialised from {folder}")
    if args.init_unet and not resuming:
        left = model.init_from_unet(args.init_unet)
        progress(f"UNet initialised from {args.init_unet}; {len(left)} tensors left fresh")
    if args.gradient_checkpointing:
        model.unet.enable_gradient_checkpointing()
    vae = SparpDiffusionPipeline.from_config(cfg, denoiser=model).vae if cfg.latent else None
    noise_scheduler = make_scheduler("ddim", cfg.scheduler)
    if not 0 <= args.min_timestep < noise_scheduler.config.num_train_timesteps:
        raise TrainError(f"--min-timestep must be in [0, {noise_scheduler.config.num_train_timesteps}), "
                         f"got {args.min_timestep}")

    step, epoch, state = 0, 0, None
    if args.resume and (run / "latest.json").exists():
        latest = run / read_json_checked(run / "latest.json")["checkpoint"]
        state = read_json_checked(latest / "state.json")
        model = SparpDenoiser.from_pretrained(latest / "model").train()   # its config wins
        if args.gradient_checkpointing:
            model.unet.enable_gradient_checkpointing()
        cfg.denoiser = {k: v for k, v in model.config.items() if not k.startswith("_")}
        step, epoch = int(state["step"]), int(state["epoch"])
        progress(f"resuming {latest} at step {step}")
    (run / "train_config.json").write_text(json.dumps(
        {"args": asdict(args) | {"domains": list(args.domains)}, "model": cfg.to_dict(),
         "batch_size": batch_size, "lr": lr, "command": " ".join(sys.argv)}, indent=1, default=str))

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=tcfg.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    raw = accelerator.unwrap_model(model)
    ema = EMAModel(raw.parameters(), decay=tcfg.ema_decay, use_ema_warmup=True, power=3 / 4,
                   model_cls=SparpDenoiser, model_config=raw.config)
    if state is not None:
        load_optimizer(optimizer, latest / "optimizer")
        ema_model = SparpDenoiser.from_pretrained(latest / "pipeline" / "denoiser")
        ema.shadow_params = [p.detach().clone() for p in ema_model.parameters()]
        ema.optimization_step = int(state["ema"]["optimization_step"])
    ema.to(accelerator.device)
    if vae is not None:
        vae.to(accelerator.device)

    weights = [tcfg.domain_weights.get(d, 1.0) for d in args.domains]
    probs = [w / sum(weights) for w in weights]
    gen = torch.Generator().manual_seed(args.seed * 1000003 + step * 131 + accelerator.process_index)
    warmup_steps = tcfg.warmup_steps if args.warmup_steps is None else args.warmup_steps
    log_path = run / "log.jsonl"
    t_start = time.time()                # --max-minutes and the lr's time fraction count from here
    window: list[tuple[float, dict[str, list[float]]]] = []
    t_window = time.perf_counter()
    last_loss = float("nan")
    progress(f"training {cfg.name}: {sum(p.numel() for p in raw.parameters()) / 1e6:.2f} M params, "
             f"batch {batch_size}, lr {lr:g}, domains {list(args.domains)}, device {accelerator.device}, "
             f"precision {accelerator.mixed_precision}")

    def log(row: dict) -> None:
        if accelerator.is_main_process:
            with log_path.open("a") as f:
                f.write(json.dumps(row) + "\n")

    loop = LoopState(step=step)
    saved_at = [-1]

    def checkpoint(_state: LoopState | None = None) -> None:
        if saved_at[0] == loop.step:
            return
        saved_at[0] = loop.step
        # the epoch a resume starts: a save_every checkpoint names the epoch in progress (the
        # resume runs it again from its start), the one at the end of a run the next epoch
        resume_epoch = epoch if loop.step % args.save_every == 0 or not drawn else epoch + 1
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            path = _save_checkpoint(run, loop.step, resume_epoch, cfg, accelerator.unwrap_model(model),
                                    ema, optimizer, vae)
            if args.snapshot_every and loop.step % args.snapshot_every == 0:
                snap = run / "snapshots" / path.name
                shutil.rmtree(snap, ignore_errors=True)
                shutil.copytree(path / "pipeline" / "denoiser", snap)
            if log_path.exists():
                plot_log(log_path, run / "loss.png")
            progress(f"checkpoint {path}")

    if args.cache_data:
        t0 = time.perf_counter()
        memory = MemoryData(dataset, accelerator.device, args.workers)
        progress(f"cached {len(memory)} items in memory ({memory.nbytes() / 2**30:.2f} GiB on "
                 f"{accelerator.device}) in {time.perf_counter() - t0:.1f} s")
        loader = memory
    else:
        loader = accelerator.prepare(_loader(dataset, batch_size, args.seed, args.workers))
    batches, drawn = None, False

    def next_batch() -> dict[str, torch.Tensor]:
        """The epoch's next batch; once the epoch is exhausted, the first of the next one (the
        loader re-made after ``set_epoch``)."""
        nonlocal batches, epoch, drawn
        while True:
            fresh = batches is None
            if fresh:
                if hasattr(loader, "set_epoch"):
                    loader.set_epoch(epoch)
                batches = iter(loader.batches(batch_size, args.seed) if args.cache_data else loader)
            batch = next(batches, None)
            if batch is not None:
                drawn = True
                return batch
            if fresh:
                raise TrainError(f"epoch {epoch} of the data gives no batch of {batch_size}")
            batches, epoch = None, epoch + 1

    def lr_at(k: int) -> float:
        done = k / max(args.steps, 1)
        if args.max_minutes:
            done = max(done, (time.time() - t_start) / (args.max_minutes * 60))
        return lr * lr_factor(k, warmup_steps, args.lr_schedule, done)

    drawn_loss: dict[str, torch.Tensor] = {}

    def batch_loss(_k: int) -> torch.Tensor:
        """Draw from ``gen`` in a fixed order (domains, noise, timesteps): a seeded run repeats."""
        b = make_batch(next_batch(), args.domains, probs, gen, tcfg.fg_weight, tcfg.bg_weight)
        b = {k: v.to(accelerator.device) for k, v in b.items()}
        shape = b["target"].shape if vae is None else \
            (b["target"].shape[0], cfg.denoiser["target_channels"],
             *(s // cfg.denoiser["latent_factor"] for s in b["target"].shape[-2:]))
        noise = torch.randn(shape, generator=gen).to(accelerator.device)
        t = torch.randint(args.min_timestep, noise_scheduler.config.num_train_timesteps, (shape[0],),
                          generator=gen)
        with accelerator.autocast():
            loss, per_sample = diffusion_loss(model, noise_scheduler, b, noise, t.to(accelerator.device),
                                              vae, cfg.latent_scale, args.reference_grad)
        drawn_loss.update(domain=b["domain"], per_sample=per_sample)
        return loss

    def after_step(state: LoopState, loss: torch.Tensor) -> None:
        """The EMA step, and a log row of the window's mean (and per-domain) loss."""
        nonlocal window, t_window, last_loss
        ema.step(accelerator.unwrap_model(model).parameters())
        last_loss = float(loss.detach())
        by_domain: dict[str, list[float]] = {}
        for d, v in zip(drawn_loss["domain"].tolist(), drawn_loss["per_sample"].tolist()):
            by_domain.setdefault(DOMAINS[d], []).append(v)
        window.append((last_loss, by_domain))
        if state.step % args.log_every == 0 or state.step == args.steps:
            dt = (time.perf_counter() - t_window) / len(window)
            row = {"step": state.step, "loss": sum(w[0] for w in window) / len(window),
                   "lr": optimizer.param_groups[0]["lr"], "s_per_step": round(dt, 4),
                   "samples_per_s": round(batch_size * accelerator.num_processes / dt, 2),
                   "elapsed_min": round((time.time() - t_start) / 60, 2)}
            for d in DOMAINS:
                vals = [v for w in window for v in w[1].get(d, [])]
                if vals:
                    row[f"loss_{d}"] = sum(vals) / len(vals)
            log(row)
            eta = (args.steps - state.step) * dt / 60
            progress(f"step {state.step}/{args.steps} loss {row['loss']:.4f} | {dt:.2f} s/step "
                     f"{row['samples_per_s']:.1f} samples/s | eta {eta:.1f} min")
            window, t_window = [], time.perf_counter()

    def validation() -> tuple[dict, str]:
        """The hook on a pipeline of the EMA weights (main process); its time is not in s/step."""
        nonlocal t_window
        if not accelerator.is_main_process:
            return {}, "validated on the main process"
        t0 = time.perf_counter()
        metrics = validate(_ema_pipeline(cfg, ema, accelerator.unwrap_model(model), vae))
        log({"step": loop.step, "val": metrics, "val_seconds": round(time.perf_counter() - t0, 2)})
        t_window += time.perf_counter() - t0
        return {"val": metrics}, f"validation {metrics}"

    run_loop(model, optimizer, batch_loss, LoopSpec(
        steps=args.steps, max_minutes=args.max_minutes, val_every=args.val_every,
        checkpoint_every=args.save_every, validate_last=False), lr_at=lr_at,
        validate=validation if validate is not None else None, checkpoint=checkpoint, state=loop,
        accelerator=accelerator, log=progress, grad_clip=tcfg.grad_clip, after_step=after_step,
        started=t_start)
    step, stopped_by = loop.step, "time" if loop.stopped_by_clock else "steps"
    checkpoint()                         # a resume with no step left: its checkpoint written again
    if accelerator.is_main_process:
        final = run / "final"
        shutil.rmtree(final, ignore_errors=True)
        _ema_pipeline(cfg, ema, accelerator.unwrap_model(model), vae).save_pretrained(final)
        progress(f"stopped at step {step} ({stopped_by}); EMA pipeline in {final}")
    return TrainResult(step, last_loss, run, stopped_by)


# ------------------------------------------------------------------------------ command line
def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="sparp-ros train", description=__doc__.split("\n")[0])
    p.add_argument("--config", default="tiny", choices=CONFIG_NAMES, help="named model config")
    p.add_argument("--data", required=True, nargs="+",
                   help="dataset folder(s) (`sparp-ros dataset --out`); several are mixed, e.g. "
                        "plain and realism data")
    p.add_argument("--out", required=True, help="run folder (checkpoints, log, plot)")
    p.add_argument("--domains", default="nocs_self,nocs_ref",
                   help=f"comma-separated subset of {','.join(DOMAINS)}")
    p.add_argument("--steps", type=int, default=1000, help="total optimizer steps (a resumed run continues to it)")
    p.add_argument("--batch-size", type=int, default=None, help="per process (default: the config's)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the config's)")
    p.add_argument("--resume", action="store_true", help="continue from RUN/latest.json")
    p.add_argument("--val-data", default=None, help="held-out dataset folder for validation")
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--val-samples", type=int, default=16, help="validation items (default validator)")
    p.add_argument("--validate", default=None, metavar="MODULE:FUNC",
                   help="validation hook FUNC(pipeline, val_data) -> dict of metrics")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and checkpoint) after M minutes")
    p.add_argument("--save-every", type=int, default=500)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mixed-precision", default="auto", choices=("auto", "no", "fp16", "bf16"))
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--no-reference-grad", action="store_true",
                   help="run the reference write pass without gradients (cheaper)")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--lr-schedule", default="constant", choices=LR_SCHEDULES,
                   help="after warm-up: constant, or cosine to 5%% by --steps / --max-minutes")
    p.add_argument("--objects", type=int, default=None, metavar="N",
                   help="train on the samples of the data's first N objects only (data curves)")
    p.add_argument("--cell-size", type=int, default=None,
                   help="tile-cell size in pixels (default: the config's; must match the data)")
    p.add_argument("--min-timestep", type=int, default=0,
                   help="train only on timesteps >= this: focuses a model sampled in 1-2 steps (x0 "
                        "prediction from nearly pure noise) on that regime")
    p.add_argument("--vae", default=None, metavar="DIR", help="local AutoencoderKL folder (latent configs)")
    p.add_argument("--cache-data", action="store_true",
                   help="decode all items once into memory on the training device (GPU runs: no "
                        "loader work per step; ~0.35 MB per item at 64 px cells)")
    p.add_argument("--warmup-steps", type=int, default=None, metavar="N",
                   help="linear learning-rate warm-up (default: the config's; short for --init)")
    p.add_argument("--snapshot-every", type=int, default=0, metavar="N",
                   help="keep the EMA denoiser of every N-th step (a multiple of --save-every) in "
                        "RUN/snapshots/ for curves against steps")
    p.add_argument("--init", default=None, metavar="DIR",
                   help="fine-tune from a SparpDenoiser folder (e.g. sparp_ros/model/weights/tiny/"
                        "denoiser or RUN/final/denoiser): its config and weights (not when resuming)")
    p.add_argument("--init-unet", default=None, metavar="DIR",
                   help="initialise the UNet from a local diffusers UNet folder (e.g. SD-2.1's unet/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a denoiser config entry (VALUE is JSON), e.g. reference_attention=false")
    return p


def _overrides(items: Sequence[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise TrainError(f"--set takes KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def run(args: argparse.Namespace) -> int:
    from ..model.config import ModelLoadError
    from .dataset import DatasetError
    try:
        overrides = _overrides(args.set)
    except TrainError as e:
        print(f"sparp-ros train: error: {e}", file=sys.stderr)
        return 2
    targs = TrainArgs(
        config=args.config, data=args.data, out=args.out,
        domains=tuple(d.strip() for d in args.domains.split(",") if d.strip()), steps=args.steps,
        batch_size=args.batch_size, lr=args.lr, resume=args.resume, val_data=args.val_data,
        val_every=args.val_every, val_samples=args.val_samples, validate=args.validate,
        max_minutes=args.max_minutes, save_every=args.save_every, log_every=args.log_every,
        seed=args.seed, mixed_precision=args.mixed_precision, workers=args.workers,
        threads=args.threads, reference_grad=not args.no_reference_grad,
        gradient_checkpointing=args.gradient_checkpointing, vae=args.vae, init_unet=args.init_unet,
        init=args.init, snapshot_every=args.snapshot_every, warmup_steps=args.warmup_steps,
        cache_data=args.cache_data, objects=args.objects,
        denoiser_overrides=overrides, min_timestep=args.min_timestep,
        cell=args.cell_size, lr_schedule=args.lr_schedule)
    try:
        train(targs)
    except (TrainError, ModelLoadError, DatasetError) as e:
        print(f"sparp-ros train: error: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(list(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    sys.exit(main())
