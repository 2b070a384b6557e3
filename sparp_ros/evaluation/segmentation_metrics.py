"""Instance segmentation across keyframes against true masks: IoU per object and identity.

One assignment per scene: each true object gets the predicted object (id) with the largest IoU
summed over the views (Hungarian), so an object whose id changes between views is scored against
one id only and loses IoU in the other views. Views where a true object shows fewer than
``min_visible_px`` pixels (almost hidden) are not scored for it.

- per-view IoU: IoU(predicted mask of the assigned id, true mask) in one view (0 when the
  assigned object is not seen there or no id was assigned);
- object IoU: the mean of its per-view IoUs;
- identity consistent: in every scored view the predicted object overlapping it most (IoU ≥ 0.5)
  is the same one, the assigned id.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

MIN_VISIBLE_PX = 200
IDENTITY_MIN_IOU = 0.5


@dataclass
class ObjectScore:
    truth_id: str
    predicted_id: int | None
    view_ious: list[float]                 # scored views only
    consistent: bool

    @property
    def iou(self) -> float:
        return float(np.mean(self.view_ious)) if self.view_ious else float("nan")


@dataclass
class SceneScore:
    objects: list[ObjectScore] = field(default_factory=list)
    extra_predictions: int = 0             # predicted objects assigned to no true object


def _iou(a: np.ndarray | None, b: np.ndarray) -> float:
    if a is None:
        return 0.0
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


def score_scene(truth: Mapping[str, Sequence[np.ndarray | None]], predicted: Sequence,
                min_visible_px: int = MIN_VISIBLE_PX) -> SceneScore:
    """``truth``: {id: per-view HxW bool (None: unknown)}; ``predicted``: objects with ``id`` and
    ``masks`` (per view HxW bool or None), e.g. ``segment_depth.ObjectMasks``."""
    ids = list(truth)
    views = max((len(m) for m in truth.values()), default=0)
    scored = {t: [v for v in range(views) if truth[t][v] is not None
                  and np.count_nonzero(truth[t][v]) >= min_visible_px] for t in ids}
    iou = np.zeros((len(ids), len(predicted), views))
    for a, t in enumerate(ids):
        for b, p in enumerate(predicted):
            for v in scored[t]:
                iou[a, b, v] = _iou(p.masks[v], truth[t][v])
    out = SceneScore()
    assigned: dict[int, int] = {}
    if len(ids) and len(predicted):
        rows, cols = linear_sum_assignment(-iou.sum(axis=2))
        assigned = {int(r): int(c) for r, c in zip(rows, cols) if iou[r, c].sum() > 0}
    for a, t in enumerate(ids):
        b = assigned.get(a)
        view_ious = [float(iou[a, b, v]) if b is not None else 0.0 for v in scored[t]]
        consistent = b is not None and all(
            iou[a, :, v].max() >= IDENTITY_MIN_IOU and int(np.argmax(iou[a, :, v])) == b
            for v in scored[t])
        out.objects.append(ObjectScore(t, None if b is None else int(predicted[b].id), view_ious,
                                       consistent))
    out.extra_predictions = len(predicted) - len(assigned)
    return out


def summarize(scenes: Sequence[SceneScore]) -> dict[str, float]:
    """Median / mean object IoU, median / mean per-view IoU, identity-consistency rate, counts."""
    objects = [o for s in scenes for o in s.objects if o.view_ious]
    per_object = np.array([o.iou for o in objects])
    per_view = np.array([x for o in objects for x in o.view_ious])
    return {
        "scenes": len(scenes), "objects": len(objects), "object_views": int(per_view.size),
        "median_object_iou": float(np.median(per_object)) if objects else float("nan"),
        "mean_object_iou": float(np.mean(per_object)) if objects else float("nan"),
        "median_view_iou": float(np.median(per_view)) if per_view.size else float("nan"),
        "mean_view_iou": float(np.mean(per_view)) if per_view.size else float("nan"),
        "identity_consistency": float(np.mean([o.consistent for o in objects])) if objects
        else float("nan"),
        "missed_objects": sum(o.predicted_id is None for o in objects),
        "extra_predictions": sum(s.extra_predictions for s in scenes),
    }


PROMPT_BOX_PAD = 0.03
"""A simulated box prompt is the true mask's box enlarged by this fraction of its longer side."""


def simulated_prompt(kind: str, mask: np.ndarray, frame, view: int = 0,
                     box_pad: float = PROMPT_BOX_PAD):
    """The prompt a user would give for the object of true ``mask`` in keyframe ``view``: its
    most interior pixel (``"pixel"``), that pixel's 3D point from the depth (``"point"``; the
    nearest measured pixel when it is a hole), or the mask's box a little larger (``"box"``).
    One definition for the prompt benchmark and the tests."""
    import cv2

    from ..segment_prompt import BoxPrompt, PixelPrompt, PointPrompt

    dt = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    r, c = np.unravel_index(int(np.argmax(dt)), dt.shape)
    if kind == "pixel":
        return PixelPrompt(float(c), float(r), view)
    if kind == "point":
        if frame.depth[r, c] <= 0:
            ys, xs = np.nonzero(mask & (frame.depth > 0))
            j = int(np.argmin(np.hypot(xs - c, ys - r)))
            r, c = ys[j], xs[j]
        p = frame.camera.unproject(np.array([[c, r]], float), np.array([frame.depth[r, c]]))[0]
        return PointPrompt(tuple(p), view)
    if kind != "box":
        raise ValueError(f"kind must be 'pixel', 'point' or 'box', got {kind!r}")
    ys, xs = np.nonzero(mask)
    pad = box_pad * max(np.ptp(xs), np.ptp(ys))
    x0, y0 = int(xs.min() - pad), int(ys.min() - pad)
    return BoxPrompt(x0, y0, int(xs.max() + pad) + 1 - x0, int(ys.max() + pad) + 1 - y0, view)
