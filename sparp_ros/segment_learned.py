"""Objects in RGB alone: a small learned foreground network for cameras without depth (DESIGN §2).

Per frame (``LearnedSegmenter.instances``):

1. reduce the image (area average) to the network's size (long side 160 px, sides multiples of
   32) and predict per pixel the probability of a whole object in view (``model.foreground``;
   trained on realistic tabletop renders of the training meshes: ``training/segmenter.py``);
2. bring the logits back to the image's size (bilinear) and threshold them;
3. split the foreground into instances by connected components; fill their holes, drop specks
   (``min_area_fraction`` of the image) and, when an instance stays clear of the border, the
   instances cut by the image border (a chair at the edge of a photograph).

Across frames (``segment_learned``): instances become objects with one id for all frames, matched
(Hungarian) to the objects found so far by appearance (hue-saturation histogram), overlap with
the object's mask in the previous frame that saw it (the same object barely moves between the
frames of a hand-held capture) and the distance to the image centre (a capture keeps its object
in the middle). Without depth there is no 3D: ``ObjectMasks.centroid_world`` is None and
``height_m`` 0. The result is ``segment_depth``'s ``ObjectMasks``, so callers treat both alike.

Errors: ``LearnedSegmentationError`` (a ``SegmentationError``) when the weights cannot be loaded
(wrapping ``ModelLoadError``) or no object is found in the first view. torch, numpy, scipy and
OpenCV; no ROS, no training code.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from .assignment import link_across_views
from .capture import Frame
from .segment_depth import ObjectMasks, centre_object
from .segmentation import SegmentationError

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "model" / "weights" / "segmenter"
UNMATCHED_COST = 1e6


class LearnedSegmentationError(SegmentationError):
    """The learned segmenter cannot run (weights) or found no object where one is needed."""


@dataclass(frozen=True)
class LearnedSegmentationParams:
    """Thresholds of the learned segmentation (the network's own size is in its config)."""

    threshold: float = 0.5                   # foreground probability
    min_area_fraction: float = 0.003         # smaller instances (of the image area) are dropped
    border_px: int = 3                       # an instance this close to the border is cut by it
    drop_border_instances: bool = True       # ... and dropped while another one is not
    max_colour_distance: float = 0.6         # Bhattacharyya: farther is another object ...
    min_overlap: float = 0.3                 # ... unless its mask overlaps this much (IoU)

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if not 0.0 <= self.min_area_fraction < 1.0:
            raise ValueError(f"min_area_fraction must be in [0, 1), got {self.min_area_fraction}")


class LearnedSegmenter:
    """The foreground network loaded once; thread-safe ``probability`` / ``instances``.
    ``flip``: average the logits with those of the mirrored image (on renders of the training
    meshes, seeds not trained on: mean IoU 0.714 instead of 0.703; twice the network's time)."""

    def __init__(self, weights: str | Path | None = None, threads: int | None = 1,
                 flip: bool = True, long_side: int | None = None) -> None:
        import torch
        from .model.config import ModelLoadError
        from .model.foreground import ForegroundNet
        self.weights = Path(weights) if weights is not None else DEFAULT_WEIGHTS
        try:
            self.net = ForegroundNet.from_pretrained(self.weights)
        except ModelLoadError as exc:
            raise LearnedSegmentationError(f"learned segmentation unavailable: {exc}") from exc
        self._torch = torch
        self._threads = threads
        self.flip = flip                     # average with the mirrored image's prediction
        from .model.foreground import INPUT_LONG_SIDE
        self.long_side = long_side or INPUT_LONG_SIDE
        self._lock = threading.Lock()

    def logits(self, rgb: np.ndarray) -> np.ndarray:
        """Foreground logits at the network's size (h×w float32) for an HxWx3 uint8 RGB image."""
        from .model.foreground import input_size
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"image must be HxWx3 uint8 RGB, got {rgb.dtype} {rgb.shape}")
        w, h = input_size(rgb.shape[1], rgb.shape[0], self.long_side)
        small = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        torch = self._torch
        with self._lock:
            before = torch.get_num_threads()
            if self._threads:
                torch.set_num_threads(self._threads)
            try:
                with torch.inference_mode():
                    x = self.net.to_input(small[None])
                    if self.flip:        # mirrored copy; its x channel negated back
                        mirrored = torch.flip(x, dims=[3])
                        mirrored[:, 3] = -mirrored[:, 3]
                        y = self.net(torch.cat([x, mirrored]))
                        out = (0.5 * (y[0, 0] + torch.flip(y[1, 0], dims=[1]))).numpy()
                    else:
                        out = self.net(x)[0, 0].numpy()
            finally:
                torch.set_num_threads(before)
        return out

    def probability(self, rgb: np.ndarray) -> np.ndarray:
        """Foreground probability at the image's size (HxW float32)."""
        logits = cv2.resize(self.logits(rgb), (rgb.shape[1], rgb.shape[0]),
                            interpolation=cv2.INTER_LINEAR)
        return 1.0 / (1.0 + np.exp(-logits))

    def instances(self, rgb: np.ndarray, params: "LearnedSegmentationParams | None" = None
                  ) -> list[np.ndarray]:
        """The objects in one image (HxW bool masks), nearest the image centre first."""
        p = params or LearnedSegmentationParams()
        h, w = rgb.shape[:2]
        logit_t = float(np.log(p.threshold / (1.0 - p.threshold)))
        fg = cv2.resize(self.logits(rgb), (w, h), interpolation=cv2.INTER_LINEAR) > logit_t
        return split_instances(fg, p)


