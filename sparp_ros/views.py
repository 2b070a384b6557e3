"""One pass of views: each keyframe is prepared once (its crop box, the model's cell, the cell's
depth), and every network that reads the view at another size gets its cut from the same view,
made once and kept.

Why: the diffusion model reads 32 px cells, the small networks 64 px ones (finer detail than the
model's cells keep), and the RGB-D networks the depth cut the same way. Before, each stage went
back to the raw frames and cut them again (the view-angle networks, then the pair-azimuth
networks: the same 64 px cuts two or three times per call). A ``PreparedView`` carries the frame
(the full-resolution depth and image that fusion and colouring read, the camera pose from TF)
and every cut made of it; nothing downstream crops.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np

from .capture import Frame
from .model.interface import CellView
from .segmentation import CropBox, crop_box_from_mask, crop_camera, crop_image


@dataclass
class PreparedView:
    """One keyframe, cut once. It unpacks as ``(cell, depth)``: the pair the geometry stages read
    (``for cell, depth in views``)."""

    index: int
    frame: Frame | None                             # None: made from cuts (``view_from_cuts``)
    box: CropBox | None
    cell: CellView                                  # the model's cell (image, mask, camera)
    depth: np.ndarray | None                        # the cell's depth, metres (None: no depth)
    _cuts: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)
    _depth_cuts: dict[int, tuple[np.ndarray, float]] = field(default_factory=dict, repr=False)

    def __iter__(self) -> Iterator:
        return iter((self.cell, self.depth))

    def cut(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """The view's image and mask in its crop box at ``size`` px (made once per size)."""
        if size == self.cell.image.shape[0]:
            return self.cell.image, self.cell.mask
        if size not in self._cuts:
            if self.frame is None:
                raise ValueError(f"view {self.index} was made from cuts without a {size} px one")
            self._cuts[size] = cut_frame(self.frame, self.box, size)
        return self._cuts[size]

    def depth_cut(self, size: int) -> tuple[np.ndarray, float]:
        """The view's depth cut like :meth:`cut` (metres; all 0 without depth) and the focal
        length of that cut's camera in its pixels."""
        if size not in self._depth_cuts:
            if size == self.cell.image.shape[0]:
                depth = (np.zeros((size, size), np.float32) if self.depth is None
                         else self.depth.astype(np.float32))
                self._depth_cuts[size] = depth, float(self.cell.camera.K[0, 0])
            else:
                if self.frame is None:
                    raise ValueError(f"view {self.index} was made from cuts: no {size} px depth")
                depth = (np.zeros((size, size), np.float32) if self.frame.depth is None
                         else crop_image(self.frame.depth, self.box, size, nearest=True))
                focal = float(crop_camera(self.frame.camera, self.box, size).K[0, 0])
                self._depth_cuts[size] = depth.astype(np.float32), focal
        return self._depth_cuts[size]


def cut_frame(frame: Frame, box: CropBox, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A frame's image and mask inside ``box``, resampled to ``size`` x ``size``."""
    return (crop_image(frame.image, box, size),
            crop_image(frame.mask.astype(np.uint8), box, size, nearest=True) > 0)


def prepare_view(index: int, frame: Frame, cell_size: int, margin: float) -> PreparedView:
    """Cut ``frame`` around its mask (``margin`` of the box added on each side) into the model's
    ``cell_size`` cell; intrinsics follow the crop. Raises SegmentationError without a usable
    mask."""
    box = crop_box_from_mask(frame.mask, margin)
    image, mask = cut_frame(frame, box, cell_size)
    cell = CellView(image=image, mask=mask, camera=crop_camera(frame.camera, box, cell_size),
                    gt_nocs=None if frame.nocs is None
                    else crop_image(frame.nocs, box, cell_size, nearest=True))
    depth = None if frame.depth is None else crop_image(frame.depth, box, cell_size, nearest=True)
    return PreparedView(index=index, frame=frame, box=box, cell=cell, depth=depth)


def view_from_cuts(index: int, cell: CellView,
                   cuts: dict[int, tuple[np.ndarray, np.ndarray]] | None = None) -> PreparedView:
    """A view made from cuts already made elsewhere (a dataset's samples, no frame): the model's
    ``cell`` and, per size, the (image, mask) the small networks take; no depth."""
    view = PreparedView(index=index, frame=None, box=None, cell=cell, depth=None)
    view._cuts.update(cuts or {})
    return view


def stack_cuts(views: Sequence[PreparedView], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Every view's image and mask at ``size`` px, stacked (N, size, size, 3), (N, size, size)."""
    images, masks = zip(*(v.cut(size) for v in views))
    return np.stack(images), np.stack(masks)


def stack_depth_cuts(views: Sequence[PreparedView], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Every view's depth at ``size`` px (N, size, size) and each cut's focal length (N,)."""
    depth, focal = zip(*(v.depth_cut(size) for v in views))
    return np.stack(depth).astype(np.float32), np.array(focal)
