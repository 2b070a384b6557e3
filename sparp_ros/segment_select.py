"""Which segmentation runs when nobody gave a mask: one rule for the CLI and the node.

``masks_if_needed(frames, method="auto")``: frames that already carry a mask are used as they are;
otherwise the object nearest the first image's centre is segmented — from depth when every frame
has depth (``segment_depth``: support plane + clusters), else by the learned foreground network
(``segment_learned``: RGB alone) — and the frames that see it are kept, with a record of what was
done. ``method`` forces one of them (``"depth"`` on frames without depth raises ``NoDepthError``).
``segment_objects(frames, method)``: every object, by depth or by the learned network (what the
node reconstructs, one by one, with segmentation ``depth`` / ``learned``). One module decides
which segmenter runs. No ROS; the learned network is loaded only when it is used.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Sequence

from .capture import Frame

if TYPE_CHECKING:
    from .segment_depth import ObjectMasks

METHODS = ("auto", "depth", "learned")


def choose_method(frames: Sequence[Frame], method: str = "auto") -> str:
    """``"depth"`` or ``"learned"``: ``auto`` is depth when every frame has depth, else learned."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method != "auto":
        return method
    return "depth" if frames and all(f.depth is not None for f in frames) else "learned"


def masks_if_needed(frames: Sequence[Frame], log: logging.Logger | None = None,
                    what: str = "capture", method: str = "auto"
                    ) -> tuple[list[Frame], dict | None]:
    """The frames as the pipeline needs them, and a record of the segmentation (None when a mask
    was given in some frame: then nothing is segmented and the frames come back as they are).

    The record: ``method`` (``"depth"`` / ``"learned"``; ``source`` repeats it, the key of
    ``segment_depth.mask_from_depth_if_needed``), ``object`` (its id), ``objects_found``,
    ``views`` (indices of the kept frames, the ones that see the object) and ``pixels`` (its mask
    size per kept view). ``what`` names the frames' source in the log. Raises
    ``SegmentationError`` (``DepthSegmentationError``, ``LearnedSegmentationError``) when the
    first view shows no object or the method cannot run."""
    if not frames:
        raise ValueError("frames is empty")
    if any(f.mask is not None for f in frames):
        return list(frames), None
    chosen_method = choose_method(frames, method)
    log = log or logging.getLogger("sparp_ros.segment_select")
    if chosen_method == "depth":
        from .segment_depth import frames_masked_from_depth
        masked, kept, chosen, objects = frames_masked_from_depth(frames)
        how = "on the support plane from depth"
    else:
        from .segment_learned import frames_masked_learned
        masked, kept, chosen, objects = frames_masked_learned(frames)
        how = "from the images by the learned segmenter"
    log.info("no masks in the %s: %d object(s) %s; reconstructing object %d (nearest the centre "
             "of view 0, %d px there)", what, len(objects), how, chosen.id,
             int(chosen.masks[0].sum()))
    if len(kept) < len(frames):
        log.warning("views %s do not see object %d and are left out",
                    [i for i in range(len(frames)) if i not in kept], chosen.id)
    return masked, {"method": chosen_method, "source": chosen_method, "object": chosen.id,
                    "objects_found": len(objects), "views": list(kept),
                    "pixels": [int(f.mask.sum()) for f in masked]}


def segment_objects(frames: Sequence[Frame], method: str,
                    colour_refinement: bool = True) -> list[ObjectMasks]:
    """Every object in the keyframes by ``method`` ('depth': on the support plane, from depth;
    'learned': the foreground network, its mask sharpened by the image's colours unless
    ``colour_refinement`` is False), ids stable across the keyframes. Raises
    SegmentationError (no depth, no plane, ...) or ValueError for an unknown method."""
    if method == "depth":
        from .segment_depth import segment_depth

        return segment_depth(frames)
    if method == "learned":
        from .segment_learned import LearnedSegmentationParams, segment_learned
        from .segment_refine import ColourRefinement

        return segment_learned(frames, LearnedSegmentationParams() if colour_refinement else
                               LearnedSegmentationParams(refine=ColourRefinement(iterations=0)))
    raise ValueError(f"segmentation method must be 'depth' or 'learned', got {method!r}")


__all__ = ["masks_if_needed", "choose_method", "segment_objects", "METHODS"]
