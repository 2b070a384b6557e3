"""Objects in RGB alone: a small learned foreground network for cameras without depth (DESIGN §2).

Per frame (``LearnedSegmenter.instances``):

1. reduce the image (area average) to the network's size (long side 160 px, sides multiples of
   32) and predict per pixel the probability of a whole object in view (``model.foreground``;
   trained on realistic tabletop renders of the training meshes: ``training/segmenter.py``);
2. bring the logits back to the image's size (bilinear) and threshold them, the mask sharpened by
   the image's own colours (GrabCut seeded by the probability: ``segment_refine``, on by
   default; the network sees a 160 px copy and only renders);
3. split the foreground into instances by connected components; fill their holes, optionally
   cut them at narrow necks (``split_neck``, off by default: ``LearnedSegmentationParams``), drop
   specks (``min_area_fraction`` of the image) and, when an instance stays clear of the border,
   the instances cut by the image border (a chair at the edge of a photograph).

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
from .segment_refine import ColourRefinement, refine_foreground
from .segmentation import SegmentationError

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "model" / "weights" / "segmenter"
UNMATCHED_COST = 1e6


class LearnedSegmentationError(SegmentationError):
    """The learned segmenter cannot run (weights) or found no object where one is needed."""


@dataclass(frozen=True)
class LearnedSegmentationParams:
    """Thresholds of the learned segmentation (the network's own size is in its config).

    Splitting (``split_component``, ``split_neck`` > 0): touching objects come out of the
    network as one foreground blob, so one instance covers two objects and both lose IoU. A
    component is cut where the pass between two parts (the neck's half-width, from the distance
    transform) is below ``split_neck`` × the smaller part's inscribed radius; parts below
    ``split_min_part`` of the component join their neighbour. Tuned on the training meshes only
    (``benchmarks/segmentation_learned.py --objects-dir ../shared/data/train_objects --scenes 20
    --seed 7000``, realistic and ``--plain``): mean object IoU 0.325 → 0.367 realistic,
    0.617 → 0.649 plain at 0.8 / 0.1 (0.6–0.9 within 0.01; 1.0, a cut at every pass, below no
    splitting); ``split_probability`` (the surface times the probability rescaled from the
    threshold: valleys between objects narrow the neck) 0.372 realistic but 0.635 plain, not
    taken. **Off by default**: on the untuned figures (test meshes, seeds 1000–1029; real photos;
    the second run's weights without the colour cut)
    0.8 / 0.1 helped the realistic scenes (median object IoU 0.374 → 0.387, per view 0.287 →
    0.360) but not the plain ones (0.665 → 0.658) and cost the real single-object captures
    (median 0.562 → 0.522: the hydrant and the espresso machine cut into parts). Model card.

    Matching across views: colour distance + ``overlap_weight`` × (1 − IoU with the track's last
    mask) + ``centre_weight`` × the change of distance to the image centre. Views from other
    sides of a table move objects across the image, so 0.3 / 0.5 were tried (training meshes:
    realistic median object IoU 0.451 → 0.485, plain unchanged) but left the test figures where
    they were (realistic 0.411 → 0.411, plain 0.860 → 0.860, real 0.711 → 0.711): 1 / 2 stay,
    which keep a hand-held capture's continuity."""

    threshold: float = 0.5                   # foreground probability
    min_area_fraction: float = 0.003         # smaller instances (of the image area) are dropped
    border_px: int = 3                       # an instance this close to the border is cut by it
    drop_border_instances: bool = True       # ... and dropped while another one is not
    max_colour_distance: float = 0.6         # Bhattacharyya: farther is another object ...
    min_overlap: float = 0.3                 # ... unless its mask overlaps this much (IoU)
    overlap_weight: float = 1.0              # match cost: colour + this x (1 - overlap) ...
    centre_weight: float = 2.0               # ... + this x change of distance to the centre
    split_neck: float = 0.0                  # cut a component at necks this narrow (0: never)
    split_min_part: float = 0.1              # ... into parts of at least this (of the component)
    split_probability: bool = False          # ... necks measured on distance x probability
    refine: ColourRefinement = ColourRefinement()   # the image's colours sharpen
                                             # the mask (segment_refine.py)

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if not 0.0 <= self.min_area_fraction < 1.0:
            raise ValueError(f"min_area_fraction must be in [0, 1), got {self.min_area_fraction}")
        if not 0.0 <= self.split_neck <= 1.0:
            raise ValueError(f"split_neck must be in [0, 1], got {self.split_neck}")
        if self.overlap_weight < 0.0 or self.centre_weight < 0.0:
            raise ValueError(f"overlap_weight and centre_weight must be >= 0, got "
                             f"{self.overlap_weight}, {self.centre_weight}")
        if not 0.0 <= self.split_min_part < 0.5:
            raise ValueError(f"split_min_part must be in [0, 0.5), got {self.split_min_part}")

    @property
    def logit_threshold(self) -> float:
        """``threshold`` on the network's logits (what the resized logits are compared with)."""
        return float(np.log(self.threshold / (1.0 - self.threshold)))


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
        logits = cv2.resize(self.logits(rgb), (w, h), interpolation=cv2.INTER_LINEAR)
        if p.refine.iterations:
            fg = refine_foreground(rgb, 1.0 / (1.0 + np.exp(-logits)), p.refine, p.threshold)
        else:
            fg = logits > p.logit_threshold
        return split_instances(fg, p, logits)


def split_instances(fg: np.ndarray, p: LearnedSegmentationParams,
                    logits: np.ndarray | None = None) -> list[np.ndarray]:
    """Connected components of a foreground mask as instances (holes filled, cut at narrow necks
    when ``p.split_neck`` > 0 — ``split_component`` —, specks and, while another one stays clear
    of it, those cut by the border dropped), nearest the centre first. ``logits``: the network's
    (image size), used by ``p.split_probability``."""
    h, w = fg.shape
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
    min_area = p.min_area_fraction * h * w
    parts: list[tuple[np.ndarray, int, int]] = []          # (mask in its box, x, y)
    for k in range(1, n):
        x, y, bw, bh, area = stats[k]
        if area < min_area:
            continue
        comp = _fill_holes(labels[y:y + bh, x:x + bw] == k)
        if p.split_neck > 0.0:
            box = None if logits is None or not p.split_probability else logits[y:y + bh, x:x + bw]
            for m in split_component(comp, p.split_neck, max(p.split_min_part * area, min_area),
                                     box, p.threshold):
                parts.append((m, x, y))
        else:
            parts.append((comp, x, y))
    keep, cut = [], []
    b = p.border_px
    for m, x, y in parts:
        ys, xs = np.nonzero(m)
        at_border = (x + xs.min() < b or y + ys.min() < b or x + xs.max() + 1 > w - b
                     or y + ys.max() + 1 > h - b)
        (cut if at_border else keep).append((m, x, y, x + xs.mean(), y + ys.mean()))
    if not p.drop_border_instances or not keep:
        keep = keep + cut
    centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    keep.sort(key=lambda r: float(np.hypot(r[3] - centre[0], r[4] - centre[1])))
    out = []
    for m, x, y, _, _ in keep:
        full = np.zeros((h, w), bool)
        full[y:y + m.shape[0], x:x + m.shape[1]] = m
        out.append(full)
    return out


def split_component(mask: np.ndarray, neck: float, min_part_px: float,
                    logits: np.ndarray | None = None, threshold: float = 0.5,
                    levels: int = 40, work_px: int = 128) -> list[np.ndarray]:
    """One foreground component (bool, hole-free) cut where it narrows: two touching objects seen
    as one blob. The surface ``f`` is the distance to the background (times the foreground
    probability rescaled from the threshold to 1 when ``logits`` are given: a valley of probability
    between two objects narrows the neck). Going down ``levels`` levels of ``f``, a connected
    piece of ``f >= L`` without a seed becomes one once its peak (inscribed radius) reaches
    L / ``neck``; pieces that meet later stay apart, so two parts are cut where the pass between
    them (the half-width of the neck) is below ``neck`` × the smaller one's peak. The seeds then
    grow through the component (a flood from the seeds); a part below ``min_part_px`` joins the
    neighbour it touches most. An elongated blob has no such pass and stays one; ``neck`` 0: never
    cut. Returns the parts (masks of ``mask``'s shape), largest first."""
    if neck <= 0.0:
        return [mask]
    # the seeds at most ``work_px`` on the long side (the foreground is the network's 160 px
    # prediction brought up: nothing finer to see), the flood at the mask's size
    padded = np.pad(mask, 1).astype(np.uint8)
    scale = min(1.0, work_px / max(padded.shape))
    size = (max(1, round(padded.shape[1] * scale)), max(1, round(padded.shape[0] * scale)))
    small = padded if scale == 1.0 else (
        cv2.resize(padded.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0.5)
    f = cv2.distanceTransform(small.astype(np.uint8), cv2.DIST_L2, 5)
    if logits is not None:
        t = float(threshold)
        lg = np.pad(logits.astype(np.float32), 1, mode="edge")
        if scale != 1.0:
            lg = cv2.resize(lg, size, interpolation=cv2.INTER_AREA)
        f = f * np.clip((1.0 / (1.0 + np.exp(-lg)) - t) / (1.0 - t), 0.0, 1.0)
    fmax = float(f.max())
    if fmax <= 0.0:
        return [mask]
    seeds = np.zeros(f.shape, np.int32)
    n_seeds = 0
    for level in fmax * np.arange(levels - 1, 0, -1) / levels:
        n, comp = cv2.connectedComponents((f >= level).astype(np.uint8), connectivity=8)
        if n <= 1:
            continue
        inseed = seeds > 0
        pairs = np.unique(comp[inseed].astype(np.int64) * (n_seeds + 1) + seeds[inseed])
        piece = pairs // (n_seeds + 1)
        held = np.bincount(piece, minlength=n)             # seeds per piece of f >= level
        owner = np.zeros(n, np.int32)
        owner[piece] = pairs % (n_seeds + 1)
        tall = np.bincount(comp[f >= level / neck], minlength=n) > 0     # peak >= level/neck
        new = (held == 0) & tall
        new[0] = False
        owner[new] = n_seeds + 1 + np.arange(np.count_nonzero(new))
        n_seeds += int(np.count_nonzero(new))
        grow = (held == 1) | new                           # one seed: it grows to the piece
        grow[0] = False
        seeds = np.where(grow[comp], owner[comp], seeds)
    if n_seeds <= 1:
        return [mask]
    if scale != 1.0:
        seeds = cv2.resize(seeds, (padded.shape[1], padded.shape[0]),
                           interpolation=cv2.INTER_NEAREST) * (padded > 0)
    # the seeds flood the component (OpenCV's watershed on a flat image: breadth first), the
    # background is a basin of its own that floods last (its colour differs)
    flat = np.where(padded[..., None] > 0, 0, 255).astype(np.uint8).repeat(3, axis=2)
    markers = seeds.copy()
    markers[padded == 0] = n_seeds + 1
    cv2.watershed(flat, markers)
    lines = (padded > 0) & ((markers < 1) | (markers > n_seeds))
    markers[~(padded > 0) | lines] = 0          # the flood's lines go to a neighbouring part
    while lines.any():
        grown = cv2.dilate(np.maximum(markers, 0).astype(np.float32), np.ones((3, 3), np.uint8))
        fill = lines & (grown > 0)
        if not fill.any():
            break
        markers[fill] = grown[fill].astype(np.int32)
        lines &= ~fill
    lab = markers[1:-1, 1:-1]
    parts = {k: lab == k for k in range(1, n_seeds + 1)}
    while len(parts) > 1:                       # a part too small joins the one it touches most
        k = min(parts, key=lambda j: np.count_nonzero(parts[j]))
        if np.count_nonzero(parts[k]) >= min_part_px:
            break
        ring = cv2.dilate(parts.pop(k).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        best = max(parts, key=lambda j: np.count_nonzero(ring & parts[j]))
        parts[best] = parts[best] | (ring & mask & ~np.logical_or.reduce(list(parts.values())))
        parts[best] |= lab == k
    out = sorted(parts.values(), key=lambda m: -np.count_nonzero(m))
    return [m & mask for m in out if m.any()]


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
    return (colour + p.overlap_weight * (1.0 - overlap)
            + p.centre_weight * abs(last.centre_distance - o.centre_distance))


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
