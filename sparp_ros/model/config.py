"""Named model configurations: ``tiny`` (CPU, pixel space) and ``sd21`` (GPU, SD-2.1 latent space).

One code path, different numbers. A :class:`ModelConfig` holds

* ``denoiser`` — the constructor arguments of :class:`~sparp_ros.model.unet.SparpDenoiser`, which
  are exactly its saved ``config.json`` (STYLE 4);
* ``scheduler`` — the diffusers noise-scheduler config (saved as ``scheduler_config.json``);
* sampling defaults (``sampler``, ``num_inference_steps``) and the latent space (``vae_path``,
  ``latent_scale``; ``None`` = pixel space: the "latent" is the tiled 3S×2S image itself);
* training defaults (learning rate, batch size, EMA decay, loss weights, domain mix).

Domains (the switcher, a learned embedding added to the timestep embedding):

* ``nocs_ref``  — NOCS of every input view in view 0's canonical frame, tiled like the input
  (SpaRP's cross-view mode);
* ``nocs_self`` — each input view's NOCS in its own gravity-aligned frame (per-view mode);
* ``fixed_rgb`` — the six fixed views (Zero123++ v1.2 poses), RGB on white (as the data engine);
* ``fixed_nocs`` — NOCS of the six fixed views in view 0's frame (our extension; background -1
  gives their silhouettes).
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, replace
from typing import Any

DOMAINS = ("nocs_ref", "nocs_self", "fixed_rgb", "fixed_nocs")
"""Domain names, in the order of their class-embedding index."""

NOCS_DOMAINS = ("nocs_ref", "nocs_self", "fixed_nocs")

NOCS_BACKGROUND = -1.0
"""NOCS background value in [-1, 1] (NOCS (0,0,0), a corner no surface point reaches)."""

NOCS_FOREGROUND_THRESHOLD = 0.5 * (3 ** 0.5 / 2 - 0.5)
"""A NOCS pixel farther than this (NOCS units) from the background corner is object; the same
value as ``dataset.NOCS_FOREGROUND_THRESHOLD`` (kept here so that inference does not import the
data engine)."""

COND_BACKGROUND = 0.0
"""Condition tiles: pixels outside the view's mask and blank cells are grey (0), as the data
engine's default ``cond_background='grey'``."""


class ModelLoadError(RuntimeError):
    """Weights or configuration cannot be loaded (missing, corrupt, not safetensors, mismatched).

    The message names the file or folder. Raised at the model-loading boundary only; the library
    error underneath is chained as ``__cause__``.
    """


def domain_index(domain: str) -> int:
    """Class-embedding index of a domain name; ``ValueError`` names the value when unknown."""
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    return DOMAINS.index(domain)


@dataclass
class TrainDefaults:
    learning_rate: float = 2e-4
    batch_size: int = 16
    weight_decay: float = 1e-2
    warmup_steps: int = 200
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    fg_weight: float = 1.0
    """Per-pixel loss weight on the target's foreground (NOCS mask / fixed-view alpha)."""
    bg_weight: float = 0.1
    """Per-pixel loss weight on the background (teaches the silhouette at low cost)."""
    domain_weights: dict[str, float] = field(default_factory=lambda: {
        "nocs_ref": 1.0, "nocs_self": 1.0, "fixed_rgb": 0.5, "fixed_nocs": 0.5})
    """Fraction of training samples drawn for each requested domain (normalised over them)."""


