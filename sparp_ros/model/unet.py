"""The SpaRP denoiser: a diffusers ``UNet2DConditionModel`` with local, global and domain conditioning.

``SparpDenoiser`` is a diffusers ``ModelMixin`` + ``ConfigMixin``: its constructor arguments are its
``config.json``; ``save_pretrained(dir)`` writes ``config.json`` +
``diffusion_pytorch_model.safetensors``; :meth:`SparpDenoiser.from_pretrained` reads them from a
*local* folder only, safetensors only (never unpickles), and raises :class:`ModelLoadError`
naming the file on anything wrong.

Conditioning (DESIGN §1):

* **local** — (a) reference attention (:mod:`.attention`): a write pass of the UNet over the
  noise-free condition tiles at timestep 0 stores every self-attention layer's states, the read pass
  over the noisy sample attends to them too; (b) optionally (``concat_cond``) the condition tiles
  and their mask are concatenated to the noisy input channels (pixel-aligned outputs such as the
  NOCS of the input views profit most);
* **global** — image-encoder tokens (:mod:`.encoder`) as ``encoder_hidden_states``;
* **domain** — ``num_class_embeds`` learned embeddings added to the timestep embedding.

Tensors are channels-first, values in [-1, 1], masks in {0, 1}; the tiled layout is 3S×2S
(:mod:`.tiling`). In latent space (``latent_factor`` 8) ``sample``/``cond`` are VAE latents while the
global encoder still sees the pixel tiles (``cond_image``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin, UNet2DConditionModel
from diffusers.configuration_utils import register_to_config

from .attention import ReferenceBank, ReferenceWriteDone, install_reference_attention
from .config import DOMAINS, ModelLoadError, domain_index
from .encoder import build_encoder

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
CONFIG_NAME = "config.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


@dataclass
class SparpCondition:
    """Everything the read passes need, computed once per condition (batch 1 broadcasts)."""

    tokens: torch.Tensor                      # [B, N, D] encoder_hidden_states
    extra: torch.Tensor | None                # [B, Cc+1, h, w] channel-concat input, or None
    labels: torch.Tensor                      # [B] domain indices
    reference: dict[str, torch.Tensor] | None  # stored self-attention states, or None


def load_safetensors_checked(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` file; :class:`ModelLoadError` naming the file if missing/corrupt/pickle."""
    path = Path(path)
    if path.suffix in PICKLE_SUFFIXES:
        raise ModelLoadError(f"refusing to load {path}: pickle-based weights are never loaded, "
                             "only .safetensors")
    if not path.is_file():
        pickles = sorted(p.name for p in path.parent.glob("*") if p.suffix in PICKLE_SUFFIXES) \
            if path.parent.is_dir() else []
        hint = f" (found pickle-based {pickles}, which are refused: convert to .safetensors)" if pickles else ""
        raise ModelLoadError(f"weights file not found: {path}{hint}")
    from safetensors.torch import load_file
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises SafetensorError / OSError / ValueError
        raise ModelLoadError(f"corrupt or unreadable safetensors file {path}: {e}") from e


def load_weights_into(module: torch.nn.Module, weights: Path, config: Path) -> torch.nn.Module:
    """Load ``weights`` (safetensors, checked) into ``module`` strictly; ModelLoadError naming
    both files when they do not fit each other. Returns the module in eval mode."""
    state = load_safetensors_checked(weights)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ModelLoadError(f"weights {weights} do not fit {config}: {e}") from e
    return module.eval()


