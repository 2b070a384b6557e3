"""Sampling: ``SparpDiffusionPipeline`` (few-step, seeded, K hypotheses in one batch) and the
``model`` NOCS backend built on it.

A saved pipeline is a local folder (never a hub, never a pickle)::

    pipeline.json                  name, cell, sampler, steps, latent scale, format version
    denoiser/config.json           SparpDenoiser constructor arguments
    denoiser/diffusion_pytorch_model.safetensors
    scheduler/scheduler_config.json
    vae/config.json + vae/diffusion_pytorch_model.safetensors   (latent configs only)

Loading raises :class:`ModelLoadError` naming the file for anything missing, corrupt or pickle-based.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .interface import PER_VIEW_FRAME, REFERENCE_FRAME, BackendError, CellView, NocsPrediction
from .config import (COND_BACKGROUND, DOMAINS, NOCS_FOREGROUND_THRESHOLD, ModelConfig, ModelLoadError,
                     get_config)
from .tiling import COLS, NUM_CELLS, ROWS, tile, untile
from .unet import (CONFIG_NAME, WEIGHTS_NAME, SparpDenoiser, load_safetensors_checked,
                   read_json_checked)

PIPELINE_FILE = "pipeline.json"
FORMAT_VERSION = 1
SAMPLERS = ("ddim", "dpmsolver++")


def make_scheduler(sampler: str, scheduler_config: dict[str, Any]):
    """A diffusers scheduler for sampling (``ddim``: eta 0, deterministic; ``dpmsolver++``)."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler
    cfg = dict(scheduler_config)
    if sampler == "ddim":
        return DDIMScheduler.from_config(cfg)
    if sampler == "dpmsolver++":
        cfg.pop("clip_sample", None)
        return DPMSolverMultistepScheduler.from_config({**cfg, "algorithm_type": "dpmsolver++",
                                                        "solver_order": 2, "final_sigmas_type": "zero"})
    raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")


def _load_vae(path: Path, device=None):
    from diffusers import AutoencoderKL
    config = read_json_checked(path / CONFIG_NAME)
    try:
        vae = AutoencoderKL.from_config(config)
    except Exception as e:
        raise ModelLoadError(f"config {path / CONFIG_NAME} does not build an AutoencoderKL: {e}") from e
    try:
        vae.load_state_dict(load_safetensors_checked(path / WEIGHTS_NAME), strict=True)
    except RuntimeError as e:
        raise ModelLoadError(f"weights {path / WEIGHTS_NAME} do not fit {path / CONFIG_NAME}: {e}") from e
    vae.requires_grad_(False).eval()
    return vae.to(device) if device is not None else vae