@dataclass
class ModelConfig:
    name: str
    cell: int
    """S: pixels per tile cell; the tiled image is 3S×2S (height × width)."""
    denoiser: dict[str, Any]
    scheduler: dict[str, Any]
    sampler: str = "ddim"
    """``ddim`` or ``dpmsolver++``."""
    num_inference_steps: int = 8
    vae_path: str | None = None
    """Local folder of an SD ``AutoencoderKL`` (latent space); ``None`` = pixel space."""
    latent_scale: float | None = None
    train: TrainDefaults = field(default_factory=TrainDefaults)

    @property
    def latent(self) -> bool:
        return self.denoiser.get("latent_factor", 1) > 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _tiny() -> ModelConfig:
    S = 32
    return ModelConfig(
        name="tiny",
        cell=S,
        denoiser=dict(
            sample_size=(3 * S, 2 * S),
            target_channels=3,
            cond_channels=3,
            concat_cond=True,
            reference_attention=True,
            block_out_channels=(32, 64, 128, 128),
            layers_per_block=2,
            down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
            attention_head_dim=4,          # diffusers' name: the number of heads per attention layer
            cross_attention_dim=128,
            norm_num_groups=32,
            encoder_type="conv",
            encoder_channels=(32, 64, 128),
            encoder_grid=2,
            clip_path=None,
            latent_factor=1,
        ),
        scheduler=dict(
            num_train_timesteps=1000,
            beta_schedule="squaredcos_cap_v2",
            prediction_type="sample",        # x0: best few-step quality for regression-like NOCS
            timestep_spacing="trailing",
            rescale_betas_zero_snr=True,     # the first step starts from pure noise
            clip_sample=False,
        ),
        sampler="ddim",
        # 1 step (x0 from pure noise): per-view error on the 25 shared objects 17.2° vs 17.3° at 8
        # steps and 16.5° at 2, 8x less compute (runs/exp_perview.py, first shipped checkpoint)
        num_inference_steps=1,
        train=TrainDefaults(batch_size=16, learning_rate=2e-4),
    )


def _sd21() -> ModelConfig:
    S = 320
    return ModelConfig(
        name="sd21",
        cell=S,
        denoiser=dict(
            sample_size=(3 * S // 8, 2 * S // 8),
            target_channels=4,
            cond_channels=4,
            concat_cond=True,
            reference_attention=True,
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                              "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                            "CrossAttnUpBlock2D"),
            attention_head_dim=(5, 10, 20, 20),
            cross_attention_dim=1024,
            norm_num_groups=32,
            use_linear_projection=True,
            encoder_type="conv",
            encoder_channels=(64, 128, 256, 512, 512),
            encoder_grid=4,
            clip_path=None,
            latent_factor=8,
        ),
        scheduler=dict(
            num_train_timesteps=1000,
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            prediction_type="v_prediction",
            timestep_spacing="trailing",
            rescale_betas_zero_snr=True,
            clip_sample=False,
        ),
        sampler="dpmsolver++",
        num_inference_steps=10,
        vae_path=None,
        latent_scale=0.18215,
        train=TrainDefaults(batch_size=8, learning_rate=5e-5, ema_decay=0.9995),
    )


_FACTORIES = {"tiny": _tiny, "sd21": _sd21}
CONFIG_NAMES = tuple(_FACTORIES)


def get_config(name: str, denoiser: dict[str, Any] | None = None, **overrides: Any) -> ModelConfig:
    """A fresh copy of a named config; ``denoiser`` entries and top-level fields override it.

    ``ValueError`` names the value when the name or an override field is unknown.
    """
    if name not in _FACTORIES:
        raise ValueError(f"config must be one of {CONFIG_NAMES}, got {name!r}")
    cfg = _FACTORIES[name]()
    if denoiser:
        cfg.denoiser = {**copy.deepcopy(cfg.denoiser), **denoiser}
    known = set(ModelConfig.__dataclass_fields__)
    bad = set(overrides) - known
    if bad:
        raise ValueError(f"unknown config fields {sorted(bad)}; known: {sorted(known)}")
    if "scheduler" in overrides:
        overrides["scheduler"] = {**cfg.scheduler, **overrides["scheduler"]}
    if "cell" in overrides and not (denoiser and "sample_size" in denoiser):
        # the denoiser's input is the 3×2 tile (÷ the VAE factor in latent space): it follows the cell
        cell, factor = int(overrides["cell"]), cfg.denoiser.get("latent_factor", 1)
        if cell < 8 or cell % (8 * factor):
            raise ValueError(f"cell must be a multiple of {8 * factor} pixels, got {cell}")
        overrides["denoiser"] = {**cfg.denoiser, "sample_size": (3 * cell // factor, 2 * cell // factor)}
    return replace(cfg, **overrides)
