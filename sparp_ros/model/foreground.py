"""The class-agnostic foreground network of ``segment_learned``: a small U-Net that gives, per
pixel of a reduced image (long side ``INPUT_LONG_SIDE``), the probability that it belongs to a
whole object standing in view (the objects on a table, not the table, the room behind it or an
object cut off by the image border).

Input: RGB normalised per image and two coordinate channels (x, y in [-1, 1]: where the image
centre is, which a photograph's framing says about what matters). Output: one logit per pixel
at the input's resolution (the decoder stops at half resolution; the last step is bilinear).
Sides must be multiples of ``SIDE_MULTIPLE``. A weights folder is ``config.json`` (the
constructor's arguments) + ``model.safetensors``; :class:`ModelLoadError` names what is wrong.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelLoadError
from .unet import load_safetensors_checked, read_json_checked

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INPUT_LONG_SIDE = 160
SIDE_MULTIPLE = 32
STAGE_MULTIPLIERS = (1, 2, 4, 6, 8)          # × width, at 1/2, 1/4, 1/8, 1/16, 1/32


def _block(c_in: int, c_out: int, stride: int = 1, convs: int = 2) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, stride=stride if i == 0 else 1,
                             padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class ForegroundNet(nn.Module):
    """U-Net, five stages (stride 2 each; one convolution at half resolution, two below), a
    global context (the bottom's mean) added at the bottom, the decoder back to half resolution."""

    def __init__(self, width: int = 16, in_channels: int = 5) -> None:
        super().__init__()
        self.config = {"width": int(width), "in_channels": int(in_channels)}
        ch = [width * m for m in STAGE_MULTIPLIERS]
        self.down = nn.ModuleList()
        c = in_channels
        for i, c_out in enumerate(ch):
            self.down.append(_block(c, c_out, stride=2, convs=1 if i == 0 else 2))
            c = c_out
        self.context = nn.Sequential(nn.Linear(ch[-1], ch[-1]), nn.ReLU(),
                                     nn.Linear(ch[-1], ch[-1]))
        self.up = nn.ModuleList(_block(ch[i + 1] + ch[i], ch[i], convs=1 if i == 0 else 2)
                                for i in reversed(range(len(ch) - 1)))
        self.head = nn.Conv2d(ch[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % SIDE_MULTIPLE or w % SIDE_MULTIPLE:
            raise ValueError(f"input sides must be multiples of {SIDE_MULTIPLE}, got {h}x{w}")
        skips = []
        for stage in self.down:
            x = stage(x)
            skips.append(x)
        x = x + self.context(x.mean(dim=(2, 3)))[:, :, None, None]
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return F.interpolate(self.head(x), size=(h, w), mode="bilinear", align_corners=False)

    @staticmethod
    def to_input(rgb01: np.ndarray) -> torch.Tensor:
        """N×H×W×3 float in [0, 1] → [N, 5, H, W]: RGB normalised per image and channel
        (mean 0, std 1: exposure and white balance do not matter) and the x, y coordinates in
        [-1, 1] (channels 3 and 4)."""
        x = torch.from_numpy(np.ascontiguousarray(rgb01, dtype=np.float32)).permute(0, 3, 1, 2)
        n, _, h, w = x.shape
        x = (x - x.mean(dim=(2, 3), keepdim=True)) / (x.std(dim=(2, 3), keepdim=True) + 0.02)
        ys = torch.linspace(-1, 1, h).view(1, 1, h, 1).expand(n, 1, h, w)
        xs = torch.linspace(-1, 1, w).view(1, 1, 1, w).expand(n, 1, h, w)
        return torch.cat([x, xs, ys], dim=1)

    def save_pretrained(self, folder: str | Path) -> None:
        from safetensors.torch import save_file
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_FILE).write_text(json.dumps(self.config, indent=1) + "\n")
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()},
                  str(folder / WEIGHTS_FILE))

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "ForegroundNet":
        """Load a weights folder; :class:`ModelLoadError` naming the file when it cannot."""
        folder = Path(folder)
        config = read_json_checked(folder / CONFIG_FILE)
        try:
            net = cls(**config)
        except TypeError as exc:
            raise ModelLoadError(f"{folder / CONFIG_FILE}: not a ForegroundNet config: {exc}"
                                 ) from exc
        state = load_safetensors_checked(folder / WEIGHTS_FILE)
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelLoadError(f"{folder / WEIGHTS_FILE} does not match {config}: {exc}") from exc
        return net.eval()


def input_size(width: int, height: int, long_side: int = INPUT_LONG_SIDE) -> tuple[int, int]:
    """(w, h) of the network's input for an image: long side ``long_side``, both sides rounded to
    multiples of SIDE_MULTIPLE (the aspect ratio changes by a few percent at most)."""
    s = long_side / max(width, height)
    def r(v: float) -> int:
        return max(SIDE_MULTIPLE, int(round(v * s / SIDE_MULTIPLE)) * SIDE_MULTIPLE)
    return r(width), r(height)


__all__ = ["ForegroundNet", "input_size", "INPUT_LONG_SIDE", "SIDE_MULTIPLE"]
