"""Object segmentation and the square crop around it.

The model sees every view as one square cell of ``cell_size`` pixels centred on the object, so a
crop box is derived from the object mask and applied identically to the image, mask, depth and
(oracle) NOCS, with the camera updated once through ``PinholeCamera.crop/resize``.
Where masks come from is decided before the pipeline (``segment_select``, the node's
``segmentation`` parameter): the capture's masks / the mask topic, depth segmentation
(``segment_depth``), the learned segmenter (``segment_learned``) or prompts (``segment_prompt``).
The pipeline itself refuses a view without a usable mask with a clear error rather than guessing.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .camera import PinholeCamera

MIN_MASK_PIXELS = 50


class SegmentationError(ValueError):
    """A view has no usable object mask."""


@dataclass(frozen=True)
class CropBox:
    """A square box in source pixels: columns [x0, x0+side), rows [y0, y0+side); may leave the image."""

    x0: float
    y0: float
    side: float


def crop_box_from_mask(mask: np.ndarray, margin: float = 0.15) -> CropBox:
    """The square box around the mask's bounding box, enlarged by ``margin`` on each side."""
    if mask is None or mask.ndim != 2:
        raise SegmentationError("no object mask")
    ys, xs = np.nonzero(mask)
    if len(xs) < MIN_MASK_PIXELS:
        raise SegmentationError(f"object mask has {len(xs)} pixels (< {MIN_MASK_PIXELS})")
    x_lo, x_hi, y_lo, y_hi = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    side = max(x_hi - x_lo, y_hi - y_lo) * (1.0 + 2.0 * margin)
    cx, cy = (x_lo + x_hi) / 2.0, (y_lo + y_hi) / 2.0
    return CropBox(x0=cx - side / 2.0, y0=cy - side / 2.0, side=float(side))


def crop_camera(camera: PinholeCamera, box: CropBox, size: int) -> PinholeCamera:
    """The camera of the crop ``box`` resized to ``size`` x ``size`` (sub-pixel box allowed)."""
    s = size / box.side
    side = int(np.ceil(box.side))
    return camera.crop(box.x0, box.y0, side, side).scaled(s, s, size, size)


def crop_image(image: np.ndarray, box: CropBox, size: int, nearest: bool = False) -> np.ndarray:
    """Resample ``image`` inside ``box`` to ``size`` x ``size`` (zeros outside the source image).

    Uses the pixel-centre convention of ``camera.py``: cell pixel u' samples source
    u = (u' + 0.5)/s − 0.5 + x0, so geometry computed with ``crop_camera`` matches exactly.
    """
    s = size / box.side
    M = np.array([[1.0 / s, 0.0, 0.5 / s - 0.5 + box.x0],
                  [0.0, 1.0 / s, 0.5 / s - 0.5 + box.y0]])
    if nearest:
        flags = cv2.INTER_NEAREST
    else:
        flags = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        if flags == cv2.INTER_AREA:   # warpAffine has no area filter: pre-blur to avoid aliasing
            sigma = 0.5 / s
            image = cv2.GaussianBlur(image, (0, 0), sigma) if sigma > 0.6 else image
            flags = cv2.INTER_LINEAR
    return cv2.warpAffine(image, M, (size, size), flags=flags | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
