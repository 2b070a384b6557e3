"""Sharpen a foreground probability with the image's own colours (GrabCut seeded by the network).

Why: the learned foreground network sees a 160 px copy of the image and was trained on renders;
on photographs its mask is blurred at the rim and misses parts whose look it never learned (a
hydrant's cap, an espresso machine's chrome). The image itself says more: pixels coloured like the
confident foreground are foreground. GrabCut (OpenCV) fits one colour mixture to the foreground and
one to the background and cuts the graph of the full-resolution pixels; here its seeds come from
the network instead of a user's box:

* probability ≥ ``sure_foreground`` (eroded a little): certainly foreground,
* probability ≥ the segmenter's threshold: probably foreground, else probably background,
* probability < ``sure_background`` far from any foreground (eroded): certainly background.

The probable pixels are what the cut may flip. Measured on renders of the training meshes
(``benchmarks/segmentation_learned.py --objects-dir ../shared/data/train_objects``) before it was
turned on; the figures are in the segmenter's model card.

ROS-free; numpy and OpenCV.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class ColourRefinement:
    """GrabCut's seeds and effort (module docstring). ``iterations`` 0 turns it off."""

    iterations: int = 3                  # GrabCut's EM rounds (0: no refinement)
    sure_foreground: float = 0.9         # probability above which a pixel is certainly object
    sure_background: float = 0.1         # ... below which (away from the object) certainly not
    long_side: int = 480                 # the cut runs on a copy this large (speed), 0 = full size
    erode_px: int = 2                    # sure regions are eroded by this (at the cut's size)
    background_margin_px: int = 7        # sure background keeps this far from probable pixels

    def __post_init__(self) -> None:
        if self.iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {self.iterations}")
        if not 0.0 < self.sure_background < 0.5 < self.sure_foreground < 1.0:
            raise ValueError("need 0 < sure_background < 0.5 < sure_foreground < 1, got "
                             f"{self.sure_background}, {self.sure_foreground}")
        if self.long_side < 0:
            raise ValueError(f"long_side must be >= 0, got {self.long_side}")
        if self.erode_px < 0 or self.background_margin_px < 0:
            raise ValueError("erode_px and background_margin_px must be >= 0")


def seeds(probability: np.ndarray, r: ColourRefinement, threshold: float = 0.5) -> np.ndarray:
    """GrabCut's label image (``cv2.GC_*``) from a foreground probability (module docstring)."""
    p = np.asarray(probability, np.float32)
    labels = np.where(p >= threshold, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    if r.erode_px:
        sure_fg = cv2.erode((p >= r.sure_foreground).astype(np.uint8),
                            np.ones((2 * r.erode_px + 1,) * 2, np.uint8)) > 0
    else:
        sure_fg = p >= r.sure_foreground
    labels[sure_fg] = cv2.GC_FGD
    k = 2 * r.background_margin_px + 1
    sure_bg = cv2.erode((p < r.sure_background).astype(np.uint8), np.ones((k, k), np.uint8)) > 0
    labels[sure_bg] = cv2.GC_BGD
    return labels


def refine_foreground(rgb: np.ndarray, probability: np.ndarray,
                      r: ColourRefinement | None = None, threshold: float = 0.5) -> np.ndarray:
    """The foreground (HxW bool, the image's size) after the colour cut; ``probability >=
    threshold``
    where the cut cannot run (refinement off, no foreground or no background seed: GrabCut needs
    both colour models) — never an error for an image the network could read."""
    r = r or ColourRefinement()
    p = np.asarray(probability, np.float32)
    plain = p >= threshold
    if r.iterations == 0 or not plain.any() or plain.all():
        return plain
    h, w = p.shape
    factor = min(1.0, r.long_side / max(h, w)) if r.long_side else 1.0
    if factor < 1.0:
        size = (max(1, round(w * factor)), max(1, round(h * factor)))
        small_rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        small_p = cv2.resize(p, size, interpolation=cv2.INTER_LINEAR)
    else:
        small_rgb, small_p = rgb, p
    labels = seeds(small_p, r, threshold)
    fg_seed = np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD))
    if not fg_seed.any() or fg_seed.all():
        return plain
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(np.ascontiguousarray(small_rgb[..., ::-1]), labels, None, bgd, fgd,
                    r.iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:           # a degenerate colour model (e.g. one flat colour): keep the network's
        return plain
    fg = np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD))
    if factor < 1.0:
        fg = cv2.resize(fg.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) >= 0.5
    return fg


__all__ = ["ColourRefinement", "refine_foreground", "seeds"]
