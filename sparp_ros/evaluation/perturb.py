"""Perturbations of capture frames for the robustness sweep (``benchmarks/benchmark.py sweep``).

Each function takes one view's arrays and returns perturbed copies; ``perturb_capture`` applies one
named perturbation to every view of a capture. Only what the *pipeline* is given changes: the
ground truth (``gt.json``: true poses, true mesh) and the ground-truth NOCS stay as rendered, so a
method is scored against the world as it really was. numpy + OpenCV, no ROS.

The perturbations model what goes wrong on a robot:

- ``focal``: a miscalibrated camera. The images are rendered with the true focal length and the
  pipeline is given ``fx, fy`` multiplied by ``factor`` (principal point unchanged).
- ``erode``: a segmenter that misses the object's rim: the ``fraction`` of mask pixels closest to
  the mask's boundary is removed (distance-transform quantile, so the removed area is as asked).
- ``cut``: a segmenter that misses a whole part: a straight cut in a random direction removes the
  ``fraction`` of mask pixels on one side.
- ``occluder``: a random rectangle of random colour and texture pasted over the object, grown until
  it hides ``fraction`` of the object's pixels. ``in_mask=False``: the occluded pixels are removed
  from the mask (a segmenter that sees the occluder); ``in_mask=True``: the mask is left as it was
  (a segmenter that does not), so the pipeline is fed the occluder's pixels as object.
- ``blur``: linear motion blur, a normalised line kernel of ``length`` pixels at a random angle,
  on the image only (the mask stays sharp, as from a separate segmenter).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import cv2
import numpy as np

from ..camera import PinholeCamera
from ..capture import Capture, Frame

KINDS = ("focal", "erode", "cut", "occluder", "occluder_in_mask", "blur")
"""Perturbation names accepted by ``perturb_frame`` / ``perturb_capture``."""


def scale_focal(camera: PinholeCamera, factor: float) -> PinholeCamera:
    """The same camera with ``fx`` and ``fy`` multiplied by ``factor`` (cx, cy, size unchanged)."""
    if not factor > 0:
        raise ValueError(f"focal factor must be positive, got {factor}")
    K = camera.K.copy()
    K[0, 0] *= factor
    K[1, 1] *= factor
    return replace(camera, K=K)


def erode_mask(mask: np.ndarray, fraction: float) -> np.ndarray:
    """Remove the ``fraction`` of mask pixels nearest the mask's boundary (its rim).

    Pixels are ranked by their distance to the background (``cv2.distanceTransform``, L2); the
    ``round(fraction * area)`` nearest are removed, ties broken by a fixed pixel order, so the
    removed area is exact."""
    mask = np.asarray(mask, bool)
    _check_fraction(fraction)
    area = int(mask.sum())
    remove = int(round(fraction * area))
    if remove == 0:
        return mask.copy()
    padded = np.pad(mask, 1).astype(np.uint8)          # the image border counts as background
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    idx = np.flatnonzero(mask)
    order = np.argsort(dist.ravel()[idx], kind="stable")
    out = mask.copy()
    out.ravel()[idx[order[:remove]]] = False
    return out


def cut_mask(mask: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Remove the ``fraction`` of mask pixels on one side of a straight line at a random angle
    (exact area: pixels are ranked by their coordinate along the cut's normal)."""
    mask = np.asarray(mask, bool)
    _check_fraction(fraction)
    idx = np.flatnonzero(mask)
    remove = int(round(fraction * idx.size))
    out = mask.copy()
    if remove == 0:
        return out
    angle = rng.uniform(0.0, 2 * np.pi)
    v, u = np.divmod(idx, mask.shape[1])
    along = np.cos(angle) * u + np.sin(angle) * v
    order = np.argsort(along, kind="stable")
    out.ravel()[idx[order[:remove]]] = False
    return out


def occluder_box(mask: np.ndarray, fraction: float, rng: np.random.Generator
                 ) -> tuple[int, int, int, int]:
    """A rectangle ``(u0, v0, u1, v1)`` (inclusive, inside the image) that covers ``fraction`` of
    the mask's pixels, as close as whole pixels allow: centred on a random object pixel, with a
    random aspect ratio (1:2 to 2:1), grown by bisection on its size until it covers enough.
    A rectangle clipped by the image border is still a rectangle; the target may then need a
    larger one, which the bisection finds."""
    mask = np.asarray(mask, bool)
    _check_fraction(fraction)
    h, w = mask.shape
    area = int(mask.sum())
    if area == 0:
        raise ValueError("the mask is empty: nothing to occlude")
    target = fraction * area
    vs, us = np.nonzero(mask)
    k = int(rng.integers(len(us)))
    cu, cv = float(us[k]), float(vs[k])
    aspect = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))        # width / height
    integral = np.pad(mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))

    def box(s: float) -> tuple[int, int, int, int]:
        hw, hh = s * np.sqrt(aspect) / 2, s / np.sqrt(aspect) / 2
        return (int(max(0, np.floor(cu - hw))), int(max(0, np.floor(cv - hh))),
                int(min(w - 1, np.ceil(cu + hw))), int(min(h - 1, np.ceil(cv + hh))))

    def covered(b: tuple[int, int, int, int]) -> int:
        u0, v0, u1, v1 = b
        return int(integral[v1 + 1, u1 + 1] - integral[v0, u1 + 1] - integral[v1 + 1, u0]
                   + integral[v0, u0])

    if target <= 0:
        return int(cu), int(cv), int(cu) - 1, int(cv) - 1            # an empty box
    lo, hi = 0.0, 2.0 * float(max(h, w)) * 2.0     # hi covers the whole image at any aspect
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if covered(box(mid)) >= target:
            hi = mid
        else:
            lo = mid
    # the smaller or the larger of the two bracketing boxes, whichever is nearer the target
    b_lo, b_hi = box(lo), box(hi)
    return b_lo if abs(covered(b_lo) - target) < abs(covered(b_hi) - target) else b_hi


