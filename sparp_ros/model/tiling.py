"""The 3×2 tile layout shared by the data engine, the model and the pipeline.

Six cells of ``S``×``S`` pixels in 3 rows × 2 columns (Zero123++ v1.2 layout): an image of height
3S and width 2S; cell ``k`` sits at row ``k // 2``, column ``k % 2``. Missing views are blank
(zeros). Works on numpy arrays HxWxC (channels last) and torch tensors ...xCxHxW (channels first).
"""
from __future__ import annotations

from typing import Any

import numpy as np

ROWS, COLS = 3, 2
NUM_CELLS = ROWS * COLS
MAX_VIEWS = NUM_CELLS
"""Views per reconstruction: one cell each (the pipeline, the encoder and the data engine)."""


def tile(cells: Any, channels_last: bool = True) -> Any:
    """Stack 6 cells (sequence or array with a leading axis of ≤ 6) into one tiled image."""
    n = len(cells)
    if n > NUM_CELLS:
        raise ValueError(f"at most {NUM_CELLS} cells, got {n}")
    if channels_last:
        first = np.asarray(cells[0])
        S = first.shape[0]
        out = np.zeros((ROWS * S, COLS * S) + first.shape[2:], first.dtype)
        for k in range(n):
            r, c = divmod(k, COLS)
            out[r * S:(r + 1) * S, c * S:(c + 1) * S] = cells[k]
        return out
    import torch
    cells_t = torch.stack(list(cells)) if not torch.is_tensor(cells) else cells
    S = cells_t.shape[-1]
    out = cells_t.new_zeros(cells_t.shape[1:-2] + (ROWS * S, COLS * S))
    for k in range(n):
        r, c = divmod(k, COLS)
        out[..., r * S:(r + 1) * S, c * S:(c + 1) * S] = cells_t[k]
    return out


def untile(image: Any, channels_last: bool = True) -> list[Any]:
    """Split a tiled image back into its 6 cells (inverse of ``tile``)."""
    if channels_last:
        S = image.shape[0] // ROWS
        return [image[r * S:(r + 1) * S, c * S:(c + 1) * S] for r in range(ROWS) for c in range(COLS)]
    S = image.shape[-2] // ROWS
    return [image[..., r * S:(r + 1) * S, c * S:(c + 1) * S] for r in range(ROWS) for c in range(COLS)]
