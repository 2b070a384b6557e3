"""What the pipeline's small CNNs share: their input (a cell as the diffusion model sees it), their
conv stage, and a weights folder of ``config.json`` + ``model.safetensors`` (never pickle)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from .config import ModelLoadError
from .unet import load_safetensors_checked, read_json_checked

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def conv_stage(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 convolutions with GroupNorm and SiLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(8, c_out), nn.SiLU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(8, c_out), nn.SiLU())


def cells_to_input(images: np.ndarray, masks: np.ndarray) -> torch.Tensor:
    """Cells (N×S×S×3 uint8, N×S×S bool/0-1) → the network input [N, 4, S, S]: RGB in [-1, 1]
    with the background 0 (grey, as the denoiser's condition), the mask as ±1."""
    rgb = torch.from_numpy(np.ascontiguousarray(images)).float().permute(0, 3, 1, 2) / 127.5 - 1.0
    m = torch.from_numpy(np.ascontiguousarray(masks).astype(np.float32))[:, None]
    rgb = torch.where(m > 0.5, rgb, torch.zeros_like(rgb))
    return torch.cat([rgb, m * 2.0 - 1.0], dim=1)


def augment_brightness(x: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """Scale the RGB of inputs from ``cells_to_input`` by ``gain`` [N,1,1,1] (lighting changes),
    background kept at 0."""
    out = x.clone()
    fg = x[:, 3:] > 0
    out[:, :3] = torch.where(fg, (x[:, :3] * gain).clamp(-1, 1), torch.zeros_like(x[:, :3]))
    return out


def save_net(folder: str | Path, net: nn.Module, config: dict) -> None:
    from safetensors.torch import save_file
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
              str(folder / WEIGHTS_FILE))
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n")


def load_net(folder: str | Path, build: Callable[[dict], nn.Module], required: tuple[str, ...]
             ) -> tuple[nn.Module, dict]:
    """(network in eval mode, config) from a folder; :class:`ModelLoadError` naming the file on any
    problem (missing, corrupt, pickle, a config without the integer keys ``required``, weights
    that do not fit the config)."""
    folder = Path(folder)
    config = read_json_checked(folder / CONFIG_FILE)
    try:
        for key in required:
            int(config[key])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"{folder / CONFIG_FILE}: needs integer {', '.join(repr(k) for k in required)} "
                             f"({exc!r})") from exc
    net = build(config)
    state = load_safetensors_checked(folder / WEIGHTS_FILE)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(f"{folder / WEIGHTS_FILE} does not fit {folder / CONFIG_FILE}: {exc}") from exc
    return net.eval(), config