def read_json_checked(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"config file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"unreadable JSON config {path}: {e}") from e
    if not isinstance(data, dict):
        raise ModelLoadError(f"config {path} must hold a JSON object, got {type(data).__name__}")
    return data


class SparpDenoiser(ModelMixin, ConfigMixin):
    config_name = CONFIG_NAME
    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        sample_size: Sequence[int] = (96, 64),
        target_channels: int = 3,
        cond_channels: int = 3,
        concat_cond: bool = True,
        reference_attention: bool = True,
        block_out_channels: Sequence[int] = (32, 64, 128, 128),
        layers_per_block: int = 2,
        down_block_types: Sequence[str] = ("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types: Sequence[str] = ("UpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        attention_head_dim: int | Sequence[int] = 4,
        cross_attention_dim: int = 128,
        norm_num_groups: int = 32,
        use_linear_projection: bool = False,
        num_domains: int = len(DOMAINS),
        encoder_type: str = "conv",
        encoder_channels: Sequence[int] = (32, 64, 128),
        encoder_grid: int = 2,
        clip_path: str | None = None,
        latent_factor: int = 1,
    ) -> None:
        super().__init__()
        in_channels = target_channels + (cond_channels + 1 if concat_cond else 0)
        self.unet = UNet2DConditionModel(
            sample_size=tuple(sample_size),
            in_channels=in_channels,
            out_channels=target_channels,
            down_block_types=tuple(down_block_types),
            up_block_types=tuple(up_block_types),
            block_out_channels=tuple(block_out_channels),
            layers_per_block=layers_per_block,
            attention_head_dim=attention_head_dim if isinstance(attention_head_dim, int)
            else tuple(attention_head_dim),
            cross_attention_dim=cross_attention_dim,
            norm_num_groups=norm_num_groups,
            use_linear_projection=use_linear_projection,
            class_embed_type=None,
            num_class_embeds=num_domains,
        )
        self.encoder = build_encoder(encoder_type, cross_attention_dim, tuple(encoder_channels),
                                     encoder_grid, clip_path)
        self.bank = ReferenceBank()
        self.reference_layers: list[str] = []
        if reference_attention:
            self.reference_layers = install_reference_attention(self.unet, self.bank)

    # ---------------------------------------------------------------- conditioning
    def _labels(self, domain: Any, batch: int, device: torch.device) -> torch.Tensor:
        if isinstance(domain, str):
            idx = [domain_index(domain)] * batch
        elif torch.is_tensor(domain):
            return domain.to(device=device, dtype=torch.long).reshape(-1).expand(batch) \
                if domain.numel() == 1 else domain.to(device=device, dtype=torch.long)
        elif isinstance(domain, int):
            idx = [domain] * batch
        else:
            idx = [domain_index(d) if isinstance(d, str) else int(d) for d in domain]
        if len(idx) != batch:
            raise ValueError(f"domain must be one value or {batch} values, got {len(idx)}")
        return torch.tensor(idx, dtype=torch.long, device=device)

    def _unet(self, x: torch.Tensor, timestep: Any, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.unet(x, timestep, encoder_hidden_states=tokens, class_labels=labels,
                         return_dict=False)[0]

    def prepare_condition(self, cond: torch.Tensor, cond_mask: torch.Tensor, num_views: Any,
                          domain: Any, cond_image: torch.Tensor | None = None,
                          reference_grad: bool = True) -> SparpCondition:
        """Global tokens, concat channels and the reference write pass for a batch of conditions.

        ``cond`` [B, cond_channels, h, w] in sample space; ``cond_mask`` [B, 1, H, W] at pixel
        resolution; ``cond_image`` [B, 3, H, W] pixel tiles for the encoder (default: ``cond``).
        ``reference_grad=False`` runs the write pass without gradients (cheaper training; the
        read pass's key/value projections still learn to use the stored states).
        """
        B, _, h, w = cond.shape
        image = cond if cond_image is None else cond_image
        if not torch.is_tensor(num_views):
            num_views = torch.tensor(num_views, device=cond.device)
        num_views = num_views.to(cond.device).reshape(-1).expand(B)
        mask_img = cond_mask.to(image.dtype)
        tokens = self.encoder(image, mask_img, num_views)
        labels = self._labels(domain, B, cond.device)
        extra = None
        if self.config.concat_cond:
            mask_s = mask_img if mask_img.shape[-2:] == (h, w) else F.interpolate(mask_img, (h, w), mode="area")
            extra = torch.cat([cond, mask_s * 2.0 - 1.0], dim=1)
        reference = None
        if self.reference_layers:
            ref_sample = self._fit_channels(cond)
            x = ref_sample if extra is None else torch.cat([ref_sample, extra], dim=1)
            self.bank.clear()
            self.bank.set_mode("write")
            try:
                with torch.set_grad_enabled(reference_grad and torch.is_grad_enabled()):
                    self._unet(x, torch.zeros(B, dtype=torch.long, device=cond.device), tokens, labels)
            except ReferenceWriteDone:
                pass
            finally:
                self.bank.set_mode("off")
            reference = self.bank.snapshot()
            self.bank.clear()
        return SparpCondition(tokens, extra, labels, reference)

    def _fit_channels(self, cond: torch.Tensor) -> torch.Tensor:
        """The condition as a "sample" for the write pass (zero-padded/truncated to target channels)."""
        c = self.config.target_channels
        if cond.shape[1] == c:
            return cond
        if cond.shape[1] > c:
            return cond[:, :c]
        return torch.cat([cond, cond.new_zeros(cond.shape[0], c - cond.shape[1], *cond.shape[2:])], dim=1)

    # ---------------------------------------------------------------- denoising
    def denoise(self, sample: torch.Tensor, timestep: Any, condition: SparpCondition) -> torch.Tensor:
        """One read pass: the model output (per the scheduler's prediction type) for ``sample``."""
        B = sample.shape[0]

        def bcast(t):
            return t if t is None or t.shape[0] == B else t.expand(B, *t.shape[1:])
        tokens, extra, labels = bcast(condition.tokens), bcast(condition.extra), bcast(condition.labels)
        x = sample if extra is None else torch.cat([sample, extra.to(sample.dtype)], dim=1)
        if condition.reference is not None:
            self.bank.load(condition.reference)
            self.bank.set_mode("read")
        try:
            return self._unet(x, timestep, tokens, labels)
        finally:
            self.bank.set_mode("off")
            self.bank.clear()

    def forward(self, sample: torch.Tensor, timestep: Any, cond: torch.Tensor, cond_mask: torch.Tensor,
                num_views: Any, domain: Any, cond_image: torch.Tensor | None = None,
                reference_grad: bool = True) -> torch.Tensor:
        """Training entry (one call, so DDP sees both passes): condition, then denoise."""
        return self.denoise(sample, timestep, self.prepare_condition(cond, cond_mask, num_views, domain,
                                                                     cond_image, reference_grad))

    # ---------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None, **_ignored: Any) -> "SparpDenoiser":
        """Load ``config.json`` + ``diffusion_pytorch_model.safetensors`` from a local folder.

        Never contacts a hub, never unpickles. Raises :class:`ModelLoadError` naming the file when
        the folder, config or weights are missing, corrupt, pickle-based, or do not fit the config.
        """
        path = Path(path)
        if not path.is_dir():
            raise ModelLoadError(f"model folder not found: {path}")
        config = read_json_checked(path / CONFIG_NAME)
        try:
            model = cls.from_config(config)
        except ModelLoadError:
            raise
        except Exception as e:
            raise ModelLoadError(f"config {path / CONFIG_NAME} does not build a {cls.__name__}: {e}") from e
        load_weights_into(model, path / WEIGHTS_NAME, path / CONFIG_NAME)
        return model.to(device=device, dtype=dtype) if (device or dtype) else model

    def init_from_unet(self, unet_dir: str | Path) -> list[str]:
        """Initialise the UNet from a local diffusers UNet folder (e.g. SD-2.1's ``unet/``).

        Tensors whose shapes match are copied; ``conv_in`` keeps the pretrained weights on the
        first input channels and zeros on the extra (condition) channels. Returns the names of
        tensors left at their fresh initialisation.
        """
        state = load_safetensors_checked(Path(unet_dir) / WEIGHTS_NAME)
        own = self.unet.state_dict()
        left = []
        with torch.no_grad():
            for name, t in own.items():
                src = state.get(name)
                if src is None:
                    left.append(name)
                elif src.shape == t.shape:
                    t.copy_(src)
                elif name == "conv_in.weight" and src.shape[0] == t.shape[0] and src.shape[1] <= t.shape[1]:
                    t.zero_()
                    t[:, :src.shape[1]].copy_(src)
                else:
                    left.append(name)
        return left