def paste_occluder(image: np.ndarray, box: tuple[int, int, int, int],
                   rng: np.random.Generator) -> np.ndarray:
    """``image`` with the box filled by a random colour plus low-frequency texture and noise."""
    u0, v0, u1, v1 = box
    out = image.copy()
    bh, bw = v1 - v0 + 1, u1 - u0 + 1
    if bh <= 0 or bw <= 0:
        return out
    colour = rng.uniform(0, 255, size=3)
    texture = cv2.resize(rng.normal(0.0, 1.0, size=(3, 3, 3)).astype(np.float32), (bw, bh),
                         interpolation=cv2.INTER_CUBIC).reshape(bh, bw, 3)
    patch = colour + 30.0 * texture + rng.normal(0.0, 4.0, size=(bh, bw, 3))
    out[v0:v1 + 1, u0:u1 + 1] = np.clip(patch, 0, 255).astype(np.uint8)
    return out


def motion_blur_kernel(length: int, angle_rad: float) -> np.ndarray:
    """A normalised (sums to 1) line kernel ``length`` pixels long at ``angle_rad`` from the image
    x axis (a row of ones rotated about the kernel's centre, bilinear), odd-sized."""
    if length < 1:
        raise ValueError(f"blur length must be >= 1 pixel, got {length}")
    size = length if length % 2 == 1 else length + 1
    k = np.zeros((size, size), np.float32)
    c = (size - 1) / 2.0
    start = int(round(c - (length - 1) / 2.0))
    k[size // 2, start:start + length] = 1.0
    rot = cv2.getRotationMatrix2D((c, c), -np.degrees(angle_rad), 1.0)   # image y points down
    k = cv2.warpAffine(k, rot, (size, size), flags=cv2.INTER_LINEAR)
    return k / k.sum()


def motion_blur(image: np.ndarray, length: int, angle_rad: float) -> np.ndarray:
    """Linear motion blur of a uint8 image (reflected border; the kernel sums to 1, so the image
    mean is kept up to border effects and rounding)."""
    if length <= 1:
        return image.copy()
    k = motion_blur_kernel(length, angle_rad)
    out = cv2.filter2D(image.astype(np.float32), -1, k, borderType=cv2.BORDER_REFLECT_101)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def perturb_frame(frame: Frame, kind: str, level: float, rng: np.random.Generator
                  ) -> tuple[Frame, dict[str, Any]]:
    """One perturbed view and what was done (e.g. the occluder's box and the hidden fraction).

    ``level``: focal factor (``focal``), fraction of the mask (``erode``, ``cut``, ``occluder``,
    ``occluder_in_mask``), blur length in pixels (``blur``)."""
    if kind not in KINDS:
        raise ValueError(f"unknown perturbation {kind!r}; one of {KINDS}")
    info: dict[str, Any] = {"kind": kind, "level": float(level)}
    if kind == "focal":
        return replace(frame, camera=scale_focal(frame.camera, level)), info
    if frame.mask is None:
        raise ValueError(f"{kind} needs a mask")
    mask = frame.mask
    if kind == "erode":
        new = erode_mask(mask, level)
        info["removed_fraction"] = 1.0 - new.sum() / max(mask.sum(), 1)
        return replace(frame, mask=new), info
    if kind == "cut":
        new = cut_mask(mask, level, rng)
        info["removed_fraction"] = 1.0 - new.sum() / max(mask.sum(), 1)
        return replace(frame, mask=new), info
    if kind in ("occluder", "occluder_in_mask"):
        box = occluder_box(mask, level, rng)
        u0, v0, u1, v1 = box
        hidden = np.zeros_like(mask)
        hidden[v0:v1 + 1, u0:u1 + 1] = True
        info["box"] = list(box)
        info["hidden_fraction"] = float((hidden & mask).sum() / max(mask.sum(), 1))
        image = paste_occluder(frame.image, box, rng)
        new_mask = mask if kind == "occluder_in_mask" else mask & ~hidden
        return replace(frame, image=image, mask=new_mask), info
    angle = float(rng.uniform(0.0, np.pi))
    info["angle_deg"] = float(np.degrees(angle))
    return replace(frame, image=motion_blur(frame.image, int(round(level)), angle)), info


def perturb_capture(capture: Capture, kind: str, level: float, seed: int = 0
                    ) -> tuple[Capture, list[dict[str, Any]]]:
    """Every view perturbed (each with its own draw from ``seed``); ground truth unchanged."""
    rng = np.random.default_rng(seed)
    frames, infos = [], []
    for f in capture.frames:
        g, info = perturb_frame(f, kind, level, rng)
        frames.append(g)
        infos.append(info)
    return Capture(frames=frames, gt=capture.gt, root=None), infos


def _check_fraction(fraction: float) -> None:
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
