"""Global conditioning: image encoders that turn the tiled input views into ``encoder_hidden_states``.

* :class:`ConvImageEncoder` (default, trained with the model): a small strided conv net over the
  tiled views + mask, pooled to a (3g)×(2g) grid of tokens with learned positions, plus one learned
  token per view count (1…6).
* :class:`ClipImageEncoder` (option): a frozen CLIP vision tower from a *local* folder
  (``transformers``), one token per cell, projected to the UNet's cross-attention width, plus the
  view-count token. Its frozen weights stay outside the denoiser's state dict (not shipped).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelLoadError
from .tiling import COLS, MAX_VIEWS, NUM_CELLS, ROWS



def _groups(c: int) -> int:
    for g in (32, 16, 8, 4, 2, 1):
        if c % g == 0:
            return g
    return 1


class ConvImageEncoder(nn.Module):
    """Tiled views (+ mask) → ``[B, 1 + 6·g², dim]`` tokens (view-count token first)."""

    def __init__(self, out_dim: int, channels: tuple[int, ...] = (32, 64, 128), grid: int = 2,
                 in_channels: int = 4, max_views: int = MAX_VIEWS) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.GroupNorm(_groups(c), c), nn.SiLU(),
                       nn.Conv2d(c, c, 3, padding=1), nn.GroupNorm(_groups(c), c), nn.SiLU()]
            c_in = c
        self.convs = nn.Sequential(*layers)
        self.grid = (ROWS * grid, COLS * grid)
        self.proj = nn.Linear(c_in, out_dim)
        self.pos = nn.Parameter(torch.randn(1, self.grid[0] * self.grid[1], out_dim) * 0.02)
        self.count = nn.Embedding(max_views + 1, out_dim)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, image: torch.Tensor, mask: torch.Tensor, num_views: torch.Tensor) -> torch.Tensor:
        x = self.convs(torch.cat([image, mask * 2.0 - 1.0], dim=1))
        x = F.adaptive_avg_pool2d(x, self.grid).flatten(2).transpose(1, 2)   # [B, N, C]
        tokens = self.proj(x) + self.pos
        count = self.count(num_views.long().clamp(0, self.count.num_embeddings - 1))[:, None]
        return self.norm(torch.cat([count, tokens], dim=1))


class ClipImageEncoder(nn.Module):
    """Frozen local CLIP vision tower, one projected token per cell, plus the view-count token."""

    MEAN = (0.48145466, 0.4578275, 0.40821073)
    STD = (0.26862954, 0.26130258, 0.27577711)

    def __init__(self, out_dim: int, clip_path: str, max_views: int = MAX_VIEWS) -> None:
        super().__init__()
        path = Path(clip_path)
        if not path.is_dir():
            raise ModelLoadError(f"CLIP image encoder folder not found: {path}")
        try:
            from transformers import CLIPVisionModelWithProjection
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ModelLoadError(f"encoder_type='clip' needs the `transformers` package ({e}); "
                                 f"folder {path}") from e
        if not list(path.glob("*.safetensors")):
            raise ModelLoadError(f"no .safetensors weights in CLIP folder {path} (pickle files are refused)")
        try:
            clip = CLIPVisionModelWithProjection.from_pretrained(path, local_files_only=True,
                                                                 use_safetensors=True)
        except Exception as e:  # pragma: no cover
            raise ModelLoadError(f"cannot load the CLIP image encoder from {path}: {e}") from e
        clip.requires_grad_(False).eval()
        self._clip = [clip]                      # a list: kept out of state_dict / parameters()
        self.proj = nn.Linear(clip.config.projection_dim, out_dim)
        self.pos = nn.Parameter(torch.randn(1, NUM_CELLS, out_dim) * 0.02)
        self.count = nn.Embedding(max_views + 1, out_dim)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, image: torch.Tensor, mask: torch.Tensor, num_views: torch.Tensor) -> torch.Tensor:
        clip = self._clip[0]
        if next(clip.parameters()).device != image.device:
            clip.to(image.device)
        B, _, H, W = image.shape
        S = H // ROWS
        cells = image.unfold(2, S, S).unfold(3, S, S)                 # B,3,ROWS,COLS,S,S
        cells = cells.permute(0, 2, 3, 1, 4, 5).reshape(B * NUM_CELLS, 3, S, S)
        cells = F.interpolate((cells + 1) / 2, size=(224, 224), mode="bilinear", align_corners=False)
        mean = cells.new_tensor(self.MEAN)[None, :, None, None]
        std = cells.new_tensor(self.STD)[None, :, None, None]
        with torch.no_grad():
            emb = clip(pixel_values=((cells - mean) / std).to(clip.dtype)).image_embeds.float()
        tokens = self.proj(emb.view(B, NUM_CELLS, -1)) + self.pos
        count = self.count(num_views.long().clamp(0, self.count.num_embeddings - 1))[:, None]
        return self.norm(torch.cat([count, tokens], dim=1))


def build_encoder(encoder_type: str, out_dim: int, channels: tuple[int, ...], grid: int,
                  clip_path: str | None) -> nn.Module:
    if encoder_type == "conv":
        return ConvImageEncoder(out_dim, tuple(channels), grid)
    if encoder_type == "clip":
        if not clip_path:
            raise ModelLoadError("encoder_type='clip' needs clip_path, a local CLIP vision folder")
        return ClipImageEncoder(out_dim, clip_path)
    raise ValueError(f"encoder_type must be 'conv' or 'clip', got {encoder_type!r}")