class SparpDiffusionPipeline:
    """Condition tiles → K sampled output tiles of one domain.

    ``denoiser`` (:class:`SparpDenoiser`), a diffusers ``scheduler``, the cell size ``cell`` (S);
    latent configs also carry an SD ``vae`` and its ``latent_scale``.
    """

    def __init__(self, denoiser: SparpDenoiser, scheduler, cell: int, sampler: str = "ddim",
                 num_inference_steps: int = 8, vae=None, latent_scale: float | None = None,
                 name: str = "") -> None:
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        self.denoiser = denoiser
        self.scheduler = scheduler
        self.cell = int(cell)
        self.sampler = sampler
        self.num_inference_steps = int(num_inference_steps)
        self.vae = vae
        self.latent_scale = latent_scale
        self.name = name

    # ------------------------------------------------------------------ construction / IO
    @classmethod
    def from_config(cls, config: ModelConfig | str, denoiser: SparpDenoiser | None = None,
                    vae=None) -> "SparpDiffusionPipeline":
        """A pipeline for a named/explicit config; a fresh (random) denoiser unless one is given.
        Latent configs load the VAE from ``config.vae_path`` unless ``vae`` is given."""
        cfg = get_config(config) if isinstance(config, str) else config
        if denoiser is None:
            denoiser = SparpDenoiser(**cfg.denoiser)
        if cfg.latent and vae is None:
            if not cfg.vae_path:
                raise ModelLoadError(f"config {cfg.name!r} works in latent space and needs vae_path, "
                                     "a local AutoencoderKL folder (e.g. SD-2.1's vae/)")
            vae = _load_vae(Path(cfg.vae_path))
        return cls(denoiser, make_scheduler(cfg.sampler, cfg.scheduler), cfg.cell, cfg.sampler,
                   cfg.num_inference_steps, vae, cfg.latent_scale if cfg.latent else None, cfg.name)

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.denoiser.save_pretrained(path / "denoiser", safe_serialization=True)
        self.scheduler.save_config(path / "scheduler")
        if self.vae is not None:
            self.vae.save_pretrained(path / "vae", safe_serialization=True)
        meta = {"format": "sparp-pipeline", "version": FORMAT_VERSION, "name": self.name,
                "cell": self.cell, "sampler": self.sampler,
                "num_inference_steps": self.num_inference_steps, "latent_scale": self.latent_scale,
                "vae": "vae" if self.vae is not None else None}
        (path / PIPELINE_FILE).write_text(json.dumps(meta, indent=1))

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None) -> "SparpDiffusionPipeline":
        """Load a saved pipeline folder (local, safetensors only); :class:`ModelLoadError` on failure."""
        path = Path(path)
        if not path.is_dir():
            raise ModelLoadError(f"model folder not found: {path}")
        meta = read_json_checked(path / PIPELINE_FILE)
        if meta.get("format") != "sparp-pipeline" or meta.get("version") != FORMAT_VERSION:
            raise ModelLoadError(f"{path / PIPELINE_FILE} is not a sparp-pipeline v{FORMAT_VERSION} file")
        denoiser = SparpDenoiser.from_pretrained(path / "denoiser", device=device, dtype=dtype)
        sched_cfg = read_json_checked(path / "scheduler" / "scheduler_config.json")
        try:
            scheduler = make_scheduler(meta["sampler"], sched_cfg)
        except (KeyError, ValueError, TypeError) as e:
            raise ModelLoadError(f"bad sampler/scheduler in {path}: {e}") from e
        vae = _load_vae(path / meta["vae"], device) if meta.get("vae") else None
        return cls(denoiser, scheduler, meta["cell"], meta["sampler"], meta["num_inference_steps"],
                   vae, meta.get("latent_scale"), meta.get("name", ""))

    def to(self, device: str | torch.device) -> "SparpDiffusionPipeline":
        self.denoiser.to(device)
        if self.vae is not None:
            self.vae.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.denoiser.parameters()).dtype

    # ------------------------------------------------------------------ sampling
    def _check(self, cond: torch.Tensor, cond_mask: torch.Tensor, num_views: int, domain: str,
               num_samples: int, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        S = self.cell
        shape = (3, ROWS * S, COLS * S)
        if not torch.is_tensor(cond):
            raise TypeError(f"cond must be a torch tensor, got {type(cond).__name__}")
        if cond.dim() == 4 and cond.shape[0] == 1:
            cond = cond[0]
        if tuple(cond.shape) != shape:
            raise ValueError(f"cond must have shape {shape} (tiled 3x2 cells of {S} px), got {tuple(cond.shape)}")
        if not torch.is_tensor(cond_mask):
            raise TypeError(f"cond_mask must be a torch tensor, got {type(cond_mask).__name__}")
        if cond_mask.dim() == 4 and cond_mask.shape[0] == 1:
            cond_mask = cond_mask[0]
        if cond_mask.dim() == 2:
            cond_mask = cond_mask[None]
        if tuple(cond_mask.shape) != (1,) + shape[1:]:
            raise ValueError(f"cond_mask must have shape {(1,) + shape[1:]}, got {tuple(cond_mask.shape)}")
        if not 1 <= int(num_views) <= NUM_CELLS:
            raise ValueError(f"num_views must be in 1..{NUM_CELLS}, got {num_views}")
        if domain not in DOMAINS:
            raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if int(steps) < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {steps}")
        return cond, cond_mask

    def _encode(self, image: torch.Tensor) -> torch.Tensor:
        if self.vae is None:
            return image
        return self.vae.encode(image).latent_dist.mode() * self.latent_scale

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        if self.vae is None:
            return latents
        return self.vae.decode(latents / self.latent_scale).sample

    @torch.inference_mode()
    def __call__(self, cond: torch.Tensor, cond_mask: torch.Tensor, num_views: int,
                 domain: str = "nocs_ref", num_samples: int = 1, num_inference_steps: int | None = None,
                 generator: torch.Generator | None = None, seed: int | None = None) -> torch.Tensor:
        """Sample ``num_samples`` outputs for one condition: a float32 tensor [K, 3, 3S, 2S] in [-1, 1].

        ``cond`` [3, 3S, 2S] tiled views in [-1, 1] (background and blank cells grey 0),
        ``cond_mask`` [1, 3S, 2S] (0/1), ``num_views`` 1…6, ``domain`` one of ``DOMAINS``.
        Deterministic for a given ``generator`` state or ``seed`` (default seed 0).
        """
        steps = self.num_inference_steps if num_inference_steps is None else num_inference_steps
        # 1. check the inputs
        cond, cond_mask = self._check(cond, cond_mask, num_views, domain, num_samples, steps)
        device, dtype = self.device, self.dtype
        if generator is None:
            generator = torch.Generator("cpu").manual_seed(0 if seed is None else int(seed))
        image = cond[None].to(device, dtype)
        mask = cond_mask[None].to(device, dtype)
        # 2. the condition in sample space, its tokens and reference states (once, batch 1)
        cond_latent = self._encode(image)
        condition = self.denoiser.prepare_condition(cond_latent, mask, int(num_views), domain,
                                                    cond_image=image)
        # 3. K initial noises in one batch (the mixture of experts)
        shape = (int(num_samples), self.denoiser.config.target_channels) + tuple(cond_latent.shape[-2:])
        latents = torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32)
        latents = latents.to(device, dtype) * self.scheduler.init_noise_sigma
        # 4. the few-step denoising loop
        self.scheduler.set_timesteps(int(steps), device=device)
        for t in self.scheduler.timesteps:
            x = self.scheduler.scale_model_input(latents, t)
            out = self.denoiser.denoise(x, t, condition)
            latents = self.scheduler.step(out, t, latents, generator=generator, return_dict=False)[0]
        # 5. back to pixels, clamped
        return self._decode(latents).float().clamp(-1.0, 1.0)