def split_instances(fg: np.ndarray, p: LearnedSegmentationParams) -> list[np.ndarray]:
    """Connected components of a foreground mask as instances (holes filled, specks and — while
    another one stays clear of it — those cut by the border dropped), nearest the centre first."""
    h, w = fg.shape
    n, labels, stats, cents = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
    min_area = p.min_area_fraction * h * w
    keep, cut = [], []
    b = p.border_px
    for k in range(1, n):
        x, y, bw, bh, area = stats[k]
        if area < min_area:
            continue
        at_border = x < b or y < b or x + bw > w - b or y + bh > h - b
        (cut if at_border else keep).append(k)
    if not p.drop_border_instances or not keep:
        keep = keep + cut
    centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    keep.sort(key=lambda k: float(np.linalg.norm(cents[k] - centre)))
    out = []
    for k in keep:
        x, y, bw, bh, _ = stats[k]
        m = np.zeros((h, w), bool)
        m[y:y + bh, x:x + bw] = _fill_holes(labels[y:y + bh, x:x + bw] == k)
        out.append(m)
    return out


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """The mask with its holes filled: what a flood from outside (a 1 px frame) does not reach."""
    framed = np.pad(mask, 1).astype(np.uint8)
    cv2.floodFill(framed, None, (0, 0), 1)
    return mask | (framed[1:-1, 1:-1] == 0)


_CACHE: dict[Path, LearnedSegmenter] = {}
_CACHE_LOCK = threading.Lock()


def load_segmenter(weights: str | Path | None = None) -> LearnedSegmenter:
    """The segmenter of ``weights`` (default: the shipped one), loaded once per process."""
    key = (Path(weights) if weights is not None else DEFAULT_WEIGHTS).resolve()
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = LearnedSegmenter(key)
        return _CACHE[key]


# -- across frames ---------------------------------------------------------------------------------
@dataclass
class _Seen:
    mask: np.ndarray
    histogram: np.ndarray
    centre_distance: float                   # of the mask's centroid, / image diagonal


def _describe(image: np.ndarray, mask: np.ndarray) -> _Seen:
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], mask.astype(np.uint8), [18, 8], [0, 180, 0, 256])
    hist = (hist / max(float(hist.sum()), 1.0)).astype(np.float32)
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    d = np.hypot(xs.mean() - (w - 1) / 2.0, ys.mean() - (h - 1) / 2.0) / np.hypot(w, h)
    return _Seen(mask, hist, float(d))


def _iou_resized(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        a = cv2.resize(a.astype(np.uint8), (b.shape[1], b.shape[0]),
                       interpolation=cv2.INTER_NEAREST) > 0
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


def _match_cost(track: dict[int, _Seen], o: _Seen, p: LearnedSegmentationParams) -> float:
    last = track[max(track)]
    colour = min(cv2.compareHist(m.histogram, o.histogram, cv2.HISTCMP_BHATTACHARYYA)
                 for m in track.values())
    overlap = _iou_resized(last.mask, o.mask)
    if colour > p.max_colour_distance and overlap < p.min_overlap:
        return UNMATCHED_COST
    return colour + (1.0 - overlap) + 2.0 * abs(last.centre_distance - o.centre_distance)


def segment_learned(frames: Sequence[Frame], params: LearnedSegmentationParams | None = None,
                    segmenter: LearnedSegmenter | None = None) -> list[ObjectMasks]:
    """The objects in the frames' images, each with a mask per frame (None where not seen) and
    one id across the frames ([] when none). Ids: 0, 1, ... in the order of the first frame that
    sees the object, nearest that image's centre first (as ``segment_depth``)."""
    if not frames:
        raise ValueError("frames is empty: learned segmentation needs at least one frame")
    p = params or LearnedSegmentationParams()
    seg = segmenter or load_segmenter()
    tracks: list[dict[int, _Seen]] = link_across_views(
        [[_describe(f.image, m) for m in seg.instances(f.image, p)] for f in frames],
        lambda t, o: _match_cost(t, o, p), UNMATCHED_COST)
    n = len(frames)
    return [ObjectMasks(id=k, masks=[t[i].mask if i in t else None for i in range(n)],
                        centroid_world=None, centroids_camera=[None] * n, height_m=0.0)
            for k, t in enumerate(tracks)]


def frames_masked_learned(frames: Sequence[Frame], params: LearnedSegmentationParams | None = None,
                          segmenter: LearnedSegmenter | None = None
                          ) -> tuple[list[Frame], list[int], ObjectMasks, list[ObjectMasks]]:
    """Keyframes without masks, masked by the learned segmentation for the object nearest the
    first view's centre, in the frames that see it (``segment_depth.frames_masked_from_depth``'s
    contract). Raises ``LearnedSegmentationError`` when the first view shows no object."""
    objects = segment_learned(frames, params, segmenter)
    chosen = centre_object(objects, frames, 0)
    if chosen is None:
        raise LearnedSegmentationError(f"frame 0: the learned segmenter finds no object "
                                       f"({len(objects)} found in the other views)")
    kept = chosen.frames_seen
    return [replace(frames[i], mask=chosen.masks[i]) for i in kept], kept, chosen, objects


__all__ = ["LearnedSegmenter", "LearnedSegmentationParams", "LearnedSegmentationError",
           "load_segmenter", "segment_learned", "frames_masked_learned", "split_instances",
           "DEFAULT_WEIGHTS"]