# ---------------------------------------------------------------------- CellViews ⇄ tiles
def views_to_condition(images: list[np.ndarray], masks: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell images (SxSx3 uint8) and masks (SxS bool) → (cond [3,3S,2S], cond_mask [1,3S,2S]).

    Pixels outside a mask become grey (0), as the data engine's ``cond_background='grey'``.
    """
    if not 1 <= len(images) <= NUM_CELLS or len(images) != len(masks):
        raise ValueError(f"need 1..{NUM_CELLS} images with one mask each, got {len(images)} images "
                         f"and {len(masks)} masks")
    S = images[0].shape[0]
    cells, cell_masks = [], []
    for i, (im, m) in enumerate(zip(images, masks)):
        if im.shape != (S, S, 3) or m.shape != (S, S):
            raise ValueError(f"view {i}: image must be {S}x{S}x3 and mask {S}x{S}, got {im.shape} and {m.shape}")
        m = m.astype(bool)
        x = torch.from_numpy(im.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)
        mt = torch.from_numpy(m.astype(np.float32))[None]
        cells.append(torch.where(mt > 0, x, torch.full_like(x, COND_BACKGROUND)))
        cell_masks.append(mt)
    return tile(cells, channels_last=False), tile(cell_masks, channels_last=False)


def split_nocs_tiles(x: torch.Tensor, num_views: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Tiled NOCS output [3,3S,2S] in [-1,1] → per view (SxSx3 float32 NOCS in [0,1], SxS bool mask)."""
    n = ((x.clamp(-1, 1) + 1) / 2).float()
    fg = n.norm(dim=0, keepdim=True) > NOCS_FOREGROUND_THRESHOLD
    return [(c.permute(1, 2, 0).cpu().numpy(), m[0].cpu().numpy())
            for c, m in zip(untile(n, channels_last=False)[:num_views],
                            untile(fg, channels_last=False)[:num_views])]


class ModelNocsBackend:
    """The ``model`` NOCS backend: :class:`SparpDiffusionPipeline` behind ``predict(views)``.

    ``domain='nocs_ref'`` returns every view's NOCS in view 0's frame (tiled mode);
    ``'nocs_self'`` returns each view's NOCS in its own gravity-aligned frame (per-view mode: the
    caller recovers the azimuths). ``num_samples`` hypotheses are sampled in one batch;
    ``predict`` returns the first, ``predict_hypotheses`` all of them. Views must be
    ``cell``×``cell`` (the pipeline's crop size). Failures raise ``BackendError``; a weights
    problem carries the ``ModelLoadError`` naming the file as its cause.
    """

    name = "model"

    def __init__(self, weights: str | Path, device: str = "cpu", domain: str = "nocs_ref",
                 num_samples: int = 1, num_inference_steps: int | None = None, seed: int = 0) -> None:
        if domain not in ("nocs_ref", "nocs_self"):
            raise BackendError(f"the model backend's domain must be 'nocs_ref' or 'nocs_self', got {domain!r}")
        try:
            self.pipeline = SparpDiffusionPipeline.from_pretrained(weights, device=device)
        except ModelLoadError as e:
            raise BackendError(f"cannot load the model backend's weights: {e}") from e
        self.cell = self.pipeline.cell
        self.domain, self.num_samples, self.steps, self.seed = domain, num_samples, num_inference_steps, seed

    def predict_hypotheses(self, views: list[CellView],
                           num_samples: int | None = None) -> list[list[NocsPrediction]]:
        """``num_samples`` lists (hypotheses) of one ``NocsPrediction`` per view."""
        if not 1 <= len(views) <= NUM_CELLS:
            raise BackendError(f"the model takes 1..{NUM_CELLS} views, got {len(views)}")
        frame = REFERENCE_FRAME if self.domain == "nocs_ref" else PER_VIEW_FRAME
        for i, v in enumerate(views):
            if v.image.shape[:2] != (self.cell, self.cell):
                raise BackendError(f"view {i}: the model needs {self.cell}x{self.cell} cells, got "
                                   f"{v.image.shape[:2]}")
        cond, cond_mask = views_to_condition([v.image for v in views], [v.mask for v in views])
        out = self.pipeline(cond, cond_mask, len(views), self.domain,
                            num_samples=num_samples or self.num_samples,
                            num_inference_steps=self.steps, seed=self.seed)
        hyps = []
        for k in range(out.shape[0]):
            per_view = split_nocs_tiles(out[k], len(views))
            hyps.append([NocsPrediction(nocs=n, mask=m & v.mask.astype(bool), frame=frame)
                         for (n, m), v in zip(per_view, views)])
        return hyps

    def predict(self, views: list[CellView]) -> list[NocsPrediction]:
        return self.predict_hypotheses(views)[0]

